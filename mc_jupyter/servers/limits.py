"""The gates an http component's runs pass: model-compose's ``rate_limit`` and ``max_concurrent_count``.

- :class:`RateLimiter` is model-compose's (``mindor/core/foundation/rate_limit.py``), for threads: a
  token bucket (``requests`` per ``period``, holding ``burst`` tokens at most, full at the start) and/or
  a minimum ``interval`` between two requests. Each request reserves its send time under a lock and
  sleeps outside it, so callers from several threads are spaced in the order they came.
- :class:`ConcurrencyLimit` lets at most ``n`` runs of a component go at once (``0``: no limit); the
  others wait their turn.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator, Optional


class RateLimiter:
    """``acquire()`` returns when the next request may go (after sleeping if it must)."""

    def __init__(self, requests: Optional[int] = None, period: float = 1.0, burst: Optional[int] = None,
                 interval: Optional[float] = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.requests, self.period, self.interval = requests, period, interval
        self.capacity = float(burst if burst is not None else requests or 0)
        self.rate = (requests / period) if requests else 0.0
        self._tokens, self._clock, self._sleep = self.capacity, clock, sleep
        self._last = clock()
        self._next_at = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """The seconds this request must wait (its slot is taken)."""
        with self._lock:
            now = self._clock()
            at = now
            if self.requests:
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                self._tokens -= 1
                at = now + max(0.0, -self._tokens / self.rate)
            if self.interval:
                at = max(at, self._next_at)
                self._next_at = at + self.interval
            return at - now

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)


class ConcurrencyLimit:
    """At most ``n`` holders at once (``n`` of 0 or None: no limit)."""

    def __init__(self, n: Optional[int]):
        self.n = n or 0
        self._sem = threading.BoundedSemaphore(self.n) if self.n > 0 else None

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if self._sem is None:
            yield
            return
        while not self._sem.acquire(timeout=0.1):   # a short wait at a time: a kernel interrupt gets through
            pass
        try:
            yield
        finally:
            self._sem.release()
