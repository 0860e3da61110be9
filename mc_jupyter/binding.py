r"""The ``${...}`` binding grammar: our dialect §4 and the whole of model-compose's.

Expressions are parsed once, at ``%%compose`` time (:func:`compile_value`), so a malformed one fails
with its YAML line; they are evaluated at run time against a :class:`Scope` (:func:`render`).

The full form is model-compose's (``VariableRenderer``)::

    ${key[index].path as type[]/subtype[attrs];format | default @(name value) @(name value)}

    ${input.prompt}                 a value of the run's input; ${input} the whole input
    ${result.scores[0]}             index into the component's result; ${result[1:3]} a slice
    ${jobs.embed.output.vector}     a finished job's output
    ${input.t as number | 0.7}      converted, with a default (parsed as a YAML scalar)
    ${input.x | ${input.y}}         a default that is itself an expression (escapes: \$ \@ \{ \})
    ${env.HUGGINGFACE_TOKEN}        read when the cell runs; never shown (see :func:`scrub`)
    ${result[]}                     each chunk of a stream
    ${context.run_id}               this run's id (uuid4 hex); also task_id, workflow_id
    ${item} ${index}                the element (and its position) inside a map ``*`` or split ``|``
    ${input.m as select/a,b,c | a}  one of the choices (checked when it runs; the default at compose)
    ${input.x @(description Text)}  an annotation: forms and help show it (:func:`input_fields`)
    ${input.v as audio/wav;base64}  base64 text read into an :class:`~mc_jupyter.media.Audio`
    ${output as image/png;base64}   an image written out as base64 of its PNG bytes

Types (model-compose's ``WorkflowVariableType``): string, text, integer, number, boolean, list,
object, json, base64, markdown, image, audio, video, model-3d, file, stream, select, any, none;
``type[]`` is a list of that type; ``object[]/a,b.c`` projects each element. Formats: path, url
(``data:`` URLs, and for images http too), data-uri, base64.

Structural operators (model-compose's ``_render_element``), compiled here and rendered per run:
``{"?": [conditions]}``, ``{"+": [...]}`` (join), ``{"&": {...}}`` (zip), ``{"*": source, key: ...}``
(map, with ``where``), ``{"|": source, key: ...}`` (split), ``...: ${x}`` (spread into a mapping)
and ``- ...${x}`` (spread into a list).

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

SOURCES = ("input", "result", "result[]", "response", "response[]", "jobs", "env", "output", "context", "item",
           "index", "error")
#: model-compose's ``WorkflowVariableType`` words (``object[]`` and the other ``type[]`` are lists of them).
TYPES = ("string", "text", "integer", "number", "boolean", "list", "object", "json", "base64", "markdown", "image",
         "audio", "video", "model-3d", "file", "stream", "select", "any", "none")
MEDIA_TYPES = ("image", "audio", "video", "model-3d", "file")
FORMATS = ("path", "url", "data-uri", "base64")
IMAGE_FORMATS = ("path", "url", "base64")
STREAM_FORMATS = ("text", "json")
#: An older model-compose's stream formats (``as text;sse-text``): read as ``stream/text`` / ``stream/json``.
OLDER_STREAM_FORMATS = ("sse-text", "sse-json")
CONTEXT_KEYS = ("run_id", "task_id", "workflow_id")
STREAM_SOURCES = ("result[]", "response[]")
#: model-compose's condition operators (``ConditionOperator``), for ``?`` and a map's ``where``.
OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "not-in", "starts-with", "ends-with", "match")

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
    if isinstance(value, Op):
        return [f for child in value.children() for f in env_fields(child, value.yaml_path or prefix)]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in env_fields(v, prefix + (k,))]
    if isinstance(value, (list, tuple)):
        return [f for i, v in enumerate(value) for f in env_fields(v, prefix + (i,))]
    return []


def _exprs_deep(t: Template):
    """Every expression of ``t``, with those inside defaults and ``[attrs]``."""
    for e in t.exprs:
        yield e
        if isinstance(e.default, Template):
            yield from _exprs_deep(e.default)
        for _, v in e.attrs:
            if isinstance(v, Template):
                yield from _exprs_deep(v)


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
    """One ``${...}``: ``source`` and ``path`` (str keys, int indexes, ``slice``, ``"*"`` for every
    element), the ``as`` conversion (``type``, ``is_list``, ``subtype``, ``attrs``, ``format``), the
    default (a plain value or a :class:`Template`) and the ``@(name value)`` annotations."""

    source: str
    path: Tuple[Any, ...]
    type: Optional[str] = None
    default: Any = _MISSING
    text: str = ""
    is_list: bool = False
    subtype: Optional[str] = None
    attrs: Tuple[Tuple[str, Any], ...] = ()     # values: text or a Template
    format: Optional[str] = None
    annotations: Tuple[Tuple[str, str], ...] = ()

    @property
    def type_arg(self) -> Optional[str]:
        """The dialect's one type argument: an image's format, or the ``object[]`` projection."""
        return self.format or self.subtype

    @property
    def choices(self) -> Tuple[str, ...]:
        return tuple(c.strip() for c in self.subtype.split(",")) if self.type == "select" and self.subtype else ()

    @property
    def description(self) -> Optional[str]:
        return next((v for k, v in self.annotations if k == "description"), None)

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


def _unescape(text: str) -> str:
    return re.sub(r"\\([$@{}])", r"\1", text)


def parse_template(text: str, yaml_path: Path = (), line: Optional[int] = None,
                   escapes: bool = False) -> Union[str, Template]:
    """Parse a string; returns it unchanged when it holds no ``${``. With ``escapes`` (a default's
    text), ``\\$ \\@ \\{ \\}`` are literal characters."""
    if "${" not in text:
        return _unescape(text) if escapes else text
    parts: List[Union[str, Expr]] = []
    i = 0
    while i < len(text):
        start = text.find("${", i)
        while escapes and start > 0 and text[start - 1] == "\\":
            start = text.find("${", start + 1)
        if start < 0:
            parts.append(_unescape(text[i:]) if escapes else text[i:])
            break
        if start > i:
            parts.append(_unescape(text[i:start]) if escapes else text[i:start])
        end = _matching_brace(text, start + 2, yaml_path, line)
        parts.append(_parse_expr(text[start + 2:end], yaml_path, line))
        i = end + 1
    if not any(isinstance(p, Expr) for p in parts):
        return "".join(parts)
    return Template(tuple(parts), yaml_path, line)


def _matching_brace(text: str, pos: int, yaml_path: Path, line: Optional[int]) -> int:
    """The ``}`` closing the ``${`` before ``pos``. Quotes protect braces before the first ``@(``
    (an annotation's text is free: ``@(description Don't)``); unbalanced quotes are read as text."""
    for quotes in (True, False):
        depth, quote, i = 1, None, pos
        while i < len(text):
            c = text[i]
            if quote:
                if c == quote:
                    quote = None
            elif c == "\\" and i + 1 < len(text) and text[i + 1] in "$@{}":
                i += 1
            elif quotes and c in "\"'":
                quote = c
            elif text.startswith("@(", i) and depth == 1:
                quotes = False
            elif text.startswith("${", i):
                depth += 1
                i += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return i
            i += 1
    raise _error(f"the expression `{text}` has no closing `}}`", yaml_path, line,
                 "Write it as `${source.path}`, e.g. `${input.prompt}`.")


def _parse_expr(body: str, yaml_path: Path, line: Optional[int]) -> Expr:
    text = body.strip()
    at = _top_level(text, "@(")
    annotations: Tuple[Tuple[str, str], ...] = ()
    head = text
    if at >= 0:
        head, annotations = text[:at].rstrip(), _parse_annotations(text[at:], body, yaml_path, line)
    default = _MISSING
    bar = _top_level(head, "|")
    if bar >= 0:
        head, default_text = head[:bar].strip(), head[bar + 1:].strip()
        default = _parse_default(default_text, yaml_path, line)
    kind = subtype = fmt = None
    is_list, attrs = False, ()
    m = re.search(r"\s+as\s+", head)
    if m:
        head, kind_text = head[:m.start()].strip(), head[m.end():].strip()
        kind, is_list, subtype, attrs, fmt = _parse_type(kind_text, body, yaml_path, line)
    source, path = _parse_path(head, body, yaml_path, line)
    e = Expr(source, path, kind, default, text, is_list, subtype, attrs, fmt, annotations)
    if e.choices and default is not _MISSING and not isinstance(default, Template):
        given = default if is_list and isinstance(default, list) else [default]
        bad = [d for d in given if str(d) not in e.choices]
        if bad:
            raise _error(f"`${{{body}}}`: the default `{bad[0]}` is not one of the choices "
                         f"{', '.join(f'`{c}`' for c in e.choices)}", yaml_path, line,
                         f"Make the default one of them, e.g. `| {e.choices[0]}`.")
    return e


def _top_level(text: str, token: str) -> int:
    """Where ``token`` first occurs outside nested ``${...}``, quotes and ``\\`` escapes, or -1."""
    depth, quote, i = 0, None, 0
    while i < len(text):
        c = text[i]
        if quote:
            quote = None if c == quote else quote
        elif c == "\\" and i + 1 < len(text) and text[i + 1] in "$@{}":
            i += 1
        elif text.startswith("@(", i) and depth == 0 and token == "@(":
            return i
        elif c in "\"'" and token == "|":
            quote = c
        elif text.startswith("${", i):
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == token and depth == 0:
            return i
        i += 1
    return -1


def _parse_annotations(text: str, body: str, yaml_path: Path, line: Optional[int]) -> Tuple[Tuple[str, str], ...]:
    """``@(name value) @(name value)``: a name is a word; its value runs to the ``)`` that ends the
    annotation (the last before the next ``@(`` or the end)."""
    out = []
    rest = text
    while rest:
        m = re.match(r"@\(\s*(\w+)(?:\s+|(?=\)))", rest)
        if not m:
            raise _error(f"`${{{body}}}`: `{rest[:30]}` is not an annotation", yaml_path, line,
                         "Write annotations last, as `@(name value)`, e.g. `@(description Message to send)`.")
        nxt = re.search(r"\)\s*(?=@\()", rest[m.end():])
        if nxt:
            value, rest = rest[m.end():m.end() + nxt.start()], rest[m.end() + nxt.end():]
        else:
            tail = rest[m.end():].rstrip()
            if not tail.endswith(")"):
                raise _error(f"`${{{body}}}`: the annotation `{rest[:40]}` has no closing `)`", yaml_path, line,
                             "Write it as `@(description Message to send)`.")
            value, rest = tail[:-1], ""
        out.append((m.group(1), _unescape(value.strip())))
    return tuple(out)


def _parse_default(text: str, yaml_path: Path, line: Optional[int]) -> Any:
    if re.search(r"(?<!\\)\$\{", text):
        return parse_template(text, yaml_path, line, escapes=True)
    if text == "":
        return ""
    if re.search(r"\\[$@{}]", text):
        return _unescape(text)
    try:
        return yaml.safe_load(text)
    except Exception:   # PyYAML raises plain ValueError etc. for some scalars (`2024-02-30`): keep the text
        return text


_TYPE = re.compile(r"([A-Za-z][A-Za-z0-9_\-]*)(\[\])?")


def _parse_type(text: str, body: str, yaml_path: Path, line: Optional[int]):
    """``type[]/subtype[attrs];format`` -> (type, is_list, subtype, attrs, format)."""
    m = _TYPE.match(text)
    name = m.group(1) if m else text.split("/")[0].split(";")[0]
    if not m or name not in TYPES:
        raise _error(f"`${{{body}}}`: unknown type `{name}`{did_you_mean(name, TYPES)}", yaml_path, line,
                     f"Valid types after `as`: {choices_text(TYPES)} (and `type[]` for a list of it).")
    is_list, rest = bool(m.group(2)), text[m.end():]
    subtype, attrs, fmt = None, (), None
    if rest.startswith("/"):
        end = len(rest)
        for stop in "[;":
            at = rest.find(stop)
            if at >= 0:
                end = min(end, at)
        subtype = rest[1:end].strip()
        rest = rest[end:]
        if not subtype:
            raise _error(f"`${{{body}}}`: nothing after `{name}/`", yaml_path, line,
                         f"Write a subtype, e.g. `{_subtype_example(name)}`, or leave the `/` out.")
        if rest.startswith("["):
            close = _matching_bracket(rest)
            if close < 0:
                raise _error(f"`${{{body}}}`: the attributes `{rest}` have no closing `]`", yaml_path, line,
                             "Write them as `audio/pcm[sample_rate=16000,channels=1]`.")
            attrs = _parse_attrs(rest[1:close], body, yaml_path, line)
            rest = rest[close + 1:]
    elif rest.startswith("[") and not rest.startswith("[]"):
        raise _error(f"`${{{body}}}`: attributes come after a subtype", yaml_path, line,
                     "Write them as `audio/pcm[sample_rate=16000,channels=1]`.")
    if rest.startswith(";"):
        fmt, rest = rest[1:].strip(), ""
        if fmt in OLDER_STREAM_FORMATS and name in ("text", "string", "json", "object") and not subtype:
            # an older model-compose's `as text;sse-text` / `;sse-json`: today's `as stream/text` / `stream/json`
            name, subtype, fmt = "stream", fmt[len("sse-"):], None
        elif fmt not in FORMATS:
            raise _error(f"`${{{body}}}`: `;{fmt}` is not a format of `{name}`{did_you_mean(fmt, FORMATS)}",
                         yaml_path, line, f"Formats (how a text value holds the data): {choices_text(FORMATS)}.")
    if rest.strip():
        raise _error(f"`${{{body}}}`: unexpected `{rest}` after the type", yaml_path, line,
                     "Write `as type[]/subtype[attrs];format`, e.g. `as audio/wav;base64`.")
    if name == "select" and not subtype:
        raise _error(f"`${{{body}}}`: `select` needs its choices", yaml_path, line,
                     "Write them after a `/`: `as select/small,base,large`.")
    if name == "stream" and subtype and subtype not in STREAM_FORMATS:
        raise _error(f"`${{{body}}}`: `stream/{subtype}` is not a stream encoding{did_you_mean(subtype, STREAM_FORMATS)}",
                     yaml_path, line, f"Encodings: {choices_text(STREAM_FORMATS)}.")
    return name, is_list, subtype, attrs, fmt


def _subtype_example(name: str) -> str:
    return {"select": "select/a,b,c", "object": "object/a,b.c", "stream": "stream/text", "audio": "audio/wav",
            "video": "video/mp4"}.get(name, "image/png" if name == "image" else f"{name}/x")


def _matching_bracket(text: str) -> int:
    depth, i = 0, 1
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}" and depth:
            depth -= 1
        elif text[i] == "]" and not depth:
            return i
        i += 1
    return -1


def _parse_attrs(text: str, body: str, yaml_path: Path, line: Optional[int]) -> Tuple[Tuple[str, Any], ...]:
    parts, start, depth = [], 0, 0
    for i, c in enumerate(text):
        if text.startswith("${", i):
            depth += 1
        elif c == "}" and depth:
            depth -= 1
        elif c == "," and not depth:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    out = []
    for pair in parts:
        key, eq, value = pair.partition("=")
        if not eq or not re.fullmatch(r"\s*[\w\-]+\s*", key):
            raise _error(f"`${{{body}}}`: the attribute `{pair.strip()}` is not `name=value`", yaml_path, line,
                         "Write attributes as `[sample_rate=16000,channels=1]`.")
        out.append((key.strip(), parse_template(value.strip(), yaml_path, line)))
    return tuple(out)


def _parse_path(head: str, body: str, yaml_path: Path, line: Optional[int]) -> Tuple[str, Tuple]:
    m = re.match(r"([A-Za-z_]+)(\[\])?", head)
    if not m:
        raise _error(f"`${{{body}}}` does not start with a source", yaml_path, line,
                     f"Valid sources: {choices_text(SOURCES)}.")
    source = m.group(0)
    if m.group(1) == "gateway":
        raise _error(f"`${{{body}}}`: gateways (`${{gateway:PORT.public_url}}`) are not available in a notebook",
                     yaml_path, line, "A gateway or tunnel needs a public address, which a notebook kernel does not "
                                      "have. Give the address as an input or a literal instead.")
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
            elif inner and re.fullmatch(r"-?\d*:-?\d*", inner):
                a, b = inner.split(":")
                path.append(slice(int(a) if a else None, int(b) if b else None))
            elif inner and re.fullmatch(r"[\"'][^\"']+[\"']", inner):
                path.append(inner[1:-1])
            else:
                raise _error(f"`${{{body}}}`: `{rest[:close + 1] if close > 0 else rest}` is not an index",
                             yaml_path, line, "Use `[0]`, `[-1]`, a slice `[1:3]` or `[*]`.")
            rest = rest[close + 1:]
        else:
            raise _error(f"`${{{body}}}`: unexpected `{rest}`", yaml_path, line,
                         "Write `${source.key[0] as type | default}`.")
    if source == "env" and (len(path) != 1 or not isinstance(path[0], str) or path[0] == "*"):
        raise _error(f"`${{{body}}}`: write an environment variable as `${{env.NAME}}`", yaml_path, line)
    if source == "context" and path and path[0] not in CONTEXT_KEYS:
        raise _error(f"`${{{body}}}`: `context` has no `{path[0]}`{did_you_mean(str(path[0]), CONTEXT_KEYS)}",
                     yaml_path, line, f"It has: {choices_text(CONTEXT_KEYS)}.")
    if source == "index" and path:
        raise _error(f"`${{{body}}}`: `index` is a number and has no keys", yaml_path, line,
                     "Write `${index}` (the element's position inside a `*` map or `|` split).")
    return source, tuple(path)


def _error(message: str, yaml_path: Path, line: Optional[int], hint: str = "") -> BindingError:
    return BindingError(message, path=format_path(yaml_path), line=line, hint=hint)


# ------------------------------------------------------------------------------------------------
# Structural operators (model-compose's VariableRenderer._render_element)


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


# ------------------------------------------------------------------------------------------------
# Compile a whole YAML value


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


def resolve_settings(value: Any) -> Any:
    """A load setting with its ``${env.*}`` read now (load settings see no run input)."""
    return render(compile_value(value, (), Positions()), Scope())


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


# ------------------------------------------------------------------------------------------------
# What a workflow's input is: for forms and help


@dataclass(frozen=True)
class InputField:
    """One ``${input...}`` a value reads, as model-compose's ``WorkflowVariable`` describes it."""

    name: str                    # the path under `input`, e.g. "prompt", "options.size" ("" for the whole ${input})
    type: str = "string"         # model-compose's type word ("string" when no `as`)
    is_list: bool = False
    subtype: Optional[str] = None
    choices: Tuple[str, ...] = ()          # select/a,b,c
    format: Optional[str] = None           # path | url | data-uri | base64
    has_default: bool = False
    default: Any = None                    # converted by the type when it is a literal
    description: Optional[str] = None      # @(description ...)
    annotations: Tuple[Tuple[str, str], ...] = ()
    yaml_path: str = ""                    # where it is first written
    line: Optional[int] = None


def path_text(path: Sequence[Any]) -> str:
    """``("options", "size", 0)`` -> ``options.size[0]`` (slices ``[1:3]``, ``[*]``)."""
    out = ""
    for k in path:
        if isinstance(k, slice):
            out += f"[{'' if k.start is None else k.start}:{'' if k.stop is None else k.stop}]"
        elif isinstance(k, int) or k == "*":
            out += f"[{k}]"
        else:
            out += ("." if out else "") + k
    return out


def _field_of(e: Expr, t: Template) -> InputField:
    has_default = e.default is not _MISSING
    default = None
    if has_default:
        default = repr(e.default) if isinstance(e.default, Template) else e.default
        if not isinstance(e.default, Template) and e.type in _SCALAR_TYPES and default is not None:
            try:
                default = convert(default, e.type, is_list=e.is_list, subtype=e.subtype)
            except Exception:   # a default the type cannot read: shown as written; the run says why
                pass
    return InputField(path_text(e.path), e.type or "string", e.is_list, e.subtype, e.choices, e.format,
                      has_default, default, e.description, e.annotations, format_path(t.yaml_path), t.line)


def _input_exprs(value: Any):
    for t in templates_in(value):
        for e in _exprs_deep(t):
            if e.source == "input":
                yield e, t


def input_fields(*values: Any) -> List[InputField]:
    """Every ``${input...}`` in compiled ``values`` (Templates in mappings, lists and operators, and
    inside defaults), one field per name in the order written: the first mention wins, a later one
    fills in a missing description, default or choices."""
    fields: Dict[str, InputField] = {}
    for value in values:
        for e, t in _input_exprs(value):
            f = _field_of(e, t)
            first = fields.get(f.name)
            if first is None:
                fields[f.name] = f
                continue
            fill: Dict[str, Any] = {}
            if not first.description and f.description:
                fill.update(description=f.description, annotations=first.annotations + f.annotations)
            if not first.has_default and f.has_default:
                fill.update(has_default=True, default=f.default)
            if not first.choices and f.choices:
                fill["choices"] = f.choices
            if fill:
                from dataclasses import replace
                fields[f.name] = replace(first, **fill)
    return list(fields.values())


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


def _walk(value: Any, path: Sequence) -> Any:
    for i, key in enumerate(path):
        if key == "*":
            if not isinstance(value, (list, tuple)):
                return _MISSING
            rest = path[i + 1:]
            return [_walk(v, rest) for v in value]
        if isinstance(key, slice):
            if not isinstance(value, (list, tuple, str)):
                return _MISSING
            value = value[key]
        elif isinstance(key, int):
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


def _short(value: Any) -> str:
    text = repr(value)
    return f"`{text[:60]}{'...' if len(text) > 60 else ''}`"


def _to_text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return "" if value is None else str(value)


def _conversion_hint(kind: str) -> str:
    return {"number": "Give a number such as 0.7.", "integer": "Give a whole number such as 5.",
            "boolean": "Give true or false.", "json": "Give valid JSON text or a mapping.",
            "list": "Give a list (or JSON text of one).", "object": "Give a mapping (or JSON text of one).",
            }.get(kind, "")


_SCALAR_TYPES = ("string", "text", "integer", "number", "boolean", "list", "object", "json", "select", "markdown")
_TEXT_TYPES = ("string", "text", "integer", "number", "boolean", "list", "object", "json", "base64", "markdown")


def convert(value: Any, kind: str, arg: Optional[str] = None, *, is_list: bool = False, subtype: Optional[str] = None,
            attrs: Optional[Dict[str, Any]] = None, fmt: Optional[str] = None) -> Any:
    """Apply an ``as`` conversion: ``kind[]/subtype[attrs];fmt``. ``arg`` is the dialect's one argument
    (``convert(v, "image", "base64")``, ``convert(v, "object[]", "a,b.c")``)."""
    if kind == "object[]":
        kind, is_list, subtype = "object", True, subtype or arg
    elif arg is not None:
        if kind == "image" or arg in FORMATS:
            fmt = fmt or arg
        else:
            subtype = subtype or arg
    if is_list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"`{kind}[]` needs a list, got a {type(value).__name__}")
        if kind == "object" and subtype:   # dialect §4's projection: a missing key is None
            keys = [k.strip() for k in subtype.split(",")]
            return [{k.split(".")[-1]: (lambda v: None if v is _MISSING else v)(_walk(item, k.split(".")))
                     for k in keys} for item in value]
        return [convert(v, kind, subtype=subtype, attrs=attrs, fmt=fmt) for v in value]
    if kind in _TEXT_TYPES and fmt is not None and isinstance(value, str):
        from .media import load_bytes
        value = load_bytes(value, fmt, "the value")
    if isinstance(value, (bytes, bytearray)) and kind in ("string", "text", "markdown", "integer", "number",
                                                          "boolean", "list", "object", "json", "stream", "select"):
        value = bytes(value).decode("utf-8")
    if kind in ("string", "text"):
        return value if isinstance(value, str) else _to_text(value)
    if kind == "markdown":
        from .media import Markdown
        return Markdown(value if isinstance(value, str) else _to_text(value))
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
        return json.loads(value) if isinstance(value, str) else value
    if kind == "list":
        value = json.loads(value) if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"a list is expected, got a {type(value).__name__}")
        return list(value)
    if kind == "object":
        value = json.loads(value) if isinstance(value, str) else value
        if not isinstance(value, dict):
            raise ValueError(f"a mapping is expected, got a {type(value).__name__}")
        if subtype:
            keys = [k.strip() for k in subtype.split(",")]
            return {k.split(".")[-1]: (lambda v: None if v is _MISSING else v)(_walk(value, k.split(".")))
                    for k in keys}
        return value
    if kind == "select":
        choices = [c.strip() for c in (subtype or "").split(",")]
        if str(value) not in choices:
            raise ValueError(f"{value!r} is not one of the choices {', '.join(choices)}")
        return value
    if kind == "stream":
        return _stream_value(value, subtype or "text")
    if kind in ("any", "none"):
        return value
    if kind == "base64":
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, (bytes, bytearray)):
            return base64.b64encode(bytes(value)).decode()
        from .media import Media, encode_image
        if isinstance(value, Media):
            return value.base64()
        return base64.b64encode(encode_image(value, subtype)).decode()
    if kind == "image":
        from .media import encode_image, load_image
        if isinstance(value, (list, tuple)):   # several images: each converted
            return [convert(v, "image", subtype=subtype, fmt=fmt) for v in value]
        if subtype and fmt in ("base64", "data-uri") and not isinstance(value, (str, bytes, bytearray)):
            data = base64.b64encode(encode_image(value, subtype)).decode()   # an image written out
            return data if fmt == "base64" else f"data:image/{subtype.lower()};base64,{data}"
        return load_image(value, "base64" if fmt == "data-uri" else fmt)
    if kind in MEDIA_TYPES:
        from .media import Media, to_audio, to_media
        if subtype and fmt in ("base64", "data-uri") and isinstance(value, Media):
            return value.base64() if fmt == "base64" else value.data_uri()   # media written out
        if kind == "audio":
            return to_audio(value, subtype, fmt, attrs)
        return to_media(value, kind, subtype, fmt)
    raise ValueError(f"unknown type {kind}")


def _stream_value(value: Any, encoding: str) -> Any:
    """``stream/text``: the text (chunks joined); ``stream/json``: the parsed value, or parsed chunks."""
    if encoding == "text":
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return "".join(value)
        return value if isinstance(value, str) else _to_text(value)
    if isinstance(value, (list, tuple)):
        return [json.loads(v) if isinstance(v, str) else v for v in value]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:   # newline-delimited chunks
            return [json.loads(line) for line in value.splitlines() if line.strip()]
    return value
