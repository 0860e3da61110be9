"""Images in and out: ``as image`` (dialect §4) and PNG bytes for the static displays."""

from __future__ import annotations

import base64
import io
import os
import re
from typing import Any, Optional

from .errors import InputError, MissingPackageError


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


# ------------------------------------------------------------------------------------------------
# Bytes in a format, and the media values of model-compose's types (`as audio`, `video`, `file`, `markdown`)

#: model-compose's ``;format`` words: how a string value holds its bytes.
FORMATS = ("path", "url", "data-uri", "base64")

AUDIO_MIMES = {"wav": "audio/wav", "wave": "audio/wav", "mp3": "audio/mpeg", "mpeg": "audio/mpeg",
               "ogg": "audio/ogg", "opus": "audio/ogg", "flac": "audio/flac", "webm": "audio/webm",
               "m4a": "audio/mp4", "mp4": "audio/mp4", "aac": "audio/aac", "pcm": "audio/pcm", "vorbis": "audio/ogg"}


def audio_mime(name: str) -> str:
    """One mime type for each of the names audio goes by: ``mp3``, ``audio/mp3``, ``audio/x-flac``,
    ``audio/x-wav`` are ``audio/mpeg``, ``audio/flac``, ``audio/wav``."""
    sub = name.lower().split(";")[0].strip()
    sub = sub[len("audio/"):] if sub.startswith("audio/") else sub
    sub = sub[2:] if sub.startswith("x-") else sub
    return AUDIO_MIMES.get(sub, f"audio/{sub}")
VIDEO_MIMES = {"mp4": "video/mp4", "webm": "video/webm", "ogg": "video/ogg", "mov": "video/quicktime",
               "avi": "video/x-msvideo", "mkv": "video/x-matroska"}
MODEL_3D_MIMES = {"glb": "model/gltf-binary", "gltf": "model/gltf+json", "obj": "model/obj", "stl": "model/stl",
                  "ply": "application/ply"}


def parse_data_uri(text: str) -> "tuple[str, bytes]":
    """``(mime type, bytes)`` of a ``data:`` URI (base64 or percent-encoded)."""
    from urllib.parse import unquote_to_bytes

    head, comma, data = text.strip()[5:].partition(",")
    if not comma:
        raise InputError(f"`{text[:60]}` is not a data URI: it has no `,` before the data.\n  Write it as "
                         f"`data:audio/wav;base64,<base64 text>`.")
    meta = head.split(";")
    mime = meta[0] or "text/plain"
    try:
        return mime, (base64.b64decode(data, validate=True) if "base64" in meta[1:] else unquote_to_bytes(data))
    except ValueError as e:
        raise InputError(f"the data URI `{text[:40]}...` holds invalid base64 ({e}).\n  Check that it was not "
                         f"cut short.") from None


