"""Structural operators in YAML values (model-compose's ``VariableRenderer._render_element``) and compiling a
whole YAML value: every string with ``${`` parsed, every operator mapping checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..config.positions import Path, Positions
from ..errors import BindingError, choices_text, did_you_mean
from .grammar import OPERATORS, Template, _MISSING, _error, parse_template


@dataclass(frozen=True)
class Op:
    """A mapping (or list item) that is an operator, compiled; :func:`render` evaluates it."""

    yaml_path: Path
    line: Optional[int]

    def children(self) -> List[Any]:
        return []

    def error(self, message: str, hint: str = "") -> BindingError:
        return _error(message, self.yaml_path, self.line, hint)


@dataclass(frozen=True)
class Condition:
    input: Any
    operator: Any          # a word of OPERATORS, or a Template
    value: Any
    if_true: Any = None
    if_false: Any = _MISSING


@dataclass(frozen=True)
class Cond(Op):
    """``?``: the first condition that holds gives its ``if_true``; one that fails with an
    ``if_false`` gives that; none: None (as a sibling key in a mapping: nothing is merged)."""

    conditions: Tuple[Condition, ...] = ()

    def children(self) -> List[Any]:
        return [x for c in self.conditions for x in (c.input, c.operator, c.value, c.if_true, c.if_false)
                if x is not _MISSING]


@dataclass(frozen=True)
class Join(Op):
    """``+``: lists concatenated, mappings merged, strings joined (None parts left out)."""

    parts: Any = None

    def children(self) -> List[Any]:
        return [self.parts]


@dataclass(frozen=True)
class Zip(Op):
    """``&``: ``{key: list, ...}`` -> ``[{key: item, ...}, ...]`` (as long as the shortest)."""

    sources: Any = None

    def children(self) -> List[Any]:
        return [self.sources]


@dataclass(frozen=True)
class Map(Op):
    """``*``: each element of ``source`` (kept when ``where`` holds) rendered through the other keys,
    with ``${item}`` and ``${index}``; no other keys: the (filtered) elements themselves."""

    source: Any = None
    where: Any = None
    template: Optional[Dict[str, Any]] = None

    def children(self) -> List[Any]:
        return [self.source, self.where, self.template]


@dataclass(frozen=True)
class Split(Op):
    """``|``: ``{key: [template over each element]}`` (the inverse of a zip)."""

    source: Any = None
    template: Optional[Dict[str, Any]] = None

    def children(self) -> List[Any]:
        return [self.source, self.template]


@dataclass(frozen=True)
class Spread(Op):
    """A list item ``...${x}``: the list ``x`` is spliced in."""

    value: Any = None

    def children(self) -> List[Any]:
        return [self.value]


_CONDITION_KEYS = ("input", "operator", "value", "if_true", "if_false")
_SPREAD = re.compile(r"^\.\.\.\$\{.*\}$", re.S)


def _compile_op(value: dict, yaml_path: Path, positions: Positions) -> Any:
    line = positions.line(yaml_path)
    sub = lambda v, *k: compile_value(v, yaml_path + k, positions)   # noqa: E731
    if len(value) == 1 and "?" in value:
        return _compile_cond(value["?"], yaml_path + ("?",), positions)
    if len(value) == 1 and "+" in value:
        return Join(yaml_path, line, sub(value["+"], "+"))
    if len(value) == 1 and "&" in value:
        sources = value["&"]
        if isinstance(sources, dict) and not sources or not isinstance(sources, (dict, str)):
            raise _error("`&` (zip) takes a non-empty mapping of output keys to lists", yaml_path + ("&",), line,
                         "Write `&: {text: ${input.texts}, score: ${jobs.rank.output}}`.")
        return Zip(yaml_path, line, sub(sources, "&"))
    if "*" in value:
        source, where = value["*"], None
        if isinstance(source, dict):
            unknown = [k for k in source if k not in ("input", "where")]
            if unknown or "input" not in source:
                raise _error(f"`*` (map) as a mapping takes `input:` and `where:`"
                             f"{'; not `' + str(unknown[0]) + '`' if unknown else ''}", yaml_path + ("*",), line,
                             "Write `*: ${input.items}`, or `*: {input: ${input.items}, where: {input: ${item.score},"
                             " operator: gt, value: 0.5}}`.")
            where = _compile_where(source.get("where"), yaml_path + ("*", "where"), positions)
            source = sub(source["input"], "*", "input")
        else:
            source = sub(source, "*")
        template = {k: sub(v, k) for k, v in value.items() if k != "*"}
        return Map(yaml_path, line, source, where, template or None)
    if "|" in value:
        template = {k: sub(v, k) for k, v in value.items() if k != "|"}
        if not template:
            raise _error("`|` (split) needs at least one output key beside it", yaml_path, line,
                         "Write `{'|': ${input.pairs}, texts: ${item.text}, scores: ${item.score}}`.")
        return Split(yaml_path, line, sub(value["|"], "|"), template)
    return None


def _compile_condition(entry: Any, yaml_path: Path, positions: Positions, what: str) -> Condition:
    line = positions.line(yaml_path)
    if not isinstance(entry, dict):
        raise _error(f"a `{what}` condition is a mapping, not {type(entry).__name__}", yaml_path, line,
                     "Write `{input: ${input.x}, operator: eq, value: 1, if_true: ..., if_false: ...}`.")
    allowed = _CONDITION_KEYS if what == "?" else _CONDITION_KEYS[:3]
    for k in entry:
        if k not in allowed:
            raise _error(f"a `{what}` condition has no key `{k}`{did_you_mean(str(k), allowed)}", yaml_path + (k,),
                         positions.line(yaml_path + (k,)), f"Its keys: {choices_text(allowed)}.")
    operator = compile_value(entry.get("operator", "eq"), yaml_path + ("operator",), positions)
    if isinstance(operator, str) and operator not in OPERATORS:
        raise _error(f"unknown operator `{operator}`{did_you_mean(operator, OPERATORS)}", yaml_path + ("operator",),
                     positions.line(yaml_path + ("operator",)), f"Operators: {choices_text(OPERATORS)}.")
    c = lambda k: compile_value(entry.get(k), yaml_path + (k,), positions)   # noqa: E731
    return Condition(c("input"), operator, c("value"), c("if_true"),
                     c("if_false") if "if_false" in entry else _MISSING)


def _compile_cond(entries: Any, yaml_path: Path, positions: Positions) -> Cond:
    items = entries if isinstance(entries, list) else [entries]
    conditions = tuple(_compile_condition(e, yaml_path + ((i,) if isinstance(entries, list) else ()), positions, "?")
                       for i, e in enumerate(items))
    return Cond(yaml_path, positions.line(yaml_path), conditions)


def _compile_where(where: Any, yaml_path: Path, positions: Positions) -> Any:
    """A map's ``where``: ``{all: [...]}``, ``{any: [...]}``, ``{not: ...}`` or one condition."""
    if where is None:
        return None
    if isinstance(where, dict) and len(where) == 1 and next(iter(where)) in ("all", "any"):
        key = next(iter(where))
        items = where[key]
        if not isinstance(items, list):
            raise _error(f"`where.{key}` takes a list of conditions", yaml_path + (key,),
                         positions.line(yaml_path + (key,)))
        return (key, tuple(_compile_where(w, yaml_path + (key, i), positions) for i, w in enumerate(items)))
    if isinstance(where, dict) and len(where) == 1 and "not" in where:
        return ("not", _compile_where(where["not"], yaml_path + ("not",), positions))
    return _compile_condition(where, yaml_path, positions, "where")


