"""The task layer: what a model component does with an action's fields, whatever its backend.

::

    run(fields)  ──► task.prepare(fields) ──► Call(items, many, params, batch_size)
                     backend.generate(batch, params)   for each batch of ``items``   (the backend's hook)
                 ◄── task.finish(outputs, call)        one result, or a list for a list input

    stream(fields, stop) ──► task.prepare(fields) ──► backend.generate_stream(item, params, stop)

A task (``tasks/text_generation.py``, ``tasks/classification.py``, ...) owns its input fields,
single-or-list, its typed parameters and the shape of its result. A backend (``drivers/...``)
subclasses the task and fills only :meth:`load`, :meth:`generate`, :meth:`generate_stream` and
:meth:`unload` — as a transformers ``Pipeline`` subclass fills ``preprocess/_forward/postprocess``
under the base's ``__call__``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from ..drivers.base import Driver, number
from ..config.positions import clip
from ..errors import InputError
from ..secrets import scrub


@dataclass
class Call:
    """One action's work: an item per input (a prompt, a conversation, an image), whether the input was
    a list, the task's typed parameters, and how many items go to the backend at once."""

    items: List[Any]
    many: bool
    params: Any = None
    batch_size: int = 32


def param(fields: Dict[str, Any], name: str, default: Any = None) -> Any:
    """A parameter from the action's ``params:``, else from the action's own fields (model-compose puts
    ``max_output_length``, ``batch_size``, ... there too: dialect §1), else ``default``."""
    params = fields.get("params") or {}
    for where in (params, fields):
        if where.get(name) is not None:
            return where[name]
    return default


def number_param(fields: Dict[str, Any], name: str, default: Any = None, cast: type = int,
                 minimum: Optional[float] = None) -> Any:
    """:func:`param` converted by :func:`mc_jupyter.drivers.base.number` (None stays None)."""
    value = param(fields, name, default)
    return None if value is None else number(value, name, cast, minimum)


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def flag(value: Any, name: str) -> Optional[bool]:
    """``value`` (a boolean, 0/1, or text: true/yes/on/1, false/no/off/0) as a boolean for the parameter ``name``;
    None stays None; anything else is an InputError naming the parameter, the value masked."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InputError(f"`{name}` must be true or false, not {clip(scrub(repr(value)), 80)}.\n  Write e.g. `{name}: true`; a value "
                     f"from `${{input.*}}` must hold true or false.")


def flag_param(fields: Dict[str, Any], name: str, default: Optional[bool] = None) -> Optional[bool]:
    """:func:`param` read as a boolean by :func:`flag`."""
    value = flag(param(fields, name), name)
    return default if value is None else value


def single_or_list(value: Any) -> tuple[List[Any], bool]:
    """``([value], False)`` for one input, ``(value, True)`` for a list (a tuple counts as a list)."""
    if isinstance(value, (list, tuple)):
        return list(value), True
    return [value], False


class ModelTask(Driver):
    """The base of every model task: :meth:`run` and :meth:`stream` over the hooks below."""

    #: The batch size without ``batch_size:`` (a backend may set its own).
    default_batch_size: int = 32

    # -- the task's hooks ------------------------------------------------------------------------
    def prepare(self, fields: Dict[str, Any]) -> Call:
        """The action's evaluated fields as a :class:`Call`; an InputError for a missing or wrong input."""
        raise NotImplementedError

    def check(self, call: Call) -> None:
        """A last check of the whole call before any item is generated (e.g. prompt lengths)."""

    def finish(self, outputs: List[Any], call: Call) -> Any:
        """The task's ``${result}`` from one output per item: the output, or the list for a list input."""
        return outputs if call.many else outputs[0]

    # -- the backend's hooks ---------------------------------------------------------------------
    def generate(self, items: List[Any], params: Any) -> List[Any]:
        """One output per item of a batch."""
        raise NotImplementedError

    def generate_stream(self, item: Any, params: Any, stop: threading.Event) -> Iterator[Any]:
        """Chunks of one item's output; stop soon after ``stop`` is set."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    # -- the flow --------------------------------------------------------------------------------
    def batch_size(self, fields: Dict[str, Any]) -> int:
        return number_param(fields, "batch_size", self.default_batch_size, int, 1) or self.default_batch_size

    def run(self, fields: Dict[str, Any]) -> Any:
        call = self.prepare(fields)
        self.check(call)
        outputs: List[Any] = []
        size = max(int(call.batch_size), 1)
        for start in range(0, len(call.items), size):
            outputs.extend(self.generate(call.items[start:start + size], call.params))
        return self.finish(outputs, call)

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[Any]:
        call = self.prepare(fields)
        if call.many and len(call.items) != 1:
            raise InputError("streaming takes one prompt, not a list.\n  Set `streaming: false` for list inputs.")
        self.check(call)
        yield from self.generate_stream(call.items[0], call.params, stop)
