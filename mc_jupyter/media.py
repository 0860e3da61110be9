"""Images in and out: ``as image`` (dialect §4) and PNG bytes for the static displays."""

from __future__ import annotations

import base64
import io
import os
from typing import Any, Optional

from .errors import InputError


def load_image(value: Any, fmt: Optional[str] = None):
    """A PIL image from a PIL image, numpy array, bytes, a path, a URL, base64 or a data URI."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, Image.Image):
        return value
    if type(value).__module__ == "numpy":
        import numpy as np
        arr = np.asarray(value)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255).astype(np.uint8) if arr.max() <= 1.0 else arr.astype(np.uint8)
        return Image.fromarray(arr)
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
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except (UnidentifiedImageError, OSError, ValueError) as e:
        reason = "not a format PIL recognises" if isinstance(e, UnidentifiedImageError) else str(e)
        raise InputError(f"{what} is not a readable image ({reason})\n  Check that it is a PNG, JPEG or WebP "
                         f"image, not truncated.") from None


def _looks_base64(text: str) -> bool:
    """Long, padded to 4, and only base64's alphabet: not a plausible file name."""
    import re
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