def load_bytes(value: Any, fmt: Optional[str], what: str = "the value") -> bytes:
    """The bytes a string holds in ``fmt`` (``path``, ``url``, ``data-uri``, ``base64``); bytes as they are.

    ``url`` takes ``data:`` URLs only here: a notebook's run fetches nothing from the network for
    audio, video or files (download it and give the path)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str):
        raise InputError(f"{what} is a {type(value).__name__}, not text in the `{fmt}` format.\n  Give "
                         f"{_format_example(fmt)}.")
    text = value.strip()
    if fmt == "path":
        path = os.path.expanduser(text)
        if not os.path.isfile(path):
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise InputError(f"file not found: {shown}\n  Give the path of an existing file.")
        with open(path, "rb") as f:
            return f.read()
    if fmt == "data-uri" or (fmt == "url" and text.startswith("data:")):
        if not text.startswith("data:"):
            raise InputError(f"{what} is not a data URI (it does not start with `data:`).\n  Give "
                             f"{_format_example('data-uri')}.")
        return parse_data_uri(text)[1]
    if fmt == "url":
        raise InputError(f"{what}: `{text[:80]}` is fetched from the network, which a run here does not do for "
                         f"media.\n  Download it and give the path (`;path`), or give a `data:` URL.")
    if fmt == "base64":
        try:
            return base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text, validate=True)
        except ValueError as e:
            raise InputError(f"{what} is not valid base64 ({e}).\n  Give base64 text (A-Z, a-z, 0-9, +, /, "
                             f"padded with =), e.g. from base64.b64encode(data).decode().") from None
    raise InputError(f"unknown format `{fmt}`\n  Formats: {', '.join(FORMATS)}.")


def _format_example(fmt: Optional[str]) -> str:
    return {"path": "a file path", "url": "a `data:` URL", "data-uri": "`data:<mime>;base64,<data>`",
            "base64": "base64 text"}.get(fmt or "", "bytes, a path, base64 text or a data URI")


class Media:
    """Bytes with a mime type: what ``as video``, ``as file`` and ``as model-3d`` give (``as audio``:
    :class:`Audio`). ``data`` is the bytes; it displays as a player or a download link, with a
    static HTML fallback (the same tag) for saved notebooks."""

    kind = "file"

    def __init__(self, data: bytes, mime: str = "application/octet-stream", name: Optional[str] = None):
        self.data, self.mime, self.name = bytes(data), mime, name

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and (other.data, other.mime) == (self.data, self.mime)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mime}, {len(self.data):,} bytes)"

    def base64(self) -> str:
        return base64.b64encode(self.data).decode()

    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{self.base64()}"

    def html(self) -> str:
        import html
        if self.kind == "video":
            return f'<video controls src="{self.data_uri()}" style="max-width:100%"></video>'
        name = html.escape(self.name or f"{self.kind}.{self.mime.split('/')[-1]}")
        return (f'<a download="{name}" href="{self.data_uri()}">{name}</a> '
                f'<span style="color:#777">({html.escape(self.mime)}, {len(self.data):,} bytes)</span>')

    def _repr_html_(self) -> str:
        return self.html()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        return {"text/plain": repr(self), "text/html": self.html()}


class Video(Media):
    kind = "video"


class Model3D(Media):
    kind = "model-3d"


class Audio(Media):
    """Audio bytes with their mime type (and sample rate when known): what ``as audio`` gives.

    Built from bytes, a path, a ``data:`` URL, base64, a data URI, or a ``(numpy array, sample_rate)``
    tuple / ``{"array"|"audio": ..., "sampling_rate"|"sample_rate": ...}`` mapping (encoded as
    16-bit WAV). Raw PCM (``audio/pcm[sample_rate=16000,channels=1]``) plays as WAV. It displays as
    an ``<audio controls>`` player."""

    kind = "audio"

    def __init__(self, data: bytes, mime: str = "audio/wav", sample_rate: Optional[int] = None,
                 channels: Optional[int] = None, name: Optional[str] = None):
        super().__init__(data, mime, name)
        if sample_rate is None and mime == "audio/wav":
            sample_rate, channels = _wav_header(self.data, sample_rate, channels)
        self.sample_rate, self.channels = sample_rate, channels

    def __repr__(self) -> str:
        rate = f", {self.sample_rate} Hz" if self.sample_rate else ""
        return f"Audio({self.mime}{rate}, {len(self.data):,} bytes)"

    @classmethod
    def from_array(cls, samples: Any, sample_rate: int) -> "Audio":
        """16-bit WAV of float samples in [-1, 1] (or int16), shape (n,) or (n, channels)."""
        import numpy as np
        import wave

        arr = np.asarray(samples)
        if arr.ndim not in (1, 2) or arr.size == 0:
            raise InputError(f"an audio array of shape {arr.shape} cannot be played.\n  Give samples of shape (n,) or "
                             f"(n, channels) with a sample rate: (array, 16000).")
        if arr.dtype != np.int16:
            arr = (np.clip(arr.astype(np.float64), -1.0, 1.0) * 32767).round().astype(np.int16)
        channels = 1 if arr.ndim == 1 else arr.shape[1]
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(arr.tobytes())
        return cls(buffer.getvalue(), "audio/wav", int(sample_rate), channels)

    def samples(self):
        """``(numpy array, sample_rate)`` of WAV or PCM audio (float32; integers scaled to [-1, 1]): :func:`read_wav`."""
        return read_wav(self.playable())

    def playable(self) -> bytes:
        """Bytes a browser plays: raw PCM is wrapped in a WAV header."""
        if self.mime != "audio/pcm":
            return self.data
        import wave
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as w:
            w.setnchannels(self.channels or 1)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate or 16000)
            w.writeframes(self.data)
        return buffer.getvalue()

    def html(self) -> str:
        mime = "audio/wav" if self.mime == "audio/pcm" else self.mime
        src = f"data:{mime};base64,{base64.b64encode(self.playable()).decode()}"
        return f'<audio controls src="{src}"></audio>'


def _wav_header(data: bytes, rate: Optional[int], channels: Optional[int]):
    import struct
    if len(data) >= 28 and data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[12:16] == b"fmt ":
        channels, rate = struct.unpack("<HI", data[22:28])
    return rate, channels


def sniff_audio(data: bytes) -> Optional[str]:
    """The mime type of audio bytes from their first bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if data[:4] == b"OggS":
        return "audio/ogg"
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:4] == b"\x1aE\xdf\xa3":
        return "audio/webm"
    if data[4:8] == b"ftyp":
        return "audio/mp4"
    return None


