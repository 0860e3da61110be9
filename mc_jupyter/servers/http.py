"""Talking to a model server: one request, a whole body or a stream of events.

Streams (``stream_format``):
- ``json``: Server-Sent Events (``data: {...}`` lines, OpenAI style, ``[DONE]`` ends it) when the
  server says ``text/event-stream``, otherwise NDJSON (one JSON document a line, Ollama style);
- ``text``: the body's chunks as they arrive.
When an output reads the whole ``${response}`` of a streamed body, it sees the events merged
(:func:`merge_events`): strings concatenated, other values the last one's; so Ollama's streamed
``message.content`` pieces read as the whole reply.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Dict, Iterator, List, Optional

from ..binding import ScrubLogs
from ..errors import UserError

DEFAULT_TIMEOUT = 60.0

for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(ScrubLogs())


class HttpError(UserError):
    """A connection that failed or a server that answered with an error status."""


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
            timeout: float = DEFAULT_TIMEOUT) -> Any:
    """The whole response: parsed JSON, the events of a streamed body merged, or text."""
    import httpx
    try:
        with _client(timeout) as client:
            with client.stream(method, url, headers=_str_headers(headers), params=params,
                               **_body(body)) as response:
                _check_status(url, response)
                kind = _kind(response)
                if kind in ("sse", "ndjson"):
                    return merge_events(list(_events(response, kind)))
                data = response.read()
    except httpx.HTTPError as e:
        raise _fail(url, e) from None
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def stream(method: str, url: str, headers: Dict[str, Any], body: Any, params: Optional[Dict[str, Any]],
           stream_format: str, stop: threading.Event, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Any]:
    """Each event (parsed JSON) or text chunk as it arrives; stops when ``stop`` is set."""
    import httpx
    try:
        with _client(timeout) as client:
            with client.stream(method, url, headers=_str_headers(headers), params=params,
                               **_body(body)) as response:
                _check_status(url, response)
                kind = _kind(response) if stream_format == "json" else "text"
                if kind == "raw":
                    kind = "ndjson"
                source = response.iter_text() if kind == "text" else _events(response, kind)
                for item in source:
                    if stop.is_set():
                        return
                    yield item
    except httpx.HTTPError as e:
        raise _fail(url, e) from None


def _kind(response) -> str:
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" in content_type:
        return "sse"
    if "ndjson" in content_type or "jsonl" in content_type:
        return "ndjson"
    return "raw"


def _events(response, kind: str) -> Iterator[Any]:
    for line in response.iter_lines():
        line = line.strip()
        if not line:
            continue
        if kind == "sse":
            if not line.startswith("data:"):
                continue   # event:, id:, retry:, comments
            line = line[5:].strip()
            if line == "[DONE]":
                return
        try:
            yield json.loads(line)
        except ValueError:
            yield line


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


def _str_headers(headers: Optional[Dict[str, Any]]) -> Dict[str, str]:
    return {str(k): str(v) for k, v in (headers or {}).items()}


def _body(body: Any) -> Dict[str, Any]:
    if body is None:
        return {}
    if isinstance(body, (dict, list)):
        return {"json": body}
    return {"content": str(body).encode()}
