"""A stream sink for tests: it keeps the chunks, and with ``stop_after`` presses Stop once that many came."""

from __future__ import annotations

import threading
from typing import List, Optional

from mc_jupyter.engine import StreamSink


class Collect(StreamSink):
    """The chunks of a stream; ``interrupted`` is what ``finish`` was told (None until then)."""

    def __init__(self, stop_after: Optional[int] = None):
        self.chunks: List[str] = []
        self.tokens: List[Optional[int]] = []      # the token count each chunk came with
        self.stop_event = threading.Event()
        self.stop_after, self.interrupted = stop_after, None

    def start(self, job_id, component_id):
        pass

    def chunk(self, text, tokens=None):
        self.chunks.append(text)
        self.tokens.append(tokens)
        if self.stop_after is not None and len(self.chunks) >= self.stop_after:
            self.stop_event.set()     # what the Stop button does

    def finish(self, interrupted=False):
        self.interrupted = interrupted
