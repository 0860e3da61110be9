"""The base every driver fills: load once, run many times, stream, unload.

A driver receives the component's load settings (``task``, ``model``, ``device``, ...) at
construction and the action's evaluated fields (``text``, ``messages``, ``params``, ...) at each
run. Subclasses fill :meth:`load`, :meth:`run` and, when the task streams, :meth:`stream`.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any, Dict, Iterator, List, Optional

from ..secrets import scrub
from ..errors import InputError


def number(value: Any, name: str, cast: type = int, minimum: Optional[float] = None) -> Any:
    """``value`` (a number, or text holding one) as ``cast`` (int or float) for the parameter ``name``.

    Anything else is an InputError naming the parameter, with the value scrubbed (a ``${env.*}`` secret
    shows as ***) and no exception chain: Python's own ``int()`` error quotes the raw value."""
    result = _as_number(value, cast)
    if result is not None and (minimum is None or result >= minimum):
        return result
    raw = repr(value)
    shown = scrub(raw)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if scrub(raw) != raw:   # a ${env.*} secret: name the variable, never the value
        found = sorted(var for var, text in os.environ.items() if len(text.strip()) >= 4 and text in str(value)
                       and scrub(text) != text)
        where = ", ".join(f"`${{env.{var}}}`" for var in found) or "`${env.*}`"
        shown += f" (read from {where}: a secret, so not shown)"
    kind = "a whole number" if cast is int else "a number"
    bound = f" of at least {minimum:g}" if minimum is not None else ""
    example = int(minimum) if minimum is not None and minimum > 1 else 1 if cast is int else 0.7
    raise InputError(f"`{name}` must be {kind}{bound}, not {shown}.\n  Write e.g. `{name}: {example}`; a value "
                     f"from `${{input.*}}` or `${{env.*}}` must hold such a number.")


def _as_number(value: Any, cast: type) -> Any:
    if isinstance(value, bool):
        return None
    if cast is int and isinstance(value, int):
        return value
    try:
        if cast is int and isinstance(value, str):
            return int(value)    # exact for long digit strings
    except ValueError:
        pass
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(f):
        return None
    if cast is int:
        return int(f) if f.is_integer() else None
    return f


def engine_params(params: Dict[str, Any], names: Dict[str, Any]) -> Dict[str, Any]:
    """The spec's generation parameters renamed for an inference engine (llama.cpp, vLLM).

    ``names`` maps a spec name to ``(engine name, cast)``; ``max_output_length`` (default 256) and
    ``stop_sequences`` are mapped for every engine, as ``max_tokens`` and ``stop``.
    """
    out: Dict[str, Any] = {"max_tokens": number(params.get("max_output_length") or 256, "max_output_length", int, 1)}
    for name, (key, cast) in names.items():
        if params.get(name) is not None:
            out[key] = number(params[name], name, cast) if cast in (int, float) else cast(params[name])
    stops = params.get("stop_sequences")
    if stops:
        out["stop"] = [stops] if isinstance(stops, str) else list(stops)
    return out


class Driver:
    """One loaded model. ``settings`` are the component's load fields as written in the YAML."""

    streams: bool = False

    def __init__(self, component_id: str, settings: Dict[str, Any]):
        self.component_id = component_id
        self.settings = settings
        self.device: Optional[str] = None
        self.dtype: Optional[str] = None
        self.parameters: Optional[int] = None
        self.memory_bytes: Optional[int] = None
        self.source_description: str = ""

    # -- hooks ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Load weights; raise a UserError for what the user can fix."""
        raise NotImplementedError

    def run(self, fields: Dict[str, Any]) -> Any:
        """Run one action with its evaluated fields; return the task's ``${result}``."""
        raise NotImplementedError

    def wants_stream(self, fields: Dict[str, Any], per_chunk_output: bool) -> bool:
        """Whether this action streams: models when ``streaming: true``."""
        return self.streams and fields.get("streaming") in (True, "true", "True")

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[Any]:
        """Yield text chunks; stop soon after ``stop`` is set."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def unload(self) -> None:
        """Drop every reference to device memory."""

    def reconfigure(self, settings: Dict[str, Any]) -> None:
        """Take settings that differ only in live fields (see ``LIVE_FIELDS``) without reloading."""
        self.settings = settings

    # -- shared helpers ------------------------------------------------------------------------
    def info(self) -> Dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype, "parameters": self.parameters,
                "memory_bytes": self.memory_bytes, "source": self.source_description}

    def param(self, fields: Dict[str, Any], name: str, default: Any = None) -> Any:
        """A parameter from ``params:``, the action's top level, or the component (dialect §1)."""
        params = fields.get("params") or {}
        for where in (params, fields, self.settings):
            if where.get(name) is not None:
                return where[name]
        return default

    def number(self, fields: Dict[str, Any], name: str, default: Any = None, cast: type = int,
               minimum: Optional[float] = None) -> Any:
        """:meth:`param` converted by :func:`number` (None stays None)."""
        value = self.param(fields, name, default)
        return None if value is None else number(value, name, cast, minimum)

    def batches(self, items: List[Any], fields: Dict[str, Any], default: int = 32) -> Iterator[List[Any]]:
        size = self.number(fields, "batch_size", default, int, 1) or default
        for start in range(0, len(items), max(size, 1)):
            yield items[start:start + size]
