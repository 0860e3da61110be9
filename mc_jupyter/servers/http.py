"""Talking to a model server: one request, a whole body or a stream of events.

Streams (``stream_format``):
- ``json``: Server-Sent Events (OpenAI style, parsed by httpx-sse as the SSE spec says: one leading
  space removed, the lines of a multi-line ``data:`` joined by "\n"; ``[DONE]`` ends it, an
  ``event: error`` is an error) when the server says ``text/event-stream``, otherwise NDJSON (one
  JSON document a line, Ollama style);
- ``text``: the body's chunks as they arrive.
When an output reads the whole ``${response}`` of a streamed body, it sees the events merged
(:func:`merge_events`): strings concatenated, other values the last one's; so Ollama's streamed
``message.content`` pieces read as the whole reply.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..secrets import ScrubLogs, scrub
from ..errors import HttpError, ServerError

DEFAULT_TIMEOUT = 60.0

for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(ScrubLogs())


def _client(timeout: float):
    import httpx
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))


def _fail(url: str, error: Exception) -> HttpError:
    import httpx
    if isinstance(error, httpx.ConnectError):
        return HttpError(f"cannot connect to {url}: {error}\n  Is the server running and listening there? "
                         f"For a managed server see its log with %mc logs ID.")
    if isinstance(error, httpx.TimeoutException):
        return HttpError(f"{url} did not answer in time ({type(error).__name__}).\n  Raise `timeout:` on the "
                         f"component, or check the server's load.")
    return HttpError(f"request to {url} failed: {type(error).__name__}: {error}")


def _check_status(url: str, response) -> None:
    if response.status_code >= 400:
        body = response.read().decode("utf-8", "replace") if not response.is_closed else response.text
        lines = "\n    ".join(body.strip().splitlines()[:8]) or "(empty body)"
        raise HttpError(f"{url} answered HTTP {response.status_code} {response.reason_phrase}:\n    {lines}\n"
                        f"  Check the request body and path against the server's API.")


def request(method: str, url: str, headers: Dict[str, Any], body: Any, params: Optional[Dict[str, Any]],
            timeout: float = DEFAULT_TIMEOUT, merge: bool = True) -> Any:
    """The whole response: parsed JSON, the events of a streamed body merged (``merge=False``: their
    list, as ``stream_fragmented: false`` asks), or text. A status of 400 or more raises."""
    return _request(method, url, headers, body, params, timeout, merge, check=True)[0]


def request_status(method: str, url: str, headers: Dict[str, Any], body: Any, params: Optional[Dict[str, Any]],
                   timeout: float = DEFAULT_TIMEOUT) -> Tuple[Any, int]:
    """``(body, status code)``, whatever the status (a polling completion matches the code itself)."""
    return _request(method, url, headers, body, params, timeout, True, check=False)


def _request(method: str, url: str, headers: Dict[str, Any], body: Any, params: Optional[Dict[str, Any]],
             timeout: float, merge: bool, check: bool) -> Tuple[Any, int]:
    import httpx
    prepared = _prepare(headers, body, params)
    try:
        with _client(timeout) as client:
            with client.stream(method, url, **prepared) as response:
                if check:
                    _check_status(url, response)
                code = response.status_code
                kind = _kind(response)
                if kind in ("sse", "ndjson"):
                    events = list(_events(url, response, kind))
                    return (merge_events(events) if merge else events), code
                data = response.read()
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise _fail(url, e) from None
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text), code
    except ValueError:
        return text, code


def stream(method: str, url: str, headers: Dict[str, Any], body: Any, params: Optional[Dict[str, Any]],
           stream_format: str, stop: threading.Event, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Any]:
    """Each event (parsed JSON) or text chunk as it arrives; stops when ``stop`` is set."""
    import httpx
    prepared = _prepare(headers, body, params)
    try:
        with _client(timeout) as client:
            with client.stream(method, url, **prepared) as response:
                _check_status(url, response)
                kind = _kind(response) if stream_format == "json" else "text"
                if kind == "raw":
                    kind = "ndjson"
                source = response.iter_text() if kind == "text" else _events(url, response, kind)
                for item in source:
                    if stop.is_set():
                        return
                    yield item
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise _fail(url, e) from None


def _kind(response) -> str:
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" in content_type:
        return "sse"
    if "ndjson" in content_type or "jsonl" in content_type:
        return "ndjson"
    return "raw"


def _events(url: str, response, kind: str) -> Iterator[Any]:
    if kind == "sse":
        yield from _sse_events(url, response)
        return
    for line in response.iter_lines():
        line = line.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except ValueError:
            yield line


def _sse_events(url: str, response) -> Iterator[Any]:
    """The data of each event: a JSON object, array or string parsed, any other text as it is (so a
    token stream keeps its spaces: ``data:  world`` is `` world``)."""
    from httpx_sse import EventSource
    for event in EventSource(response).iter_sse():
        if event.event == "error":
            raise ServerError(f"{url} sent an error event in its stream:\n    "
                              + "\n    ".join(scrub(event.data).splitlines()[:8] or ["(no data)"]))
        if event.data.strip() == "[DONE]":
            return
        if not event.data:
            continue   # a keep-alive or an event with a name only
        if event.data.lstrip()[:1] in ("{", "[", '"'):
            try:
                yield json.loads(event.data)
                continue
            except ValueError:
                pass
        yield event.data


def merge_events(events: List[Any]) -> Any:
    """Stream events as one value: strings concatenated, lists merged by index, the rest last-wins."""
    merged: Any = None
    for event in events:
        merged = _merge(merged, event)
    return merged


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(a.get(k), v) if k in a else v
        return out
    if isinstance(a, list) and isinstance(b, list):
        return [_merge(a[i], b[i]) if i < len(a) else b[i] for i in range(len(b))] + a[len(b):]
    return b if b is not None else a


def check_url(url: str, field: str) -> str:
    """``url`` if httpx can send to it; otherwise an error naming the YAML field and how to write it."""
    import httpx
    how = "  Write it as `http://host:port/path` (or https://), with special characters percent-encoded (%20)."
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as e:
        raise HttpError(f"`{field}` is not a valid URL ({scrub(str(e))}): {scrub(url)!r}\n{how}") from None
    if parsed.scheme not in ("http", "https"):
        missing = "has no scheme" if "://" not in url else f"has the scheme `{scrub(parsed.scheme)}`"
        raise HttpError(f"`{field}` {missing}: {scrub(url)!r}; only http:// and https:// are supported.\n"
                        f"  Include it: `http://{scrub(url.split('://', 1)[-1])}`.")
    if not parsed.host or "%" in parsed.host or not 0 < (parsed.port or 80) < 65536:
        raise HttpError(f"`{field}` has no valid host and port: {scrub(url)!r}\n{how}")
    return url


def _prepare(headers: Optional[Dict[str, Any]], body: Any, params: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """httpx's keyword arguments, each field checked first so a bad one is named, never a traceback."""
    out: Dict[str, Any] = {"headers": _str_headers(headers)}
    if params:
        out["params"] = {str(k): _query_value(v, f"params.{k}") for k, v in params.items()}
    if isinstance(body, (dict, list, tuple)):
        out["json"] = jsonable(body, "body")
    elif body is not None:
        out["content"] = str(body).encode()
    return out


