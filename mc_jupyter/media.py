"""Images in and out: ``as image`` (dialect §4) and PNG bytes for the static displays."""

from __future__ import annotations

import base64
import io
import os
import re
from typing import Any, Optional

from .errors import InputError


def load_image(value: Any, fmt: Optional[str] = None):
    """A PIL image from a PIL image, numpy array, bytes, a path, a URL, base64 or a data URI, turned
    upright by its EXIF orientation (as diffusers' and transformers' ``load_image`` do)."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return _checked(value, "the PIL image given")
    if type(value).__module__ == "numpy":
        return _checked(_from_array(value), "the numpy array given")
    data: Optional[bytes] = None
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        text = value.strip()
        if fmt == "url" or (fmt is None and text.startswith(("http://", "https://"))):
            data = _fetch(text)
        elif fmt == "base64" or text.startswith("data:"):
            data = base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text)
        elif not os.path.exists(os.path.expanduser(text)) and _looks_base64(text):
            data = base64.b64decode(text)
        else:
            path = os.path.expanduser(text)
            if os.path.isdir(path):
                raise InputError(f"`{text}` is a folder, not an image file.\n  Give the path of one image "
                                 f"(PNG, JPEG, WebP), or a list of paths.")
            if not os.path.exists(path):
                shown = text if len(text) <= 80 else text[:77] + "..."
                raise InputError(f"image file not found: {shown}\n  Give an existing path, a URL, base64 "
                                 f"(`as image;base64`), or an image held in a Python variable.")
            with open(path, "rb") as f:
                data = f.read()
    if data is None:
        raise InputError(f"cannot read an image from {value!r} (a {type(value).__name__})\n  Give a path, URL, "
                         f"bytes, base64 text, a PIL image or a numpy array.")
    what = f"`{value.strip()[:80]}`" if isinstance(value, str) and len(value) < 300 else f"the {len(data)} bytes given"
    return _checked(_decode(data, what), what)


def _decode(data: bytes, what: str):
    """``data`` decoded; PIL's decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) as an InputError."""
    import warnings
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
            raise _bomb(what, image.width * image.height, f"{image.width}×{image.height} = ")
        image.load()
        return image
    except Image.DecompressionBombError as e:   # more than twice the limit: PIL refuses before reading the size
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _bomb(what, int(found.group(1)) if found else None) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        reason = "not a format PIL recognises" if isinstance(e, UnidentifiedImageError) else str(e)
        raise InputError(f"{what} is not a readable image ({reason})\n  Check that it is a PNG, JPEG or WebP "
                         f"image, not truncated.") from None


def _bomb(what: str, pixels: Optional[int], size: str = "") -> InputError:
    from PIL import Image
    limit = Image.MAX_IMAGE_PIXELS
    count = f"{size}{pixels:,} pixels" if pixels else "more pixels"
    return InputError(f"{what}: the image is {count}, over PIL's limit of {limit:,} (`PIL.Image.MAX_IMAGE_PIXELS`, "
                      f"its guard against decompression bombs), so it is not decoded.\n  If you trust the image, raise the "
                      f"limit first: `import PIL.Image; PIL.Image.MAX_IMAGE_PIXELS = {max(pixels or 0, 2 * limit)}` "
                      f"(None turns the guard off), or give a smaller image.")


def _from_array(value: Any):
    import numpy as np
    from PIL import Image

    arr = np.asarray(value)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise InputError(f"a numpy array of shape {arr.shape} is not an image.\n  Give an array of shape (height, "
                         f"width) for grey, or (height, width, 3 or 4) for RGB or RGBA.")
    if arr.size == 0:
        raise _empty("the numpy array given", (arr.shape[1], arr.shape[0]))
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).astype(np.uint8) if arr.max() <= 1.0 else arr.astype(np.uint8)
    return Image.fromarray(arr)


def _empty(what: str, size: Any) -> InputError:
    return InputError(f"{what} is empty ({size[0]}×{size[1]} pixels): there is nothing to read.\n  Give an image "
                      f"at least 1×1 pixels; check the crop or array that made it.")


def _checked(image: Any, what: str):
    """``image`` turned upright by its EXIF orientation; an empty image is refused here, not by a display."""
    if image.width == 0 or image.height == 0:
        raise _empty(what, image.size)
    if image.getexif().get(0x0112, 1) not in (1, None):   # EXIF Orientation: a photo taken turned
        from PIL import ImageOps
        image = ImageOps.exif_transpose(image)
    return image


def _looks_base64(text: str) -> bool:
    """Long, padded to 4, and only base64's alphabet: not a plausible file name."""
    return len(text) >= 64 and len(text) % 4 == 0 and re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", text) is not None


def _fetch(url: str) -> bytes:
    import httpx
    try:
        response = httpx.get(url, timeout=20, follow_redirects=True)
        response.raise_for_status()
        return response.content
    except httpx.HTTPError as e:
        raise InputError(f"could not fetch the image at {url}: {e}\n  Check the address and the network, "
                         f"or download it and give the local path.") from None


def image_to_png_bytes(image: Any) -> bytes:
    image = load_image(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
