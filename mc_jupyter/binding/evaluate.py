"""Evaluating compiled values at run time against a :class:`Scope`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List

from ..config.positions import Positions, format_path
from ..errors import BindingError, ImageInputError, InputError, UserError, choices_text, did_you_mean
from ..secrets import read_env
from .convert import _short, _to_text, _walk, convert
from .grammar import OPERATORS, Expr, Template, _MISSING, _error, path_text
from .structure import Cond, Condition, Join, Map, Op, Split, Spread, Zip, compile_value


@dataclass
class Scope:
    """What the sources name while a value is rendered."""

    values: Dict[str, Any] = field(default_factory=dict)
    where: str = ""   # "job `x`" etc., for messages
    lenient: bool = False   # a missing value is None (per stream chunk: not every event has every key)

    def child(self, **values: Any) -> "Scope":
        return Scope({**self.values, **values}, self.where, self.lenient)


def render(value: Any, scope: Scope) -> Any:
    if isinstance(value, Template):
        return _render_template(value, scope)
    if isinstance(value, Op):
        return _render_op(value, scope)
    if isinstance(value, dict):
        out: Dict[Any, Any] = {}
        for k, v in value.items():
            if k == "..." or (k == "?" and isinstance(v, Cond)):
                got = render(v, scope)
                if got is None:
                    continue
                if not isinstance(got, dict):
                    raise _spread_error(v, k, got, "mapping")
                out.update(got)
            else:
                out[k] = render(v, scope)
        return out
    if isinstance(value, list):
        items: List[Any] = []
        for v in value:
            if isinstance(v, Spread):
                got = render(v.value, scope)
                if got is not None and not isinstance(got, (list, tuple)):
                    raise v.error(f"`...{v.value!r}` spreads {_short(got)}, not a list, into the list",
                                  "Spread a list (`...${input.items}`), or write the value without `...`.")
                items.extend(got or [])
            else:
                items.append(render(v, scope))
        return items
    return value


def _spread_error(v: Any, key: str, got: Any, kind: str) -> BindingError:
    where = getattr(v, "yaml_path", ())
    line = getattr(v, "line", None)
    return _error(f"`{key}` merges {_short(got)} into a {kind}, which needs a mapping", where, line,
                  "Make it give a mapping (or nothing), or put the value under its own key.")


def _render_op(op: Op, scope: Scope) -> Any:
    if isinstance(op, Cond):
        for c in op.conditions:
            if _holds(op, c, scope):
                return render(c.if_true, scope)
            if c.if_false is not _MISSING:
                return render(c.if_false, scope)
        return None
    if isinstance(op, Join):
        parts = render(op.parts, scope)
        if parts is None:
            return None
        if not isinstance(parts, (list, tuple)):
            raise op.error(f"`+` (join) takes a list of parts, got {_short(parts)}",
                           "Write `+: [${input.a}, ${input.b}]`.")
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        kinds = (list, tuple) if isinstance(parts[0], (list, tuple)) else type(parts[0])
        if not isinstance(parts[0], (list, tuple, dict, str)) or not all(isinstance(p, kinds) for p in parts):
            raise op.error(f"`+` (join) combines lists, mappings or strings, all of one kind; got "
                           f"{', '.join(type(p).__name__ for p in parts)}",
                           "Join values of one kind, or convert them first (`as text`, `as list`).")
        if isinstance(parts[0], (list, tuple)):
            return [x for p in parts for x in p]
        if isinstance(parts[0], dict):
            return {k: v for p in parts for k, v in p.items()}
        return "".join(parts)
    if isinstance(op, Zip):
        sources = render(op.sources, scope)
        if sources is None:
            return None
        if not isinstance(sources, dict) or not sources:
            raise op.error(f"`&` (zip) takes a mapping of keys to lists, got {_short(sources)}")
        if any(s is None for s in sources.values()):
            return []
        bad = [k for k, s in sources.items() if not isinstance(s, (list, tuple))]
        if bad:
            raise op.error(f"`&` (zip): `{bad[0]}` is {_short(sources[bad[0]])}, not a list",
                           "Each key of a zip takes a list; they are paired element by element.")
        return [dict(zip(sources.keys(), row)) for row in zip(*sources.values())]
    if isinstance(op, Map):
        source = render(op.source, scope)
        if source is None:
            return []
        if not isinstance(source, (list, tuple)):
            raise op.error(f"`*` (map) takes a list, got {_short(source)}",
                           "Give it a list, e.g. `*: ${input.items}`.")
        out = []
        for i, item in enumerate(source):
            inner = scope.child(item=item, index=i)
            if op.where is not None and not _where(op, op.where, inner):
                continue
            out.append(render(op.template, inner) if op.template else item)
        return out
    if isinstance(op, Split):
        source = render(op.source, scope)
        assert op.template is not None
        if source is None:
            return {k: [] for k in op.template}
        if not isinstance(source, (list, tuple)):
            raise op.error(f"`|` (split) takes a list, got {_short(source)}")
        result: Dict[str, List[Any]] = {k: [] for k in op.template}
        for i, item in enumerate(source):
            inner = scope.child(item=item, index=i)
            for k, v in op.template.items():
                result[k].append(render(v, inner))
        return result
    if isinstance(op, Spread):   # outside a list: the value itself
        return render(op.value, scope)
    raise TypeError(op)


def _where(op: Op, where: Any, scope: Scope) -> bool:
    if isinstance(where, tuple):
        kind, items = where
        if kind == "all":
            return all(_where(op, w, scope) for w in items)
        if kind == "any":
            return any(_where(op, w, scope) for w in items)
        return not _where(op, items, scope)
    return _holds(op, where, scope)


def _holds(op: Op, c: Condition, scope: Scope) -> bool:
    left, right = render(c.input, scope), render(c.value, scope)
    operator = render(c.operator, scope)
    if operator not in OPERATORS:
        raise op.error(f"unknown operator `{operator}`{did_you_mean(str(operator), OPERATORS)}",
                       f"Operators: {choices_text(OPERATORS)}.")
    try:
        if operator == "eq":
            return left == right
        if operator == "neq":
            return left != right
        if operator == "gt":
            return left > right
        if operator == "gte":
            return left >= right
        if operator == "lt":
            return left < right
        if operator == "lte":
            return left <= right
        if operator == "in":
            return left in right
        if operator == "not-in":
            return left not in right
        if operator == "starts-with":
            return left.startswith(right)
        if operator == "ends-with":
            return left.endswith(right)
        return bool(re.match(right, left))
    except (TypeError, AttributeError, re.error) as e:
        raise op.error(f"the condition `{_short(left)} {operator} {_short(right)}` cannot be evaluated: {e}",
                       "Compare values of one kind (convert with `as number`, `as text`).") from None


def _render_template(t: Template, scope: Scope) -> Any:
    single = t.single
    if single is not None:
        return _evaluate(single, t, scope)
    out = []
    for part in t.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            v = _evaluate(part, t, scope)
            out.append(v if isinstance(v, str) else _to_text(v))
    return "".join(out)


def _evaluate(e: Expr, t: Template, scope: Scope) -> Any:
    value = _lookup(e, t, scope)
    if value is _MISSING or (value is None and e.default is not _MISSING):
        if e.default is _MISSING:
            if scope.lenient:
                return None
            raise _missing(e, t, scope)
        value = render(e.default, scope) if isinstance(e.default, Template) else e.default
    if e.type is None or value is None:
        return value
    attrs = {k: render(v, scope) for k, v in e.attrs}
    if e.type == "select":
        given = value if e.is_list and isinstance(value, (list, tuple)) else [value]
        bad = next((v for v in given if str(v) not in e.choices), _MISSING)
        if bad is not _MISSING:
            shown = "the secret value" if e.source == "env" else f"{_short(bad)}"
            raise BindingError(f"`${{{e.text}}}`: {shown} is not one of the choices "
                               f"{', '.join(f'`{c}`' for c in e.choices)}", path=format_path(t.yaml_path),
                               line=t.line, hint=f"Give one of them, e.g. `{path_text(e.path) or 'value'}: "
                                                 f"{e.choices[0]}`.")
    try:
        return convert(value, e.type, is_list=e.is_list, subtype=e.subtype, attrs=attrs, fmt=e.format)
    except InputError as err:   # an image or audio that cannot be read: say which expression and where
        raise ImageInputError(f"`${{{e.text}}}`: {str(err).splitlines()[0]}", path=format_path(t.yaml_path),
                              line=t.line, hint="\n".join(l.strip() for l in str(err).splitlines()[1:])) from None
    except UserError:
        raise
    except Exception as err:
        shown = "the secret value" if e.source == "env" else f"{_short(value)}"
        detail = "" if e.source == "env" else f": {err}"
        kind = e.type + ("[]" if e.is_list else "") + (f"/{e.subtype}" if e.subtype else "")
        raise BindingError(f"`${{{e.text}}}`: cannot convert {shown} to `{kind}`{detail}",
                           path=format_path(t.yaml_path), line=t.line,
                           hint=_conversion_hint(e.type)) from None


def _lookup(e: Expr, t: Template, scope: Scope) -> Any:
    if e.source == "env":
        value = read_env(e.path[0])
        return _MISSING if value is None else value
    if e.source not in scope.values:
        return _MISSING
    return _walk(scope.values[e.source], e.path)


def _missing(e: Expr, t: Template, scope: Scope) -> BindingError:
    where = format_path(t.yaml_path)
    if e.source == "env":
        return BindingError(f"`${{{e.text}}}`: the environment variable `{e.path[0]}` is not set",
                            path=where, line=t.line,
                            hint=f"Set it (os.environ['{e.path[0]}'] = ...) or give a default: "
                                 f"`${{env.{e.path[0]} | value}}`.")
    if e.source == "jobs" and e.path and e.path[0] not in scope.values.get("jobs", {}):
        done = list(scope.values.get("jobs", {}))
        return BindingError(f"`${{{e.text}}}`: job `{e.path[0]}` has not run before this point",
                            path=where, line=t.line,
                            hint=f"Jobs finished so far: {choices_text(done) or 'none'}. Reorder the jobs or add "
                                 f"`depends_on: [{e.path[0]}]`.")
    if e.source not in scope.values:
        here = [s for s in scope.values if s != "jobs" or scope.values["jobs"]]
        special = {"item": " (only inside a `*` map or `|` split)", "index": " (only inside a `*` map or `|` split)",
                   "error": " (only in an `on_error` output)"}.get(e.source, "")
        return BindingError(f"`${{{e.text}}}`: `{e.source}` is not available here{special}", path=where, line=t.line,
                            hint=f"Available here: {choices_text(here)}.")
    base, missing_at = scope.values[e.source], None
    for i, key in enumerate(e.path):
        nxt = _walk(base, [key])
        if nxt is _MISSING:
            missing_at = i
            break
        base = nxt
    key = e.path[missing_at] if missing_at is not None else ""
    key = path_text([key]).lstrip(".") if not isinstance(key, str) else key
    have = choices_text(base) if isinstance(base, dict) else (f"a list of {len(base)}" if isinstance(base, list)
                                                             else _short(base))
    subject = e.source + (("." if e.path[:missing_at or 0] and isinstance(e.path[0], str) else "")
                          + path_text(e.path[:missing_at or 0]) if missing_at else "")
    hint = f"`{subject}` has: {have or 'nothing'}."
    if e.source == "input":
        hint += f" Give `{key}:` in the %%run body, or a default: `${{{e.text} | value}}`."
    return BindingError(f"`${{{e.text}}}`: `{subject}` has no `{key}`", path=where, line=t.line, hint=hint)


def _conversion_hint(kind: str) -> str:
    return {"number": "Give a number such as 0.7.", "integer": "Give a whole number such as 5.",
            "boolean": "Give true or false.", "json": "Give valid JSON text or a mapping.",
            "list": "Give a list (or JSON text of one).", "object": "Give a mapping (or JSON text of one).",
            }.get(kind, "")


def resolve_settings(value: Any) -> Any:
    """A load setting with its ``${env.*}`` read now (load settings see no run input)."""
    return render(compile_value(value, (), Positions()), Scope())