def _str_headers(headers: Optional[Dict[str, Any]]) -> Dict[str, str]:
    out = {}
    for k, v in (headers or {}).items():
        name, value = str(k), v.isoformat() if isinstance(v, (datetime.date, datetime.time)) else str(v)
        for what, text in (("name", name), ("value", value)):
            bad = next((c for c in text if not " " <= c <= "~" and c != "\t"), None)
            if bad is not None:
                secret = scrub(value) != value
                shown = "" if secret else f" ({bad!r} at position {text.index(bad)})"
                kind = "a non-ASCII character" if ord(bad) > 127 else "a line break or control character"
                raise HttpError(f"`headers.{scrub(name)}`: the header {what} holds {kind}{shown}; HTTP headers "
                                f"are ASCII text on one line.\n  Percent-encode it (urllib.parse.quote), use ASCII "
                                f"only, or send the text in `body:` instead.")
        out[name] = value
    return out


def jsonable(value: Any, path: str) -> Any:
    """``value`` as JSON can carry it: dates and times as ISO 8601 text, arrays (``tolist()``) as lists;
    anything else is an error naming where it sits (``body.x``) and its type."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise HttpError(f"`{path}` is {value}, which JSON cannot carry.\n  Send a finite number, or null (None).")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = k.isoformat() if isinstance(k, (datetime.date, datetime.time)) else k
            if not (key is None or isinstance(key, (str, int, float, bool))):
                raise HttpError(f"`{path}` has a key of type {type(k).__name__}, which JSON cannot carry.\n"
                                f"  Use text keys.")
            out[key] = jsonable(v, f"{path}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist") and not isinstance(value, (bytes, bytearray)):   # numpy, torch
        return jsonable(value.tolist(), path)
    hint = {"set": "Use a list (YAML `[a, b]`, Python `sorted(...)`).", "frozenset": "Use a list.",
            "bytes": "Send text, or base64 (`${... as base64}`)."}.get(type(value).__name__,
                                                                   "Give a string, number, list or mapping.")
    raise HttpError(f"`{path}` holds a {type(value).__name__}, which cannot be sent as JSON.\n  {hint}")


def _query_value(value: Any, path: str) -> Any:
    """A query parameter: text, a number, a boolean, or a list of them; dates as ISO 8601."""
    many = isinstance(value, (list, tuple))
    items = [jsonable(v, f"{path}[{i}]" if many else path) for i, v in enumerate(value if many else [value])]
    for item in items:
        if isinstance(item, (dict, list)):
            raise HttpError(f"`{path}` holds a {'mapping' if isinstance(item, dict) else 'list'}, which a query "
                            f"parameter cannot carry.\n  Give text, a number or a list of them, or send it in `body:`.")
    return items if many else items[0]
