"""Secrets: every value read through ``${env.*}`` is remembered and masked in anything shown.

The ground floor of the package: it imports nothing of mc_jupyter, so errors, the YAML grammar,
servers, display and the sidebar can all mask what they show without an import circle.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Iterator, List, Optional

_secrets: set = set()
_secrets_lock = threading.Lock()


def scrub(text: str) -> str:
    """Replace every secret read through ``${env.*}`` by ``***``."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        text = text.replace(s, "***")
    return text


def read_env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    if value and len(value.strip()) >= 4:
        with _secrets_lock:
            _secrets.update({value, value.strip()})
    return value


def chain(e: BaseException) -> Iterator[BaseException]:
    """``e`` and its causes (or contexts), each once."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ if e.__cause__ is not None else e.__context__


def leaks_secret(e: BaseException) -> bool:
    """Whether any exception of ``e``'s chain (cause or context) shows a secret in its text or args."""
    secrets = known()
    if not secrets:
        return False
    for link in chain(e):
        # our errors scrub str(); their args still hold the raw text
        texts = [str(link), " ".join(map(str, link.args)), *getattr(link, "__notes__", [])]
        if any(s in t for s in secrets for t in texts):
            return True
    return False


def known() -> List[str]:
    """The secrets read so far (for callers that must test text against each one)."""
    with _secrets_lock:
        return list(_secrets)


class ScrubLogs(logging.Filter):
    """Masks secrets in log records (httpx logs request URLs, whose query may hold a token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = scrub(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
