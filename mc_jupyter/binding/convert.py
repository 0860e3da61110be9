"""The ``as type`` conversions."""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Dict, Optional, Sequence

from .grammar import FORMATS, MEDIA_TYPES, _MISSING

_SCALAR_TYPES = ("string", "text", "integer", "number", "boolean", "list", "object", "json", "select", "markdown")
_TEXT_TYPES = ("string", "text", "integer", "number", "boolean", "list", "object", "json", "base64", "markdown")


def convert(value: Any, kind: str, arg: Optional[str] = None, *, is_list: bool = False, subtype: Optional[str] = None,
            attrs: Optional[Dict[str, Any]] = None, fmt: Optional[str] = None) -> Any:
    """Apply an ``as`` conversion: ``kind[]/subtype[attrs];fmt``. ``arg`` is the dialect's one argument
    (``convert(v, "image", "base64")``, ``convert(v, "object[]", "a,b.c")``)."""
    if kind == "object[]":
        kind, is_list, subtype = "object", True, subtype or arg
    elif arg is not None:
        if kind == "image" or arg in FORMATS:
            fmt = fmt or arg
        else:
            subtype = subtype or arg
    if is_list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"`{kind}[]` needs a list, got a {type(value).__name__}")
        if kind == "object" and subtype:   # dialect §4's projection: a missing key is None
            keys = [k.strip() for k in subtype.split(",")]
            return [{k.split(".")[-1]: (lambda v: None if v is _MISSING else v)(_walk(item, k.split(".")))
                     for k in keys} for item in value]
        return [convert(v, kind, subtype=subtype, attrs=attrs, fmt=fmt) for v in value]
    if kind in _TEXT_TYPES and fmt is not None and isinstance(value, str):
        from ..media import load_bytes
        value = load_bytes(value, fmt, "the value")
    if isinstance(value, (bytes, bytearray)) and kind in ("string", "text", "markdown", "integer", "number",
                                                          "boolean", "list", "object", "json", "stream", "select"):
        value = bytes(value).decode("utf-8")
    if kind in ("string", "text"):
        return value if isinstance(value, str) else _to_text(value)
    if kind == "markdown":
        from ..media import Markdown
        return Markdown(value if isinstance(value, str) else _to_text(value))
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        if isinstance(value, (int, float)):
            return value
        text = str(value).strip()
        return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)
    if kind == "integer":
        if isinstance(value, bool):
            raise ValueError("a boolean is not an integer")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value} is not a whole number")
        return int(value) if not isinstance(value, str) else int(value.strip())
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"`{value}` is not true or false")
    if kind == "json":
        return json.loads(value) if isinstance(value, str) else value
    if kind == "list":
        value = json.loads(value) if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"a list is expected, got a {type(value).__name__}")
        return list(value)
    if kind == "object":
        value = json.loads(value) if isinstance(value, str) else value
        if not isinstance(value, dict):
            raise ValueError(f"a mapping is expected, got a {type(value).__name__}")
        if subtype:
            keys = [k.strip() for k in subtype.split(",")]
            return {k.split(".")[-1]: (lambda v: None if v is _MISSING else v)(_walk(value, k.split(".")))
                    for k in keys}
        return value
    if kind == "select":
        choices = [c.strip() for c in (subtype or "").split(",")]
        if str(value) not in choices:
            raise ValueError(f"{value!r} is not one of the choices {', '.join(choices)}")
        return value
    if kind == "stream":
        return _stream_value(value, subtype or "text")
    if kind in ("any", "none"):
        return value
    if kind == "base64":
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(bytes(value)).decode()
        from ..media import Media, encode_image
        if isinstance(value, Media):
            return value.base64()
        return base64.b64encode(encode_image(value, subtype)).decode()
    if kind == "image":
        from ..media import encode_image, load_image
        if isinstance(value, (list, tuple)):   # several images: each converted
            return [convert(v, "image", subtype=subtype, fmt=fmt) for v in value]
        if subtype and fmt in ("base64", "data-uri") and not isinstance(value, (str, bytes, bytearray)):
            data = base64.b64encode(encode_image(value, subtype)).decode()   # an image written out
            return data if fmt == "base64" else f"data:image/{subtype.lower()};base64,{data}"
        return load_image(value, "base64" if fmt == "data-uri" else fmt)
    if kind in MEDIA_TYPES:
        from ..media import Media, to_audio, to_media
        if subtype and fmt in ("base64", "data-uri") and isinstance(value, Media):
            return value.base64() if fmt == "base64" else value.data_uri()   # media written out
        if kind == "audio":
            from ..media import is_sample_pair
            if isinstance(value, (list, tuple)) and not is_sample_pair(value):   # several audios: each converted
                return [convert(v, "audio", subtype=subtype, fmt=fmt, attrs=attrs) for v in value]
            return to_audio(value, subtype, fmt, attrs)
        return to_media(value, kind, subtype, fmt)
    raise ValueError(f"unknown type {kind}")


def _stream_value(value: Any, encoding: str) -> Any:
    """``stream/text``: the text (chunks joined); ``stream/json``: the parsed value, or parsed chunks."""
    if encoding == "text":
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return "".join(value)
        return value if isinstance(value, str) else _to_text(value)
    if isinstance(value, (list, tuple)):
        return [json.loads(v) if isinstance(v, str) else v for v in value]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:   # newline-delimited chunks
            return [json.loads(line) for line in value.splitlines() if line.strip()]
    return value


def _walk(value: Any, path: Sequence) -> Any:
    for i, key in enumerate(path):
        if key == "*":
            if not isinstance(value, (list, tuple)):
                return _MISSING
            rest = path[i + 1:]
            return [_walk(v, rest) for v in value]
        if isinstance(key, slice):
            if not isinstance(value, (list, tuple, str)):
                return _MISSING
            value = value[key]
        elif isinstance(key, int):
            if not isinstance(value, (list, tuple)) or not -len(value) <= key < len(value):
                return _MISSING
            value = value[key]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, dict) and key.replace("-", "_") in value:
            value = value[key.replace("-", "_")]
        else:
            return _MISSING
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return f"`{text[:60]}{'...' if len(text) > 60 else ''}`"


def _to_text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return "" if value is None else str(value)
