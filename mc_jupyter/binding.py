"""The ``${source.path as type | default}`` grammar (dialect §4).

Expressions are parsed once, at ``%%compose`` time (:func:`compile_value`), so a malformed one fails
with its YAML line; they are evaluated at run time against a :class:`Scope` (:func:`render`).

    ${input.prompt}                 a value of the run's input
    ${result.scores[0]}             index into the component's result
    ${jobs.embed.output.vector}     a finished job's output
    ${input.t as number | 0.7}      converted, with a default (parsed as a YAML scalar)
    ${input.x | ${input.y}}         a default that is itself an expression
    ${env.HUGGINGFACE_TOKEN}        read when the cell runs; never shown (see :func:`scrub`)
    ${result[]}                     each chunk of a stream

A string that is exactly one expression yields the typed value (a list, an image); text around
expressions interpolates them.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from .config.positions import Path, Positions, format_path
from .errors import BindingError, ImageInputError, InputError, McJupyterError, UserError, choices_text, did_you_mean
from .secrets import chain, known, leaks_secret, read_env, scrub

SOURCES = ("input", "result", "result[]", "response", "response[]", "jobs", "env", "output")
TYPES = ("text", "number", "integer", "boolean", "json", "base64", "image", "object[]")
IMAGE_FORMATS = ("path", "url", "base64")
STREAM_SOURCES = ("result[]", "response[]")

_KEY = re.compile(r"[A-Za-z0-9_\-]+")
_MISSING = object()

def env_fields(value: Any, prefix: Path = ()) -> List[Tuple[str, str]]:
    """``(YAML path, variable)`` for every ``${env.NAME}`` in a compiled or raw value."""
    if isinstance(value, str) and "${" in value:
        try:
            value = parse_template(value, prefix, None)
        except Exception:
            return []
    if isinstance(value, Template):
        return [(format_path(value.yaml_path or prefix), e.path[0]) for e in _exprs_deep(value) if e.source == "env"]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in env_fields(v, prefix + (k,))]
    if isinstance(value, (list, tuple)):
        return [f for i, v in enumerate(value) for f in env_fields(v, prefix + (i,))]
    return []


def _exprs_deep(t: Template):
    for e in t.exprs:
        yield e
        if isinstance(e.default, Template):
            yield from _exprs_deep(e.default)


def secret_safe(e: BaseException, what: str, fields: Any = None) -> BaseException:
    """The exception to show for ``e``: itself when no secret is in its chain; otherwise a user error
    naming the fields that read ``${env.*}`` (the value masked) with no chain at all.

    Python's own conversion errors quote the raw value (``invalid literal for int(): '<token>'``) and
    a traceback prints every cause, so a chain that holds a secret is cut here, at the boundary."""
    if isinstance(e, KeyboardInterrupt) or not leaks_secret(e):
        return e
    if isinstance(e, UserError):    # our message is scrubbed when shown: mask what it holds, cut its chain
        e.args = tuple(scrub(a) if isinstance(a, str) else a for a in e.args)
        for name in ("bare_message", "hint"):
            if isinstance(getattr(e, name, None), str):
                setattr(e, name, scrub(getattr(e, name)))
        e.__cause__, e.__context__, e.__suppress_context__ = None, None, True
        return e
    secrets = known()
    used = [(path, name) for path, name in env_fields(fields) if os.environ.get(name) in secrets]
    where = "; ".join(f"`{path}` (from `${{env.{name}}}`)" for path, name in used) or "a value read from `${env.*}`"
    cause = next((link for link in chain(e) if not isinstance(link, McJupyterError)), e)
    error = UserError(f"{what}: {where} could not be used: {type(cause).__name__}: {scrub(str(cause))}\n"
                      f"  The value is a secret, so it is not shown. Check what the environment variable holds "
                      f"(a number where a number is expected), or give the field a literal value.")
    return error


def guard_secrets(what: Callable[..., str], fields: Callable[..., Any]):
    """Decorate a boundary (a load, a job): an exception whose chain holds a secret leaves it as
    :func:`secret_safe`'s error, raised outside the handler so that not even ``__context__`` keeps it."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except BaseException as e:
                safe = secret_safe(e, what(*args, **kwargs), fields(*args, **kwargs))
                if safe is e:
                    raise
            raise safe
        return wrapper
    return decorate


