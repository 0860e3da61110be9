"""The lifecycle every component implementation fills: load once, run many times, stream, unload.

A driver receives the component's validated, frozen config (``config.task``, ``config.precision``,
... see :mod:`mc_jupyter.config.schema`) at construction and the action's evaluated fields
(``text``, ``messages``, ``params``, ...) at each run. Model backends do not fill :meth:`run`
themselves: they subclass a task (:mod:`mc_jupyter.tasks`), which owns the fields, lists, batches
and the result's shape, and fill the task's backend hooks.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any, Dict, Iterator, Optional

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


class Driver:
    """One loaded component. ``config`` is its validated, frozen config (a ``ModelComponent`` or an
    ``HttpComponent`` of :mod:`mc_jupyter.config.schema`)."""

    streams: bool = False

    def __init__(self, component_id: str, config: Any):
        self.component_id = component_id
        self.config = config
        self.device: Optional[str] = None
        self.dtype: Optional[str] = None
        self.parameters: Optional[int] = None
        self.memory_bytes: Optional[int] = None
        self.source_description: str = ""

    # -- hooks ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Load weights (or start a server); raise a UserError for what the user can fix."""
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

    def reconfigure(self, config: Any) -> None:
        """Take a config that differs only in what needs no reload (adapter weights; see the registry's
        fingerprint) without reloading."""
        self.config = config

    def info(self) -> Dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype, "parameters": self.parameters,
                "memory_bytes": self.memory_bytes, "source": self.source_description}
