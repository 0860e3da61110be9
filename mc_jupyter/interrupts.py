"""Kernel interrupts held back while the registry changes state, taken while a model loads.

A kernel interrupt is SIGINT: Python runs the SIGINT handler (``default_int_handler`` while a cell
runs in ipykernel) between two bytecodes of the main thread, which raises ``KeyboardInterrupt``
wherever the cell happens to be. Inside the few lines that move a loaded model into the registry, or
free one, that would leave a model loaded but owned by nobody. :func:`deferred` swaps the handler for
one that only notes the interrupt; the noted interrupt is raised when the block ends, or as soon as
an :func:`allowed` block inside it starts (the registry allows them around ``driver.load()``, so
interrupting a slow load still stops it at once).

Only the main thread gets signals; anywhere else both are no-ops. Nothing is imported that costs time.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, List


class _Holding:
    """The SIGINT handler installed by :func:`deferred`: it notes the interrupt and returns."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.caught: List[int] = []

    def __call__(self, signum: int, frame: Any) -> None:
        self.caught.append(signum)


def _main_handler() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGINT)


class deferred:
    """Hold kernel interrupts until the block ends; then raise the one that came, if any.

    An error already on its way out of the block wins over a held interrupt.
    """

    def __enter__(self) -> "deferred":
        previous = _main_handler()
        self.holding = None
        if previous is None or isinstance(previous, _Holding) or previous in (signal.SIG_IGN, signal.SIG_DFL):
            return self     # another thread, nested, or interrupts not handled by Python here
        self.holding = _Holding(previous)
        signal.signal(signal.SIGINT, self.holding)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.holding is None:
            return
        signal.signal(signal.SIGINT, self.holding.previous)
        if self.holding.caught and exc_type is None:
            raise KeyboardInterrupt


class allowed:
    """Inside :func:`deferred`: take interrupts again for the block (one that came already is raised)."""

    def __enter__(self) -> "allowed":
        holding = _main_handler()
        self.holding = holding if isinstance(holding, _Holding) else None
        if self.holding is not None:
            signal.signal(signal.SIGINT, self.holding.previous)
            if self.holding.caught:
                self.holding.caught.clear()
                signal.signal(signal.SIGINT, self.holding)
                raise KeyboardInterrupt
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.holding is not None:
            signal.signal(signal.SIGINT, self.holding)