def to_audio(value: Any, subtype: Optional[str] = None, fmt: Optional[str] = None,
             attrs: Optional[dict] = None) -> Audio:
    """An :class:`Audio` from what ``as audio[/subtype][attrs][;format]`` is given."""
    attrs = attrs or {}
    if isinstance(value, Audio):
        return value
    if isinstance(value, dict) and any(k in value for k in ("array", "audio", "samples")):
        rate = value.get("sampling_rate", value.get("sample_rate", attrs.get("sample_rate")))
        arr = next(value[k] for k in ("array", "audio", "samples") if k in value)
        value = (arr, rate)
    if isinstance(value, (tuple, list)) and len(value) == 2 and type(value[0]).__module__ == "numpy":
        arr, rate = value
        if rate is None:
            raise InputError("audio samples without a sample rate cannot be played.\n  Give (array, sample_rate), "
                             "or write the rate: `as audio[sample_rate=16000]`.")
        return Audio.from_array(arr, int(rate))
    mime_given = None
    if isinstance(value, str) and fmt is None:   # guess: a data URI, a path, else base64
        text = value.strip()
        fmt = "data-uri" if text.startswith("data:") else ("path" if os.path.isfile(os.path.expanduser(text))
                                                          else "base64" if _looks_base64(text) else "path")
    if isinstance(value, str) and value.strip().startswith("data:"):
        mime_given = parse_data_uri(value)[0]
    if not isinstance(value, (bytes, bytearray, str)):
        raise InputError(f"cannot read audio from a {type(value).__name__}.\n  Give bytes, a path, base64 text, a "
                         f"data URI, or (numpy array, sample_rate).")
    data = load_bytes(value, fmt, "the audio")
    mime = (audio_mime(subtype) if subtype else None) \
        or (audio_mime(mime_given) if mime_given and mime_given.startswith("audio/") else None) or sniff_audio(data)
    if mime is None:
        raise InputError(f"the {len(data):,} bytes given are not audio in a format recognised here (WAV, MP3, OGG, "
                         f"FLAC, WebM, MP4).\n  Name the format: `as audio/wav` (or `audio/pcm[sample_rate=16000]` "
                         f"for raw samples).")
    rate = attrs.get("sample_rate")
    channels = attrs.get("channels")
    try:
        rate = int(rate) if rate not in (None, "") else None
        channels = int(channels) if channels not in (None, "") else None
    except (TypeError, ValueError):
        raise InputError(f"`sample_rate={rate}`/`channels={channels}` are not whole numbers.\n  Write e.g. "
                         f"`audio/pcm[sample_rate=16000,channels=1]`.") from None
    if mime == "audio/wav" and data[:4] != b"RIFF":
        raise InputError(f"the {len(data):,} bytes given are not WAV audio (no RIFF header).\n  Check the data, or "
                         f"name its real format: `as audio/mp3`, `audio/pcm[sample_rate=16000]`.")
    return Audio(data, mime, rate, channels)