# ------------------------------------------------------------------------------------------------
# Parsed form


@dataclass(frozen=True)
class Expr:
    source: str
    path: Tuple[Union[str, int], ...]   # str keys, int indexes, "*" for every element
    type: Optional[str] = None
    type_arg: Optional[str] = None      # image format, or the object[] projection
    default: Any = _MISSING             # a plain value, or a Template
    text: str = ""

    @property
    def streams(self) -> bool:
        return self.source in STREAM_SOURCES or (isinstance(self.default, Template) and self.default.streams)

    def __repr__(self) -> str:
        return f"Expr({self.text})"


@dataclass(frozen=True)
class Template:
    parts: Tuple[Union[str, Expr], ...]
    yaml_path: Path = ()
    line: Optional[int] = None

    @property
    def single(self) -> Optional[Expr]:
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], Expr) else None

    @property
    def exprs(self) -> List[Expr]:
        return [p for p in self.parts if isinstance(p, Expr)]

    @property
    def streams(self) -> bool:
        return any(e.streams for e in self.exprs)

    def __repr__(self) -> str:
        return "".join(p if isinstance(p, str) else "${" + p.text + "}" for p in self.parts)


def parse_template(text: str, yaml_path: Path = (), line: Optional[int] = None) -> Union[str, Template]:
    """Parse a string; returns it unchanged when it holds no ``${``."""
    if "${" not in text:
        return text
    parts: List[Union[str, Expr]] = []
    i = 0
    while i < len(text):
        start = text.find("${", i)
        if start < 0:
            parts.append(text[i:])
            break
        if start > i:
            parts.append(text[i:start])
        end = _matching_brace(text, start + 2, yaml_path, line)
        parts.append(_parse_expr(text[start + 2:end], yaml_path, line))
        i = end + 1
    return Template(tuple(parts), yaml_path, line)


def _matching_brace(text: str, pos: int, yaml_path: Path, line: Optional[int]) -> int:
    depth, quote = 1, None
    while pos < len(text):
        c = text[pos]
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif text.startswith("${", pos):
            depth += 1
            pos += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return pos
        pos += 1
    raise _error(f"the expression `{text}` has no closing `}}`", yaml_path, line,
                 "Write it as `${source.path}`, e.g. `${input.prompt}`.")


def _parse_expr(body: str, yaml_path: Path, line: Optional[int]) -> Expr:
    text = body.strip()
    head, default = text, _MISSING
    bar = _top_level_bar(text)
    if bar >= 0:
        head, default_text = text[:bar].strip(), text[bar + 1:].strip()
        default = _parse_default(default_text, yaml_path, line)
    kind = type_arg = None
    m = re.search(r"\s+as\s+", head)
    if m:
        head, kind_text = head[:m.start()].strip(), head[m.end():].strip()
        kind, type_arg = _parse_type(kind_text, body, yaml_path, line)
    source, path = _parse_path(head, body, yaml_path, line)
    return Expr(source, path, kind, type_arg, default, text)


def _top_level_bar(text: str) -> int:
    depth, quote = 0, None
    for i, c in enumerate(text):
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif text.startswith("${", i):
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "|" and depth == 0:
            return i
    return -1


def _parse_default(text: str, yaml_path: Path, line: Optional[int]) -> Any:
    if "${" in text:
        return parse_template(text, yaml_path, line)
    if text == "":
        return ""
    try:
        return yaml.safe_load(text)
    except Exception:   # PyYAML raises plain ValueError etc. for some scalars (`2024-02-30`): keep the text
        return text


