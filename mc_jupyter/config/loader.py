"""YAML text -> plain Python values, with the line of every key and item kept.

The values stay plain (dict, list, str, int, ...) so the schema can validate them; the positions
travel beside them in a :class:`Positions` map keyed by the YAML path (a tuple of keys/indexes).
:func:`load_mapping` gives a Python mapping (``mc.compose({...})``) the same checks, without lines.
"""

from __future__ import annotations


from typing import Any, Dict, Optional

import yaml

from ..errors import ConfigError
from .positions import Path, Positions, clip, format_path

#: The deepest nesting of mappings and lists read (PyYAML's composer and every walker of the values
#: recurse once per level; a real compose file needs a handful).
MAX_DEPTH = 100
#: At most this many values made by repeating an ``&anchor`` through its ``*aliases``.
MAX_REPEATS = 100_000

_YAML = "tag:yaml.org,2002:"
_MERGE = _YAML + "merge"
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp", "binary")}


def _too_deep(path: Path, line: Optional[int]) -> ConfigError:
    return ConfigError(f"the YAML is nested deeper than {MAX_DEPTH} levels", path=format_path(path[:6]) + "…",
                       line=line, hint=f"mc_jupyter reads at most {MAX_DEPTH} levels of mappings and lists inside "
                                       f"each other: check for an unclosed `[` or `{{`, or flatten the structure.")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with a limit on nesting: its composer recurses once per level."""

    def __init__(self, text: str, offset: int):
        super().__init__(text)
        self.offset, self.stack, self.built, self.repeats = offset, [], set(), 0

    def compose_node(self, parent, index):
        if len(self.stack) > MAX_DEPTH:
            path = tuple(i.value if isinstance(i, yaml.ScalarNode) else "?" if isinstance(i, yaml.Node) else i
                         for i in self.stack if i is not None)
            raise _too_deep(path, self.peek_event().start_mark.line + 1 + self.offset)
        self.stack.append(index)
        try:
            return super().compose_node(parent, index)
        finally:
            self.stack.pop()

    def source(self, node: yaml.Node) -> str:
        """The text of ``node`` as written."""
        return self.buffer[node.start_mark.index:node.end_mark.index]


def load_yaml(text: str, first_line: int = 1) -> tuple[Any, Positions]:
    """Parse ``text``; line numbers count from ``first_line`` (2 inside a ``%%compose`` cell)."""
    positions = Positions()
    loader = None
    try:
        loader = _Loader(text, first_line - 1)   # reading starts here: a control character fails at once
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
        raise ConfigError(f"the YAML cannot be parsed: {clip(problem, 200)}", line=line, hint=hint) from None
    finally:
        if loader is not None:
            loader.dispose()
    return value, positions


def _tag(node: yaml.Node) -> str:
    """The tag as written: `!!python/name:x`, `!foo`."""
    return "!!" + node.tag[len(_YAML):] if node.tag.startswith(_YAML) else node.tag


def _unknown_tag(loader: _Loader, node: yaml.Node, path: Path) -> ConfigError:
    return ConfigError(f"unknown tag `{clip(_tag(node), 60)}`", path=format_path(path),
                       line=node.start_mark.line + 1 + loader.offset,
                       hint="mc_jupyter reads plain YAML values (text, numbers, true/false, null, dates, lists, "
                            "mappings): remove the tag, or quote the whole value to keep it as text.")


def _key(loader: _Loader, key_node: yaml.Node, path: Path) -> Any:
    """The key of a mapping entry: text or a number; a YAML 1.1 boolean or null key is refused."""
    line = key_node.start_mark.line + 1 + loader.offset
    if not isinstance(key_node, yaml.ScalarNode):
        kind = "mapping" if isinstance(key_node, yaml.MappingNode) else "list"
        raise ConfigError(f"a mapping key must be a plain word, not the {kind} `{clip(loader.source(key_node), 60)}`",
                          path=format_path(path), line=line, hint="Write the key as a word (`name: value`).")
    if key_node.tag not in _SCALAR_TAGS:
        raise _unknown_tag(loader, key_node, path)
    try:
        key = loader.construct_object(key_node, deep=True)
    except (ValueError, KeyError, AttributeError, IndexError, TypeError, yaml.YAMLError) as e:
        raise ConfigError(f"the key `{clip(key_node.value)}` cannot be read ({clip(e)})", path=format_path(path),
                          line=line, hint="Quote it.") from None
    written = clip(loader.source(key_node) or key_node.value, 60)
    if isinstance(key, bool):
        raise ConfigError(f"the key `{written}` is read by YAML as the boolean {str(key).lower()}, not as the word "
                          f"`{written}`", path=format_path(path + (written,)), line=line,
                          hint=f"Quote it: `\"{written}\":`.")
    if key is None:
        if not written:
            raise ConfigError("a mapping entry has no key (nothing before its `:`)", path=format_path(path),
                              line=line, hint="Write the key before the colon, e.g. `task: text-generation`.")
        raise ConfigError(f"the key `{written}` is read by YAML as null (no key at all)",
                          path=format_path(path + (written,)), line=line, hint=f"Quote it: `\"{written}\":`.")
    if not isinstance(key, (str, int, float)):
        raise ConfigError(f"a mapping key must be a plain word, not `{written}`", path=format_path(path),
                          line=line, hint=f"Quote it: `\"{written}\":`.")
    return key


def _entries(loader: _Loader, node: yaml.MappingNode, path: Path, merging: tuple = ()) -> Dict[Any, tuple]:
    """key -> (key node, value node) of a mapping, its ``<<:`` merges resolved as YAML says: its own
    keys win over merged ones, an earlier merged mapping over a later one; a key twice is refused."""
    own: Dict[Any, tuple] = {}
    merged: Dict[Any, tuple] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                line = source.start_mark.line + 1 + loader.offset
                if not isinstance(source, yaml.MappingNode):
                    raise ConfigError("`<<:` merges mappings into this one, not a value", path=format_path(path),
                                      line=line, hint="Write `<<: *anchor` or `<<: [*one, *two]`, with each "
                                                      "`&anchor` on a mapping.")
                if id(source) in merging or len(merging) > MAX_DEPTH:
                    raise ConfigError("a `<<:` merge refers to a mapping that contains it (a loop)",
                                      path=format_path(path), line=line,
                                      hint="Remove the `*alias` that points back into its own `&anchor`.")
                for key, pair in _entries(loader, source, path, merging + (id(source),)).items():
                    merged.setdefault(key, pair)
            continue
        key = _key(loader, key_node, path)
        if key in own:
            raise ConfigError(f"the key `{clip(key_node.value, 60)}` appears twice in the same mapping",
                              path=format_path(path + (key,)), line=key_node.start_mark.line + 1 + loader.offset,
                              hint="Remove one of them: YAML would silently keep only the last.")
        own[key] = (key_node, value_node)
    return {**merged, **own}


def _build(loader: _Loader, node: yaml.Node, path: Path, positions: Positions, offset: int,
           parents: tuple = (), copy: bool = False) -> Any:
    line = node.start_mark.line + 1 + offset
    positions.lines.setdefault(path, line)
    if id(node) in parents:
        raise ConfigError("an alias refers to a mapping or list that contains it (a loop)", path=format_path(path),
                          line=positions.line(path), hint="Remove the `*alias` that points back into its own `&anchor`.")
    if len(path) > MAX_DEPTH:      # aliases inside aliases nest deeper than the text does
        raise _too_deep(path, line)
    copy = copy or id(node) in loader.built      # reached again through an alias (or a merge)
    if copy:
        loader.repeats += 1
        if loader.repeats > MAX_REPEATS:
            raise ConfigError(f"the `*aliases` repeat their `&anchors` into more than {MAX_REPEATS:,} values",
                              path=format_path(path), line=line,
                              hint="Write the repeated part once, or use fewer aliases of aliases.")
    loader.built.add(id(node))
    parents = parents + (id(node),)
    if isinstance(node, yaml.MappingNode):
        if node.tag != _YAML + "map":
            raise _unknown_tag(loader, node, path)
        out: Dict[Any, Any] = {}
        for key, (key_node, value_node) in _entries(loader, node, path).items():
            positions.lines[path + (key,)] = key_node.start_mark.line + 1 + offset
            if not isinstance(key, str):
                positions.written[path + (key,)] = clip(loader.source(key_node) or key_node.value, 60)
            out[key] = _build(loader, value_node, path + (key,), positions, offset, parents, copy)
        return out
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _YAML + "seq":
            raise _unknown_tag(loader, node, path)
        return [_build(loader, item, path + (i,), positions, offset, parents, copy)
                for i, item in enumerate(node.value)]
    if node.tag == _MERGE:        # a `<<` that is a value, not a key: the text
        return node.value
    if node.tag not in _SCALAR_TAGS:
        raise _unknown_tag(loader, node, path)
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, KeyError, AttributeError, IndexError, TypeError, yaml.YAMLError) as e:
        kind = node.tag.rsplit(":", 1)[-1]
        wanted = {"int": "an integer", "float": "a number", "bool": "true or false", "timestamp": "a date",
                  "binary": "base64 bytes"}.get(kind, kind)
        hint = "To keep it as text, quote it" + (' (e.g. "2024-02-30")' if kind == "timestamp" else "") + \
               "; otherwise fix the value."
        raise ConfigError(f"the value `{clip(node.value)}` cannot be read as {wanted} ({clip(e)})",
                          path=format_path(path), line=line, hint=hint) from None


def load_mapping(data: Any) -> tuple[Any, Positions]:
    """A Python value given instead of YAML text (``mc.compose({...})``): checked as the YAML loader
    checks (keys, nesting, loops) and copied into plain dicts and lists. Its positions know no lines."""
    positions = Positions()
    return _plain(data, (), positions, ()), positions


def _plain(value: Any, path: Path, positions: Positions, parents: tuple) -> Any:
    if not isinstance(value, (dict, list, tuple)):
        return value
    if id(value) in parents:
        raise ConfigError("a mapping or list contains itself (a loop)", path=format_path(path),
                          hint="Give a tree of mappings and lists, without a reference back to an outer one.")
    if len(path) > MAX_DEPTH:
        raise _too_deep(path, None)
    parents = parents + (id(value),)
    if isinstance(value, (list, tuple)):
        return [_plain(v, path + (i,), positions, parents) for i, v in enumerate(value)]
    out = {}
    for key, v in value.items():
        if isinstance(key, bool) or key is None or not isinstance(key, (str, int, float)):
            raise ConfigError(f"a mapping key must be text, not {clip(repr(key), 60)} (a {type(key).__name__})",
                              path=format_path(path), hint=f"Use the text `\"{clip(key, 60)}\"` as the key.")
        if not isinstance(key, str):
            positions.written[path + (key,)] = clip(key, 60)
        out[key] = _plain(v, path + (key,), positions, parents)
    return out
