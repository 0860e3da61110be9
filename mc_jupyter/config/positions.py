"""Where things stand in the YAML: a path of keys and indexes, and the line of each.

Ground floor: imports nothing of mc_jupyter. ``Path`` here is a YAML path (a tuple of keys and
list indexes), not a file path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

Path = Tuple[Any, ...]


def clip(value: Any, limit: int = 80) -> str:
    """``value`` as text, cut to its first 60 characters (and its length) when longer than ``limit``."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:60]}…({len(text):,} characters)"


def format_path(path: Path, written: Optional[Dict[Path, str]] = None) -> str:
    """('components', 0, 'params') -> 'components[0].params'. A key that is not text (``12:``) is
    shown as written (``params.12``) when ``written`` knows it."""
    out = ""
    for i, part in enumerate(path):
        if written and not isinstance(part, str) and tuple(path[:i + 1]) in written:
            part = written[tuple(path[:i + 1])]
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + clip(part, 40)
    return out


@dataclass
class Positions:
    """Where each YAML path starts (1-based line numbers as the user sees them), and how the keys
    that are not text were written."""

    lines: Dict[Path, int] = field(default_factory=dict)
    written: Dict[Path, str] = field(default_factory=dict)

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def where(self, path: Path) -> Dict[str, Any]:
        """``path=`` and ``line=`` of a :class:`ConfigError` at ``path``."""
        return dict(path=format_path(path, self.written), line=self.line(path))

    def copy(self, old: Path, new: Path) -> None:
        """Give ``new`` (and everything under it) the lines of ``old``: a key moved by a normalisation
        (model-compose's shorthands) keeps the line the user wrote it on."""
        n = len(old)
        for p, line in list(self.lines.items()):
            if p[:n] == tuple(old):
                self.lines.setdefault(tuple(new) + p[n:], line)
        for p, text in list(self.written.items()):
            if p[:n] == tuple(old):
                self.written.setdefault(tuple(new) + p[n:], text)

    def shifted(self, prefix: Path) -> "Positions":
        """The same positions seen from inside ``prefix``."""
        n = len(prefix)
        return Positions({p[n:]: v for p, v in self.lines.items() if p[:n] == tuple(prefix)},
                         {p[n:]: v for p, v in self.written.items() if p[:n] == tuple(prefix)})