def to_media(value: Any, kind: str, subtype: Optional[str] = None, fmt: Optional[str] = None) -> Media:
    """A :class:`Media` (:class:`Video`, :class:`Model3D`) from what ``as video|file|model-3d`` is given."""
    cls = {"video": Video, "model-3d": Model3D}.get(kind, Media)
    if isinstance(value, Media):
        return value
    mimes = {"video": VIDEO_MIMES, "model-3d": MODEL_3D_MIMES}.get(kind, {})
    name = None
    mime_given = None
    if isinstance(value, str):
        text = value.strip()
        if fmt is None:
            fmt = "data-uri" if text.startswith("data:") else ("base64" if _looks_base64(text) and
                                                              not os.path.exists(text) else "path")
        if text.startswith("data:"):
            mime_given = parse_data_uri(text)[0]
        if fmt == "path":
            name = os.path.basename(text)
            subtype = subtype or (os.path.splitext(text)[1][1:] or None)
    elif not isinstance(value, (bytes, bytearray)):
        raise InputError(f"cannot read a {kind} from a {type(value).__name__}.\n  Give bytes, a path, base64 text "
                         f"or a data URI.")
    data = load_bytes(value, fmt, f"the {kind}")
    if subtype:
        import mimetypes
        mime = mimes.get(subtype.lower()) or (mimetypes.types_map.get("." + subtype.lower())) or \
            (f"{kind}/{subtype.lower()}" if kind == "video" else "application/octet-stream")
    else:
        mime = mime_given or ("video/mp4" if kind == "video" else "application/octet-stream")
    return cls(data, mime, name)


