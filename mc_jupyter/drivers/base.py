"""The base every driver fills: load once, run many times, stream, unload.

A driver receives the component's load settings (``task``, ``model``, ``device``, ...) at
construction and the action's evaluated fields (``text``, ``messages``, ``params``, ...) at each
run. Subclasses fill :meth:`load`, :meth:`run` and, when the task streams, :meth:`stream`.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterator, List, Optional


def engine_params(params: Dict[str, Any], names: Dict[str, Any]) -> Dict[str, Any]:
    """The spec's generation parameters renamed for an inference engine (llama.cpp, vLLM).

    ``names`` maps a spec name to ``(engine name, cast)``; ``max_output_length`` (default 256) and
    ``stop_sequences`` are mapped for every engine, as ``max_tokens`` and ``stop``.
    """
    out: Dict[str, Any] = {"max_tokens": int(params.get("max_output_length") or 256)}
    for name, (key, cast) in names.items():
        if params.get(name) is not None:
            out[key] = cast(params[name])
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

    def batches(self, items: List[Any], fields: Dict[str, Any], default: int = 32) -> Iterator[List[Any]]:
        size = int(self.param(fields, "batch_size", default) or default)
        for start in range(0, len(items), max(size, 1)):
            yield items[start:start + size]
