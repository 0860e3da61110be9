"""The grammar of one ``${...}`` expression: its words, and its parsed form (:class:`Expr`, :class:`Template`),
parsed once at ``%%compose`` time so a malformed one fails with its YAML line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import yaml

from ..config.positions import Path, format_path
from ..errors import BindingError, choices_text, did_you_mean

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
        raise _error(f"`${{{body}}}`: `stream/{subtype}` is not a stream encoding"
                     f"{did_you_mean(subtype, STREAM_FORMATS)}", yaml_path, line,
                     f"Encodings: {choices_text(STREAM_FORMATS)}.")
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


def _exprs_deep(t: Template):
    """Every expression of ``t``, with those inside defaults and ``[attrs]``."""
    for e in t.exprs:
        yield e
        if isinstance(e.default, Template):
            yield from _exprs_deep(e.default)
        for _, v in e.attrs:
            if isinstance(v, Template):
                yield from _exprs_deep(v)
