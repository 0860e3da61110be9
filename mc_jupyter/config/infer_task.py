"""The task of a model component written without ``task:`` (spec 8.7), read from the model's files."""

from __future__ import annotations

from typing import List, Optional

from .positions import Path, Positions


def infer_task(raw: dict, path: Path, positions: Positions, notes: List[str]) -> Optional[str]:
    """The task ``raw`` (a model component's keys as written, with no ``task:``) means, or None when its
    files do not say (the caller's "`task:` is missing" error then stands)."""
    return None
