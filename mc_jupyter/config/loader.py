"""YAML text -> plain Python values, with the line of every key and item kept.

The values stay plain (dict, list, str, int, ...) so the schema can validate them; the positions
travel beside them in a :class:`Positions` map keyed by the YAML path (a tuple of keys/indexes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import yaml

from ..errors import ConfigError

Path = Tuple[Any, ...]


def format_path(path: Path) -> str:
    """('components', 0, 'params') -> 'components[0].params'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class Positions:
    """Where each YAML path starts (1-based line numbers as the user sees them)."""

    lines: Dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def shifted(self, prefix: Path) -> "Positions":
        """The same positions seen from inside ``prefix``."""
        n = len(prefix)
        return Positions({p[n:]: v for p, v in self.lines.items() if p[:n] == tuple(prefix)})


def load_yaml(text: str, first_line: int = 1) -> tuple[Any, Positions]:
    """Parse ``text``; line numbers count from ``first_line`` (2 inside a ``%%compose`` cell)."""
    positions = Positions()
    loader = None
    try:
        loader = yaml.SafeLoader(text)   # reading starts here: a control character fails at once
        node = loader.get_single_node()
        if node is None:
            return None, positions
        value = _build(loader, node, (), positions, first_line - 1)
    except ConfigError:
        raise
    except yaml.reader.ReaderError as e:
        line = text[:e.position].count("\n") + first_line if isinstance(e.position, int) else None
        raise ConfigError(f"the YAML cannot be parsed: {e.reason} #x{e.character:04x}" if isinstance(e.character, int)
                          else f"the YAML cannot be parsed: {e.reason}", line=line,
                          hint="Remove control characters (a pasted terminal colour code, a NUL).") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + first_line if mark else None
        problem = " ".join(x for x in (e.context, e.problem) if x)
        hint = "Check the indentation (spaces, not tabs) and that every `key: value` has a space after the colon."
        if "found character '\\t'" in str(e):
            hint = "YAML does not allow tabs for indentation: use spaces."
        raise ConfigError(f"the YAML cannot be parsed: {problem}", line=line, hint=hint) from None
    finally:
        if loader is not None:
            loader.dispose()
    return value, positions


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path, positions: Positions, offset: int,
           parents: tuple = ()) -> Any:
    positions.lines.setdefault(path, node.start_mark.line + 1 + offset)
    line = node.start_mark.line + 1 + offset
    if id(node) in parents:
        raise ConfigError("an alias refers to a mapping or list that contains it (a loop)", path=format_path(path),
                          line=positions.line(path), hint="Remove the `*alias` that points back into its own `&anchor`.")
    parents = parents + (id(node),)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: Dict[Any, Any] = {}
        for key_node, value_node in node.value:
            try:
                key = loader.construct_object(key_node, deep=True)
            except (ValueError, KeyError, AttributeError, IndexError, TypeError, yaml.YAMLError) as e:
                raise ConfigError(f"the key `{key_node.value}` cannot be read ({e})", path=format_path(path),
                                  line=key_node.start_mark.line + 1 + offset, hint="Quote it.") from None
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise ConfigError(f"a mapping key must be a plain word, not {key!r}",
                                  path=format_path(path), line=key_node.start_mark.line + 1 + offset)
            if key in out:
                raise ConfigError(f"the key `{key}` appears twice in the same mapping",
                                  path=format_path(path + (key,)), line=key_node.start_mark.line + 1 + offset,
                                  hint="Remove one of them: YAML would silently keep only the last.")
            positions.lines[path + (key,)] = key_node.start_mark.line + 1 + offset
            out[key] = _build(loader, value_node, path + (key,), positions, offset, parents)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), positions, offset, parents) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, KeyError, AttributeError, IndexError, TypeError, yaml.YAMLError) as e:
        kind = node.tag.rsplit(":", 1)[-1]
        wanted = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(kind, kind)
        raise ConfigError(f"the value `{node.value}` cannot be read as {wanted} ({e})",
                          path=format_path(path), line=line,
                          hint="To keep it as text, quote it (e.g. \"2024-02-30\"); otherwise fix the value.") from None
