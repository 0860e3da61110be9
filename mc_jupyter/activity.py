"""What the kernel is doing with a component beyond its registry state: an open chat, a running turn.

The chat widget (and ``mc.compare``) mark their component here; the sidebar shows it on the
component's card (``activities(id)``) and is told of every change through :func:`subscribe`.
Thread-safe; imports nothing of ours.
"""

from __future__ import annotations

import itertools
import threading
from typing import Callable, Dict, List, Tuple

_lock = threading.Lock()
_marks: Dict[int, Tuple[str, str]] = {}        # token -> (component id, what: "chat", "chat: generating", ...)
_listeners: List[Callable[[], None]] = []
_tokens = itertools.count(1)


def begin(component_id: str, what: str) -> int:
    """Mark ``component_id`` as doing ``what``; returns the token that :func:`end` takes."""
    with _lock:
        token = next(_tokens)
        _marks[token] = (component_id, what)
    _notify()
    return token


def change(token: int, what: str) -> None:
    """Say what a mark does now (e.g. ``chat`` -> ``chat: generating``)."""
    with _lock:
        if token not in _marks or _marks[token][1] == what:
            return
        _marks[token] = (_marks[token][0], what)
    _notify()


def end(token: int) -> None:
    with _lock:
        if _marks.pop(token, None) is None:
            return
    _notify()


def activities(component_id: str) -> List[str]:
    """What is marked on ``component_id`` now, oldest first."""
    with _lock:
        return [what for _, (cid, what) in sorted(_marks.items()) if cid == component_id]


def subscribe(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener()`` after every change; returns the function that unsubscribes it."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)
    return unsubscribe


def _notify() -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener()
        except Exception:     # a listener's failure (a closed comm) never breaks the chat
            pass