def _parse_type(text: str, body: str, yaml_path: Path, line: Optional[int]) -> Tuple[str, Optional[str]]:
    if text.startswith("object[]"):
        arg = text[len("object[]"):]
        if arg and not arg.startswith("/"):
            raise _error(f"`${{{body}}}`: write a projection as `object[]/a,b.c`", yaml_path, line)
        return "object[]", arg[1:] or None
    name, _, arg = text.partition(";")
    name, arg = name.strip(), arg.strip() or None
    if name not in TYPES:
        raise _error(f"`${{{body}}}`: unknown type `{name}`{did_you_mean(name, TYPES)}", yaml_path, line,
                     f"Valid types after `as`: {choices_text(TYPES)}.")
    if arg is not None and (name != "image" or arg not in IMAGE_FORMATS):
        raise _error(f"`${{{body}}}`: `;{arg}` is not a format of `{name}`", yaml_path, line,
                     f"Only `image` takes a format: {choices_text(IMAGE_FORMATS)}.")
    return name, arg


def _parse_path(head: str, body: str, yaml_path: Path, line: Optional[int]) -> Tuple[str, Tuple]:
    m = re.match(r"([A-Za-z_]+)(\[\])?", head)
    if not m:
        raise _error(f"`${{{body}}}` does not start with a source", yaml_path, line,
                     f"Valid sources: {choices_text(SOURCES)}.")
    source = m.group(0)
    if source not in SOURCES:
        raise _error(f"`${{{body}}}`: unknown source `{m.group(1)}`{did_you_mean(m.group(1), SOURCES)}",
                     yaml_path, line, f"Valid sources: {choices_text(SOURCES)}.")
    rest, path = head[m.end():], []
    while rest:
        if rest.startswith("."):
            k = _KEY.match(rest, 1)
            if not k:
                raise _error(f"`${{{body}}}`: expected a key after `.`", yaml_path, line)
            path.append(k.group(0))
            rest = rest[k.end():]
        elif rest.startswith("["):
            close = rest.find("]")
            inner = rest[1:close].strip() if close > 0 else None
            if inner == "*":
                path.append("*")
            elif inner is not None and re.fullmatch(r"-?\d+", inner):
                path.append(int(inner))
            elif inner and re.fullmatch(r"[\"'][^\"']+[\"']", inner):
                path.append(inner[1:-1])
            else:
                raise _error(f"`${{{body}}}`: `{rest[:close + 1] if close > 0 else rest}` is not an index",
                             yaml_path, line, "Use `[0]`, `[-1]` or `[*]`.")
            rest = rest[close + 1:]
        else:
            raise _error(f"`${{{body}}}`: unexpected `{rest}`", yaml_path, line,
                         "Write `${source.key[0] as type | default}`.")
    if source == "env" and (len(path) != 1 or not isinstance(path[0], str) or path[0] == "*"):
        raise _error(f"`${{{body}}}`: write an environment variable as `${{env.NAME}}`", yaml_path, line)
    return source, tuple(path)


def _error(message: str, yaml_path: Path, line: Optional[int], hint: str = "") -> BindingError:
    return BindingError(message, path=format_path(yaml_path), line=line, hint=hint)


# ------------------------------------------------------------------------------------------------
# Compile a whole YAML value


def compile_value(value: Any, yaml_path: Path, positions: Positions) -> Any:
    """The same structure with every string that holds ``${`` parsed into a :class:`Template`."""
    if isinstance(value, str):
        return parse_template(value, yaml_path, positions.line(yaml_path))
    if isinstance(value, dict):
        return {k: compile_value(v, yaml_path + (k,), positions) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_value(v, yaml_path + (i,), positions) for i, v in enumerate(value)]
    return value


def resolve_settings(value: Any) -> Any:
    """A load setting with its ``${env.*}`` read now (load settings see no run input)."""
    return render(compile_value(value, (), Positions()), Scope())


def templates_in(value: Any):
    if isinstance(value, Template):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from templates_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from templates_in(v)


def streams(value: Any) -> bool:
    return any(t.streams for t in templates_in(value))