def compile_value(value: Any, yaml_path: Path, positions: Positions) -> Any:
    """The same structure with every string that holds ``${`` parsed into a :class:`Template` and every
    operator mapping (``?``, ``+``, ``&``, ``*``, ``|``) and list spread (``...${x}``) into an :class:`Op`."""
    if isinstance(value, str):
        return parse_template(value, yaml_path, positions.line(yaml_path))
    if isinstance(value, dict):
        op = _compile_op(value, yaml_path, positions)
        if op is not None:
            return op
        return {k: (_compile_cond(v, yaml_path + (k,), positions) if k == "?" else
                    compile_value(v, yaml_path + (k,), positions)) for k, v in value.items()}
    if isinstance(value, list):
        out = []
        for i, v in enumerate(value):
            if isinstance(v, str) and _SPREAD.match(v):
                out.append(Spread(yaml_path + (i,), positions.line(yaml_path + (i,)),
                                  parse_template(v[3:], yaml_path + (i,), positions.line(yaml_path + (i,)))))
            else:
                out.append(compile_value(v, yaml_path + (i,), positions))
        return out
    return value


def templates_in(value: Any):
    if isinstance(value, Template):
        yield value
    elif isinstance(value, Op):
        for child in value.children():
            yield from templates_in(child)
    elif isinstance(value, Condition):
        for child in (value.input, value.operator, value.value):
            yield from templates_in(child)
    elif isinstance(value, tuple) and value and value[0] in ("all", "any", "not"):
        for child in value[1] if isinstance(value[1], tuple) else (value[1],):
            yield from templates_in(child)
    elif isinstance(value, dict):
        for v in value.values():
            yield from templates_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from templates_in(v)


def streams(value: Any) -> bool:
    return any(t.streams for t in templates_in(value))