class Markdown(str):
    """Text that displays as Markdown (``as markdown``); it is a ``str`` for everything else."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        import html
        return {"text/plain": str(self), "text/markdown": str(self),
                "text/html": f'<div style="white-space:pre-wrap">{html.escape(str(self))}</div>'}


def encode_image(image: Any, subtype: Optional[str] = None) -> bytes:
    """An image's bytes in ``subtype``'s format (``png`` when none): ``image/jpeg;base64`` etc."""
    from PIL import Image

    image = load_image(image)
    fmt = (subtype or "png").upper()
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    if fmt not in Image.registered_extensions().values() and fmt not in Image.SAVE:
        raise InputError(f"`image/{subtype}`: PIL cannot write the `{subtype}` format.\n  Use png, jpeg or webp.")
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (KeyError, OSError, ValueError) as e:
        raise InputError(f"`image/{subtype}`: the image cannot be written as {fmt} ({e}).\n  Use png, jpeg or "
                         f"webp.") from None
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# Audio as samples: what a speech model reads (WAV decoded here, mono, resampled)

#: The sample rates taken as real audio (a rate outside is a mistake, such as a rate in kHz).
AUDIO_RATES = (1000, 768000)


def read_wav(data: bytes, what: str = "the audio") -> "tuple[Any, int]":
    """``(samples, sample_rate)`` of WAV bytes: float32 in [-1, 1], shape (n,) or (n, channels). Reads PCM
    (8, 16, 24, 32-bit), float (32, 64-bit) and WAVE_FORMAT_EXTENSIBLE, which the standard library's
    ``wave`` (PCM only) does not; integers are scaled to [-1, 1] (8-bit is unsigned, centred on 128)."""
    import struct
    import numpy as np

    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InputError(f"{what} is not WAV audio (no RIFF/WAVE header).\n  Give a WAV file, or samples with "
                         f"their rate: (array, 16000).")
    fmt, body, pos = None, None, 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"fmt ":
            fmt = data[pos + 8:pos + 8 + size]
        elif chunk == b"data":
            body = data[pos + 8:pos + 8 + size]    # a streamed WAV's size may be unset: the rest of the file
            break
        pos += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16 or body is None:
        raise InputError(f"{what} is a WAV file without its `fmt` or `data` chunk (cut short?).\n  Check the "
                         f"file, or write it again (e.g. with the wave module or soundfile).")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == 0xFFFE and len(fmt) >= 26:           # WAVE_FORMAT_EXTENSIBLE: the real format in the sub-format
        tag = struct.unpack("<H", fmt[24:26])[0]
    width = bits // 8
    dtypes = {(1, 8): "u1", (1, 16): "<i2", (1, 32): "<i4", (3, 32): "<f4", (3, 64): "<f8"}
    if channels == 0 or (tag, bits) not in dtypes and (tag, bits) != (1, 24):
        kind = {1: "PCM", 3: "float", 6: "A-law", 7: "mu-law"}.get(tag, f"format {tag}")
        raise InputError(f"{what} is {bits}-bit {kind} WAV with {channels} channel(s), which is not read here (PCM "
                         f"8/16/24/32-bit and float WAV are).\n  Convert it, e.g. `ffmpeg -i in.wav -ac 1 -c:a "
                         f"pcm_s16le out.wav`.")
    body = body[:len(body) - len(body) % (width * channels)]
    if (tag, bits) == (1, 24):                     # three bytes, little-endian, signed: widened to int32
        b = np.frombuffer(body, np.uint8).reshape(-1, 3).astype(np.int32)
        arr = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8) / float(2 ** 23)
    else:
        arr = np.frombuffer(body, dtypes[(tag, bits)]).astype(np.float64)
        if tag == 1:
            arr = (arr - 128) / 128 if bits == 8 else arr / float(2 ** (bits - 1))
    arr = arr.astype(np.float32)
    return (arr if channels == 1 else arr.reshape(-1, channels)), int(rate)


def audio_samples(value: Any) -> "tuple[Any, int]":
    """``(samples, sample_rate)`` of one audio, as float32 (shape (n,) or (n, channels)), from an
    :class:`Audio`, WAV bytes, a path, base64 or a ``data:`` URI, an ``(array, sample_rate)`` pair, or a
    mapping ``{"array"|"audio"|"samples": ..., "sampling_rate"|"sample_rate": ...}`` (as 🤗 datasets gives).
    Numpy arrays keep their precision (``as audio`` would round them to 16-bit WAV)."""
    if isinstance(value, dict) and any(k in value for k in ("array", "audio", "samples")):
        arr = next(value[k] for k in ("array", "audio", "samples") if k in value)
        return _array_samples(arr, value.get("sampling_rate", value.get("sample_rate")))
    if is_sample_pair(value):
        return _array_samples(*value)
    if _is_array(value):
        raise InputError(f"audio samples ({type(value).__module__.split('.')[0]} array of shape "
                         f"{tuple(value.shape)}) without a sample rate cannot be read.\n  Give (array, sample_rate), "
                         f"e.g. `(samples, 16000)`, or {{\"array\": samples, \"sampling_rate\": 16000}}.")
    if not isinstance(value, (Audio, bytes, bytearray, str)):
        raise InputError(f"cannot read audio from a {type(value).__name__}.\n  Give a WAV file's path or bytes, "
                         f"base64 text, a data URI, (numpy array, sample_rate), or `${{input.x as audio}}`.")
    audio = to_audio(value)
    what = "the audio" if not isinstance(value, str) or len(value) > 200 else f"`{value.strip()[:80]}`"
    if audio.mime in SOUNDFILE_MIMES:
        return read_compressed(audio.data, audio.mime, what)
    if audio.mime not in ("audio/wav", "audio/pcm"):
        raise InputError(f"{audio.mime} audio is not decoded here: WAV, FLAC, MP3 and OGG (Vorbis, Opus) are, and "
                         f"raw PCM with its rate.\n  Convert it, e.g. `ffmpeg -i speech.m4a -ar 16000 -ac 1 "
                         f"speech.wav`, or give the samples: (array, sample_rate).")
    return read_wav(audio.playable(), what)


#: What libsndfile (the ``soundfile`` package's own copy) decodes besides WAV.
SOUNDFILE_MIMES = ("audio/flac", "audio/mpeg", "audio/ogg")


def read_compressed(data: bytes, mime: str, what: str = "the audio") -> "tuple[Any, int]":
    """``(samples, sample_rate)`` of FLAC, MP3 or OGG bytes, float32, decoded by libsndfile."""
    try:
        import soundfile
    except (ImportError, OSError) as e:      # OSError: the package is there, its libsndfile is not
        raise MissingPackageError(f"decoding {mime} audio ({type(e).__name__}: {e})", ["soundfile"],
                                  "soundfile") from None
    try:
        samples, rate = soundfile.read(io.BytesIO(bytes(data)), dtype="float32", always_2d=False)
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise InputError(f"{what} ({len(data):,} bytes of {mime}) could not be decoded: {e}.\n  Check the file "
                         f"(is it whole?), or convert it: `ffmpeg -i in -ar 16000 -ac 1 out.wav`.") from None
    if samples.size == 0:
        raise InputError(f"{what} ({mime}) holds no samples.\n  Give a recording with sound in it.")
    return samples, int(rate)


def _is_array(value: Any) -> bool:
    return type(value).__module__.split(".")[0] in ("numpy", "torch") and hasattr(value, "shape")


def is_sample_pair(value: Any) -> bool:
    """Whether ``value`` is one audio written ``(samples, sample_rate)`` (a numpy or torch array and a number,
    numpy's integers too), not a list of two audios."""
    import numbers

    return (isinstance(value, (tuple, list)) and len(value) == 2 and _is_array(value[0])
            and isinstance(value[1], numbers.Real) and not isinstance(value[1], bool))


def _array_samples(arr: Any, rate: Any) -> "tuple[Any, int]":
    """Samples of an array as float32 (integers scaled to [-1, 1]) and its rate, both checked."""
    import numpy as np

    if type(arr).__module__.split(".")[0] == "torch":
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    if rate is None:
        raise InputError("audio samples without a sample rate cannot be read.\n  Give (array, sample_rate), e.g. "
                         "`(samples, 16000)`, or {\"array\": samples, \"sampling_rate\": 16000}.")
    try:
        whole = float(rate) == int(float(rate))
    except (TypeError, ValueError):
        whole = False
    if isinstance(rate, bool) or not whole or not AUDIO_RATES[0] <= int(float(rate)) <= AUDIO_RATES[1]:
        raise InputError(f"the sample rate {rate!r} is not one audio is recorded at.\n  Give the samples per second "
                         f"as a whole number from {AUDIO_RATES[0]:,} to {AUDIO_RATES[1]:,}, e.g. 16000 or 44100.")
    if arr.dtype.kind not in "iuf":
        raise InputError(f"audio samples of dtype {arr.dtype} cannot be read.\n  Give float samples in [-1, 1] or "
                         f"integer PCM (int16, int32, uint8).")
    if arr.dtype.kind in "iu":
        scale = {1: 128.0, 2: 32768.0, 4: float(2 ** 31)}.get(arr.dtype.itemsize, float(2 ** (8 * arr.dtype.itemsize - 1)))
        arr = (arr.astype(np.float64) - (128 if arr.dtype == np.uint8 else 0)) / scale
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError("the audio samples hold NaN or infinite values.\n  Check what made them (a division by "
                         "zero while normalising?).")
    return arr, int(float(rate))


def to_mono(samples: Any) -> Any:
    """One channel: (n,) as it is; (n, channels) or (channels, n) (at most 8 channels: the shorter side)
    averaged."""
    import numpy as np

    arr = np.asarray(samples)
    if arr.ndim == 1:
        return arr
    if arr.ndim == 2 and min(arr.shape) <= 8 and arr.shape[0] != arr.shape[1]:
        return arr.mean(axis=int(np.argmin(arr.shape))).astype(arr.dtype)
    raise InputError(f"audio samples of shape {arr.shape} are not one recording.\n  Give shape (n,) for mono, or "
                     f"(n, channels) with at most 8 channels.")


def resample(samples: Any, rate: int, target: int) -> Any:
    """``samples`` (mono) at ``target`` Hz: a polyphase filter (scipy's ``resample_poly``), as Whisper's and
    other speech models' feature extractors need their own rate."""
    import math
    import numpy as np

    if rate == target:
        return samples
    try:
        from scipy.signal import resample_poly
    except ImportError:
        raise InputError(f"the audio is at {rate:,} Hz and the model reads {target:,} Hz: resampling needs scipy, "
                         f"which is not installed.\n  `pip install scipy`, or give {target:,} Hz audio.") from None
    g = math.gcd(int(rate), int(target))
    return resample_poly(samples, target // g, rate // g).astype(np.float32)