# ------------------------------------------------------------------------------------------------
# Evaluate


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
    if isinstance(value, dict):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    return value


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
    try:
        return convert(value, e.type, e.type_arg)
    except InputError as err:   # an image that cannot be read: say which expression and where
        raise ImageInputError(f"`${{{e.text}}}`: {str(err).splitlines()[0]}", path=format_path(t.yaml_path),
                           line=t.line, hint="\n".join(l.strip() for l in str(err).splitlines()[1:])) from None
    except (ValueError, TypeError) as err:
        shown = "the secret value" if e.source == "env" else f"{_short(value)}"
        detail = "" if e.source == "env" else f": {err}"
        raise BindingError(f"`${{{e.text}}}`: cannot convert {shown} to `{e.type}`{detail}",
                           path=format_path(t.yaml_path), line=t.line,
                           hint=_conversion_hint(e.type)) from None


def _lookup(e: Expr, t: Template, scope: Scope) -> Any:
    if e.source == "env":
        value = read_env(e.path[0])
        return _MISSING if value is None else value
    if e.source not in scope.values:
        return _MISSING
    return _walk(scope.values[e.source], e.path)


def _walk(value: Any, path: Sequence) -> Any:
    for i, key in enumerate(path):
        if key == "*":
            if not isinstance(value, (list, tuple)):
                return _MISSING
            rest = path[i + 1:]
            return [_walk(v, rest) for v in value]
        if isinstance(key, int):
            if not isinstance(value, (list, tuple)) or not -len(value) <= key < len(value):
                return _MISSING
            value = value[key]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, dict) and key.replace("-", "_") in value:
            value = value[key.replace("-", "_")]
        else:
            return _MISSING
    return value


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
        return BindingError(f"`${{{e.text}}}`: `{e.source}` is not available here", path=where, line=t.line,
                            hint=f"Available here: {choices_text(here)}.")
    base, missing_at = scope.values[e.source], None
    for i, key in enumerate(e.path):
        nxt = _walk(base, [key])
        if nxt is _MISSING:
            missing_at = i
            break
        base = nxt
    key = e.path[missing_at] if missing_at is not None else ""
    have = choices_text(base) if isinstance(base, dict) else (f"a list of {len(base)}" if isinstance(base, list)
                                                             else _short(base))
    subject = e.source + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in e.path[:missing_at or 0])
    hint = f"`{subject}` has: {have or 'nothing'}."
    if e.source == "input":
        hint += f" Give `{key}:` in the %%run body, or a default: `${{{e.text} | value}}`."
    return BindingError(f"`${{{e.text}}}`: `{subject}` has no `{key}`", path=where, line=t.line, hint=hint)


def _short(value: Any) -> str:
    text = repr(value)
    return f"`{text[:60]}{'...' if len(text) > 60 else ''}`"


def _to_text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return "" if value is None else str(value)


def _conversion_hint(kind: str) -> str:
    return {"number": "Give a number such as 0.7.", "integer": "Give a whole number such as 5.",
            "boolean": "Give true or false.", "json": "Give valid JSON text or a mapping."}.get(kind, "")


def convert(value: Any, kind: str, arg: Optional[str] = None) -> Any:
    """Apply an ``as`` conversion."""
    if kind == "text":
        return value if isinstance(value, str) else _to_text(value)
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        if isinstance(value, (int, float)):
            return value
        text = str(value).strip()
        return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)
    if kind == "integer":
        if isinstance(value, bool):
            raise ValueError("a boolean is not an integer")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value} is not a whole number")
        return int(value) if not isinstance(value, str) else int(value.strip())
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"`{value}` is not true or false")
    if kind == "json":
        return json.loads(value) if isinstance(value, (str, bytes)) else value
    if kind == "object[]":
        if not isinstance(value, list):
            raise ValueError("a projection needs a list")
        if not arg:
            return value
        keys = [k.strip() for k in arg.split(",")]
        return [{k.split(".")[-1]: _walk(item, k.split(".")) if _walk(item, k.split(".")) is not _MISSING else None
                 for k in keys} for item in value]
    if kind == "base64":
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(bytes(value)).decode()
        from .media import image_to_png_bytes
        return base64.b64encode(image_to_png_bytes(value)).decode()
    if kind == "image":
        from .media import load_image
        if isinstance(value, (list, tuple)):   # several images: each converted
            return [load_image(v, arg) for v in value]
        return load_image(value, arg)
    raise ValueError(f"unknown type {kind}")
