"""The notebook's web UI: a form built from a workflow's input annotations, and the inputs' help table.

    form = mc.form("classify")          # or %mc form classify
    form.values                         # {"text": "...", "model": "small", "top_k": 3}
    form.set("model", "large")          # as if chosen in the dropdown (checked on Run)
    result = form.run()                 # the RunResult, as %%run gives it (raises on a bad value)
    print(form.as_run_body())           # the values as a %%run body
    mc.inputs("classify")               # the table: name, type, choices, default, description, required

model-compose builds a Gradio page from the ``${input.*}`` a workflow reads; this is its notebook twin.
Each input (found by :func:`mc_jupyter.workflows.inputs_of`) becomes a widget by its type:

============================  =====================================================================
``string`` / ``text``         ``Text``; a ``Textarea`` for ``text``, ``markdown`` (or ``/markdown``,
                              ``/text``), or a name or description that suggests long text (``prompt``,
                              ``document``, ...). A list (``string[]``): a ``Textarea``, one per line.
``integer`` / ``number``      ``IntText`` / ``FloatText``
``boolean``                   ``Checkbox``
``select/a,b,c``              ``Dropdown`` of the choices
``image``                     ``FileUpload`` (``image/*``) with a preview; the run gets a PIL image (with
                              ``;base64`` the base64 text, with ``;data-uri`` a ``data:`` URI; with
                              ``;path`` or ``;url`` a ``Text`` for the path)
``audio``                     ``FileUpload`` (``audio/*``); the run gets the file's bytes
``list`` / ``object`` /       a ``Textarea`` read as YAML
``json`` (and other lists)
anything else                 ``Text``
============================  =====================================================================

A default (``| value``) fills the widget; ``@(description ...)`` shows under the field and as its
tooltip; a field without a default is marked required (``*``). An optional field left empty is not
sent (the binding's default applies).

**Running.** Run checks every field first: a missing required field, a value outside a select's
choices, YAML that does not parse, each shows its message under its field, and nothing runs. Then the
values go through the same path as ``%%run`` (``mc.run``: a string starting with ``$`` is sent as the
literal text, written ``$$`` as a ``%%run`` body writes it), on a thread of its own, so the kernel stays
free: the button is disabled and a progress line (the streamed text, for a streaming model) shows while
it runs; the output appears below, rendered as ``%%run`` renders it. A failure shows as its error
message (secrets masked) and the form stays as it was.

**Saved notebooks.** The widget's MIME bundle carries a static HTML picture: the fields with their values
and the last output (its ``text/html``, or its PNG).
"""

from __future__ import annotations

import base64
import html
import io
import threading
import time
from dataclasses import dataclass, field as dataclass_field
from typing import Any, Callable, Dict, List, Optional, Sequence

import yaml

from ..binding import InputField
from ..config.positions import clip
from ..errors import InputError, McJupyterError, did_you_mean
from ..secrets import scrub

#: A name (its last part) that suggests long text: a Textarea rather than a one-line Text.
LONG_NAMES = frozenset({"text", "texts", "prompt", "content", "document", "documents", "body", "context",
                        "system", "instructions", "article", "passage", "code", "essay", "story", "transcript"})
#: Words of a description that suggest long text.
LONG_WORDS = ("paragraph", "document", "article", "long", "multi-line", "multiline", "essay", "passage")

#: ``runner(values, sink) -> RunResult``: how the form runs (``mc.form`` passes ``mc.run`` on its target).
Runner = Callable[[Dict[str, Any], Any], Any]

_HELP = "color:#666;font-size:11px;line-height:1.4;white-space:normal;overflow-wrap:anywhere;margin:0 0 2px {indent}"
_MESSAGE = "color:#b00020;font-size:12px;line-height:1.4;margin:0 0 2px {indent};white-space:pre-wrap"
_NOTE = "color:#555;font-size:12px;line-height:1.4;margin:4px 0;white-space:pre-wrap"
_CELL = "border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top"
#: ipywidgets puts ``2 * --jp-widgets-inline-margin`` (8px) between a description and its input.
_LABEL_GAP = 8
#: A short input's own width (a dropdown, a number), beside its description.
_SHORT_INPUT = 280


def label_width(fields: Sequence[InputField]) -> int:
    """One description width for every field of a form (px), so that the inputs line up under one another
    and the help lines start under them: the longest label's, about 7.5 px a character, within 4 to 24
    characters (a longer label is cut with an ellipsis by ipywidgets; its tooltip has it whole)."""
    longest = max((len(_label(f)) for f in fields), default=4)
    return int(min(max(longest, 4), 24) * 7.5) + 6


def _label(f: InputField) -> str:
    return (f.name or "input (the whole input, YAML)") + (" *" if required(f) else "")


# ------------------------------------------------------------------------------------------------
# Describing an input (no widgets)


def type_text(f: InputField) -> str:
    """The type as model-compose writes it after ``as``: ``image[];base64``, ``text/markdown``, ``select``."""
    text = f.type + ("[]" if f.is_list else "")
    if f.subtype and f.type != "select":
        text += "/" + f.subtype
    if f.format:
        text += ";" + f.format
    return text


def kind_of(f: InputField) -> str:
    """Which widget an input gets: text, long, lines, int, float, bool, select, image, audio, yaml."""
    t = f.type
    if t == "select" or f.choices:
        return "select"
    if t in ("image", "audio") and f.format not in ("path", "url"):
        return t
    if not f.name:
        return "yaml"
    if f.is_list:
        return "lines" if t in ("string", "text", "markdown") else "yaml"
    if t in ("integer", "number", "boolean"):
        return {"integer": "int", "number": "float", "boolean": "bool"}[t]
    if t in ("list", "object", "json"):
        return "yaml"
    if t in ("text", "markdown") or f.subtype in ("text", "markdown"):
        return "long"
    last = f.name.rsplit(".", 1)[-1].lower()
    if t in ("string", "any") and (last in LONG_NAMES or any(w in (f.description or "").lower() for w in LONG_WORDS)):
        return "long"
    return "text"


def required(f: InputField) -> bool:
    """An input without a default must be given."""
    return not f.has_default


def _shown(value: Any, limit: int = 60) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return scrub(clip(value, limit))
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, allow_unicode=True)
    return scrub(clip(text.removesuffix("\n...\n").strip(), limit))


class InputsTable:
    """The inputs a run of a target reads: ``mc.inputs(target)`` / ``%mc inputs [TARGET]`` (HTML, with a
    text/plain twin). ``.rows``: one dict per input (name, type, choices, default, description, required)."""

    COLUMNS = ("name", "type", "choices", "default", "description", "required")

    def __init__(self, target: str, fields: Sequence[InputField]):
        self.target = target
        self.fields = list(fields)
        self.rows: List[Dict[str, Any]] = [
            {"name": f.name or "(the whole input)", "type": type_text(f), "choices": list(f.choices),
             "default": f.default if f.has_default else None, "description": f.description or "",
             "required": required(f)} for f in self.fields]

    def _cells(self, row: Dict[str, Any]) -> List[str]:
        return [row["name"], row["type"], ", ".join(row["choices"]),
                _shown(row["default"]) if row["default"] is not None else "", row["description"],
                "yes" if row["required"] else "no"]

    def __repr__(self) -> str:
        if not self.rows:
            return f"`{self.target}` reads no ${{input.*}}: run it with an empty body (%%run {self.target} + {{}})."
        cells = [list(self.COLUMNS)] + [self._cells(r) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(self.COLUMNS))]
        lines = [f"Inputs of `{self.target}`:"]
        lines += ["  ".join(c[i].ljust(widths[i]) for i in range(len(widths))).rstrip() for c in cells]
        return scrub("\n".join(lines))

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>{html.escape(repr(self))}</p>"
        head = "".join(f'<th style="{_CELL}">{c}</th>' for c in self.COLUMNS)
        body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{html.escape(scrub(c))}</td>' for c in self._cells(r))
                       + "</tr>" for r in self.rows)
        return (f'<div class="mc-jupyter-inputs"><b>Inputs of <code>{html.escape(self.target)}</code></b>'
                f'<table style="border-collapse:collapse;font-size:12px"><tr>{head}</tr>{body}</table></div>')


# ------------------------------------------------------------------------------------------------
# One field of the form


@dataclass
class Upload:
    """An uploaded (or :meth:`FormWidget.upload`-ed) file."""

    name: str
    type: str
    content: bytes


@dataclass
class Field:
    """One input's widget, its help line and its message line."""

    input: InputField
    kind: str
    widget: Any
    help: Any
    message: Any
    box: Any
    preview: Any = None
    uploads: List[Upload] = dataclass_field(default_factory=list)
    invalid: Any = None                 # a select value outside its choices (set from Python or a default)

    @property
    def name(self) -> str:
        """The input's path (``""`` for the whole ``${input}``)."""
        return self.input.name


_MISSING = object()


def _parse(f: Field) -> Any:
    """The field's value for the run (``_MISSING`` when empty); a bad value raises InputError (the message)."""
    kind, w, spec = f.kind, f.widget, f.input
    if kind == "select":
        if f.invalid is not None:
            raise InputError(f"`{clip(f.invalid, 40)}` is not one of the choices: {', '.join(spec.choices)}.")
        return _MISSING if w.value is None else w.value
    if kind in ("int", "float", "bool"):
        return w.value
    if kind in ("image", "audio"):
        if not f.uploads:
            return _MISSING
        values = [_media_value(u, spec) for u in f.uploads]
        return values if spec.is_list else values[0]
    text = w.value
    if kind == "lines":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines or _MISSING
    if kind == "yaml":
        if not text.strip():
            return _MISSING
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise InputError(f"this is not YAML{where}: {getattr(e, 'problem', None) or e}. Write e.g. "
                             f"`[a, b]` or `{{key: value}}`.") from None
        if not spec.name and not isinstance(value, dict):
            raise InputError("the whole input is a YAML mapping of inputs (`name: value`, one a line).")
        return value
    return text if text != "" else _MISSING


def _media_value(upload: Upload, spec: InputField) -> Any:
    if spec.format == "base64":
        return base64.b64encode(upload.content).decode("ascii")
    if spec.format == "data-uri":
        return f"data:{upload.type or 'application/octet-stream'};base64," + base64.b64encode(upload.content).decode("ascii")
    if spec.type == "image":
        from PIL import Image
        try:
            image = Image.open(io.BytesIO(upload.content))
            image.load()
        except Exception as e:
            raise InputError(f"`{clip(upload.name, 40)}` is not an image PIL can read ({type(e).__name__}).") from None
        return image
    return upload.content


def _nest(values: Dict[str, Any]) -> Dict[str, Any]:
    """``{"options.size": 3}`` -> ``{"options": {"size": 3}}`` (the run's input, as a %%run body writes it)."""
    out: Dict[str, Any] = {}
    for name, value in values.items():
        parts = name.split(".")
        holder = out
        for part in parts[:-1]:
            nxt = holder.get(part)
            if not isinstance(nxt, dict):
                nxt = holder[part] = {}
            holder = nxt
        holder[parts[-1]] = value
    return out


def _flat(values: Dict[str, Any], names: Any, prefix: str = "") -> Dict[str, Any]:
    """``{"options": {"size": 3}}`` -> ``{"options.size": 3}`` where ``options.size`` is a field."""
    out: Dict[str, Any] = {}
    for key, value in values.items():
        name = prefix + str(key)
        if name not in names and isinstance(value, dict) and any(n.startswith(name + ".") for n in names):
            out.update(_flat(value, names, name + "."))
        else:
            out[name] = value
    return out


def _literal(value: Any) -> Any:
    """Strings starting with ``$`` written ``$$`` (mc.run and %%run then take them as the text typed)."""
    if isinstance(value, str):
        return "$" + value if value.startswith("$") else value
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def _is_media(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(_is_media(v) for v in value)
    return isinstance(value, (bytes, bytearray)) or type(value).__module__.startswith("PIL.")


# ------------------------------------------------------------------------------------------------
# The widget


class FormWidget:
    """A form on one target's inputs, a Run button and the output below (see the module's docstring).

    From Python: :attr:`values`, :meth:`set`, :meth:`upload`, :meth:`errors`, :meth:`run`,
    :meth:`as_run_body`, :meth:`wait`; :attr:`result` is the last RunResult."""

    def __init__(self, target: str, fields: Sequence[InputField], runner: Runner,
                 values: Optional[Dict[str, Any]] = None, title: Optional[str] = None,
                 description: Optional[str] = None):
        import ipywidgets as w
        self.target = target
        # ``${input}`` (the whole input, a component that takes it as it is) is one YAML field, named ""
        self.inputs = list(fields)
        self._runner = runner
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._error: Optional[BaseException] = None
        self.result: Any = None
        self._display_id: Optional[str] = None      # set when shown: the output a run refreshes
        self.error_text = ""
        self._width = label_width(self.inputs)
        self._indent = f"{self._width + _LABEL_GAP}px"     # under the inputs: the help and message lines
        self.fields: Dict[str, Field] = {f.name: self._field(f) for f in self.inputs}
        # the button and the status under the inputs, too
        self.button = w.Button(description="Run", button_style="primary", icon="play",
                               tooltip=f"Run {target} with these values")
        self.button.on_click(lambda _: self._clicked())
        self.button.layout.margin = f"6px 0 2px {self._indent}"
        self.status = w.HTML(layout=w.Layout(margin=f"0 0 0 {self._indent}"))
        self.output = w.Output()
        # the workflow's `title:` and `description:` (model-compose's web UI shows them), else its id
        self.title, self.description = title or target, description or ""
        heading = f"<b>{html.escape(scrub(self.title))}</b>"
        if title and title != target:
            heading += f" <span style='color:#666'>({html.escape(target)})</span>"
        if not self.inputs:
            heading += " <span style='color:#666'>(reads no inputs)</span>"
        if self.description:
            heading += f"<div style='{_NOTE};margin:0'>{html.escape(scrub(self.description))}</div>"
        title = w.HTML(heading)
        self.view = w.VBox([title] + [f.box for f in self.fields.values()] + [self.button, self.status, self.output])
        for part, name in ((self.view, "mc-jupyter-form"), (title, "mc-jupyter-form-title"),
                           (self.button, "mc-jupyter-form-run"), (self.status, "mc-jupyter-form-status"),
                           (self.output, "mc-jupyter-form-output")):
            part.add_class(name)
        for name, value in _flat(values or {}, self.fields).items():
            self.set(name, value)

    # -- building --------------------------------------------------------------------------------
    def _field(self, spec: InputField) -> Field:
        import ipywidgets as w
        kind = kind_of(spec)
        label = _label(spec)
        tip = spec.description or ("required" if required(spec) else "optional")
        style, wide = {"description_width": f"{self._width}px"}, w.Layout(width="100%")
        short = w.Layout(width=f"{self._width + _LABEL_GAP + _SHORT_INPUT}px", max_width="100%")
        row = None
        default = spec.default if spec.has_default else None
        preview = None
        if kind == "select":
            widget = w.Dropdown(options=list(spec.choices), value=None, description=label, style=style, layout=short)
        elif kind == "int":
            widget = w.IntText(value=_number(default, int), description=label, style=style, layout=short)
        elif kind == "float":
            widget = w.FloatText(value=_number(default, float), description=label, style=style, layout=short)
        elif kind == "bool":
            widget = w.Checkbox(value=bool(default) if default is not None else False, description=label,
                                indent=True, style=style)       # indented: the box under the other inputs
        elif kind in ("image", "audio"):
            widget = w.FileUpload(accept=f"{kind}/*", multiple=spec.is_list,
                                  description="Choose files" if spec.is_list else "Choose a file")
            # the label beside the button, as wide as the other fields' descriptions
            row = w.HBox([w.HTML(f'<div style="text-align:right">{html.escape(label)}</div>',
                                 layout=w.Layout(width=f"{self._width}px", margin=f"0 {_LABEL_GAP - 4}px 0 0")),
                          widget])
            widget.observe(lambda change, name=spec.name: self._uploaded(name, change["new"]), "value")
            if kind == "image":
                preview = w.Image(format="png", layout=w.Layout(max_width="160px", max_height="160px"))
                preview.layout.display = "none"
        elif kind in ("long", "lines", "yaml"):
            value = "" if default is None else (
                "\n".join(map(str, default)) if kind == "lines" and isinstance(default, list) else
                default if isinstance(default, str) and kind != "yaml" else
                yaml.safe_dump(default, default_flow_style=None, sort_keys=False).strip())
            placeholder = {"lines": "One per line", "yaml": "YAML, e.g. [a, b] or {key: value}"}.get(kind, "")
            widget = w.Textarea(value=value, description=label, placeholder=placeholder, style=style, layout=wide,
                                rows=4)
        else:
            placeholder = {"path": "a file path", "url": "a URL (https://...)"}.get(spec.format or "", "")
            widget = w.Text(value="" if default is None else str(default), description=label,
                            placeholder=placeholder, style=style, layout=wide)
        widget.tooltip = tip
        help_line = w.HTML(f'<div style="{self._style(_HELP)}">{html.escape(spec.description)}</div>'
                           if spec.description else "")       # a VBox stretches it to the form's width
        message = w.HTML()
        if preview is not None:
            preview.layout.margin = f"2px 0 2px {self._indent}"
        children = [row or widget] + ([preview] if preview is not None else []) + [help_line, message]
        made = Field(spec, kind, widget, help_line, message, w.VBox(children), preview)
        # classes a page (and a browser test) can find each part by: the field's box, its help, its message
        made.box.add_class("mc-jupyter-form-field")
        made.box.add_class(f"mc-jupyter-form-{kind}")
        help_line.add_class("mc-jupyter-form-help")
        message.add_class("mc-jupyter-form-message")
        if kind == "select" and default is not None:
            self._choose(made, default)
        return made

    def _uploaded(self, name: str, value: Sequence[Dict[str, Any]]) -> None:
        f = self.fields[name]
        f.uploads = [Upload(v.get("name", ""), v.get("type", ""), bytes(v.get("content", b""))) for v in value]
        self._preview(f)

    def _preview(self, f: Field) -> None:
        if f.preview is None:
            return
        if not f.uploads:
            f.preview.layout.display = "none"
            return
        f.preview.value = f.uploads[0].content
        f.preview.format = (f.uploads[0].type or "image/png").split("/")[-1]
        f.preview.layout.display = ""

    def _style(self, style: str) -> str:
        return style.format(indent=self._indent)

    def _choose(self, f: Field, value: Any) -> None:
        if value in f.input.choices:
            f.invalid, f.widget.value = None, value
        else:
            f.invalid, f.widget.value = value, None
            f.message.value = f'<div style="{self._style(_MESSAGE)}">' + html.escape(scrub(
                f"`{clip(value, 40)}` is not one of the choices: {', '.join(f.input.choices)}.")) + "</div>"

    # -- the Python side -------------------------------------------------------------------------
    def set(self, name: str, value: Any) -> None:
        """Fill one field as if typed (a select's value is checked on Run; an image or audio field takes
        bytes, a path or a PIL image, as :meth:`upload`)."""
        f = self._get(name)
        if f.kind == "select":
            f.message.value = ""
            self._choose(f, value)
        elif f.kind in ("image", "audio"):
            self.upload(name, value)
        elif f.kind == "lines":
            f.widget.value = "\n".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        elif f.kind == "yaml":
            f.widget.value = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=None,
                                                                                 sort_keys=False).strip()
        elif f.kind in ("int", "float"):
            f.widget.value = _number(value, int if f.kind == "int" else float, name)
        else:
            f.widget.value = bool(value) if f.kind == "bool" else str(value)

    def upload(self, name: str, data: Any, filename: Optional[str] = None, mime: Optional[str] = None) -> None:
        """Put a file in an image or audio field: bytes, a path, or a PIL image (saved as PNG)."""
        f = self._get(name)
        if f.kind not in ("image", "audio"):
            raise InputError(f"form field `{name}` is {type_text(f.input)}, not an image or audio upload.")
        items = data if isinstance(data, (list, tuple)) else [data]
        uploads = []
        for item in items:
            if type(item).__module__.startswith("PIL."):
                buffer = io.BytesIO()
                item.save(buffer, format="PNG")
                uploads.append(Upload(filename or "image.png", "image/png", buffer.getvalue()))
            elif isinstance(item, (bytes, bytearray, memoryview)):
                uploads.append(Upload(filename or name, mime or f"{f.kind}/*", bytes(item)))
            elif isinstance(item, str):
                try:
                    with open(item, "rb") as fh:
                        content = fh.read()
                except OSError as e:
                    raise InputError(f"form field `{name}`: cannot read `{clip(item, 60)}`: {e.strerror or e}.") from None
                import mimetypes
                uploads.append(Upload(filename or item.rsplit("/", 1)[-1],
                                      mime or mimetypes.guess_type(item)[0] or f"{f.kind}/*", content))
            else:
                raise InputError(f"form field `{name}` takes bytes, a file path or a PIL image, not "
                                 f"{type(item).__name__}.")
        f.uploads = uploads
        self._preview(f)

    def _get(self, name: str) -> Field:
        if name not in self.fields:
            raise InputError(f"the form of `{self.target}` has no field `{clip(name, 40)}`"
                             f"{did_you_mean(name, self.fields)}; its fields: {', '.join(self.fields) or 'none'}.")
        return self.fields[name]

    def errors(self) -> Dict[str, str]:
        """The message of each field whose value cannot run (shown under the field, too); ``{}`` when all can."""
        found: Dict[str, str] = {}
        for f in self.fields.values():
            try:
                value = _parse(f)
                if value is _MISSING and required(f.input):
                    raise InputError("required: " + (f"choose one of {', '.join(f.input.choices)}."
                                                     if f.kind == "select" else "give a value."))
                f.message.value = ""
            except InputError as e:
                found[f.name] = scrub(str(e))
                f.message.value = f'<div style="{self._style(_MESSAGE)}">{html.escape(found[f.name])}</div>'
        return found

    def _values(self) -> Dict[str, Any]:
        out = {}
        for f in self.fields.values():
            try:
                value = _parse(f)
            except InputError:
                continue
            if value is not _MISSING:
                out[f.name] = value
        whole = out.pop("", None)
        nested = _nest(out)
        return {**whole, **nested} if isinstance(whole, dict) else nested if whole is None else whole

    @property
    def values(self) -> Dict[str, Any]:
        """The run's input as the fields hold it now (nested for ``a.b`` names; empty optional fields and
        fields whose value is not valid are left out: :meth:`errors` says why)."""
        return self._values()

    def as_run_body(self) -> str:
        """The values as a ``%%run`` body (YAML; a string starting with ``$`` written ``$$``). An uploaded
        image or audio cannot be written as YAML: it is written ``$NAME`` with a comment saying to set
        the variable (``NAME = form.values["NAME"]``) first."""
        values = _literal(self._values())
        lines = []
        plain = {}
        for key, value in values.items():
            if _is_media(value):
                lines.append(f"# {key}: an upload; first run `{key} = form.values[{key!r}]` in a cell")
                lines.append(f"{key}: ${key}")
            else:
                plain[key] = value
        text = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False) if plain else ""
        body = (text if plain else "") + "\n".join(lines)
        return scrub(body.rstrip("\n") + "\n" if body.strip() else "{}\n")

    def run(self, timeout: Optional[float] = None) -> Any:
        """Run with the values (as Run does) and return the RunResult; a field that cannot run raises an
        :class:`InputError` listing the messages, and nothing runs."""
        self._start()
        return self.wait(timeout)

    def wait(self, timeout: Optional[float] = None) -> Any:
        """Wait for the run on its way and return its RunResult (raise its error)."""
        thread, deadline = self._thread, None if timeout is None else time.monotonic() + timeout
        while thread is not None and thread.is_alive():
            thread.join(0.05)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the run of `{self.target}` did not finish within {timeout} s")
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self.result

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the widget's events ---------------------------------------------------------------------
    def _clicked(self) -> None:
        try:
            self._start()
        except McJupyterError as e:
            self._error = None
            self._say(str(e), error=True)
            self._refresh_display()

    def _start(self) -> None:
        with self._lock:
            if self.running:
                raise InputError(f"`{self.target}` is still running: wait for it (form.wait()).")
            problems = self.errors()
            if problems:
                self.error_text = (f"the form of `{self.target}` cannot run:\n" +
                                   "\n".join(f"  {k}: {v}" for k, v in problems.items()))
                self._say(self.error_text, error=True)
                raise InputError(self.error_text)
            values = _literal(self._values())
            self._error, self.error_text = None, ""
            self.button.disabled = True
            self._say(f"Running {self.target}…")
            self._thread = threading.Thread(target=self._run, args=(values,), daemon=True,
                                            name="mc_jupyter-form-run")
            self._thread.start()

    def _run(self, values: Dict[str, Any]) -> None:
        from .chat import TurnSink
        started = time.perf_counter()
        sink = TurnSink(lambda text, done: self._say(f"Running {self.target}… {clip(text, 2000)}"))
        try:
            result = self._runner(values, sink)
        except BaseException as e:          # shown in the form; wait() raises it
            self._error = e
            self.error_text = scrub(str(e) if isinstance(e, McJupyterError) else f"{type(e).__name__}: {e}")
            self._say(self.error_text, error=True)
        else:
            self.result = result
            self._show(result)
            self._say(f"Done in {time.perf_counter() - started:.2f} s.")
        finally:
            self.button.disabled = False
            self._refresh_display()

    def _show(self, result: Any) -> None:
        bundle = result._repr_mimebundle_() if hasattr(result, "_repr_mimebundle_") else {"text/plain": repr(result)}
        self.output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.value = (f'<div style="{_MESSAGE.format(indent="0") if error else _NOTE}">'
                             f'{html.escape(scrub(text))}</div>')

    def close(self) -> None:
        self.view.close()

    # -- display ---------------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        """Shown with a display id, so that a run can refresh the output's static HTML (what a saved
        notebook and nbconvert show): the bundle built when the cell ran holds the fields as they were
        then, with no output."""
        from IPython.display import display
        if self._display_id is None:
            self._display_id = f"mc-jupyter-form-{id(self):x}-{time.monotonic_ns():x}"
        display(self._repr_mimebundle_(), raw=True, display_id=self._display_id)

    def _refresh_display(self) -> None:
        """After a run (or a Run that could not start): the shown output's bundle again, with the values and
        the last output in its static HTML. The frontend renders the widget's view anew (its state is the
        same), so a notebook saved now keeps what the form shows."""
        if self._display_id is None:
            return
        try:
            from IPython.display import update_display
            update_display(self._repr_mimebundle_(), raw=True, display_id=self._display_id)
        except Exception:           # no kernel to send it to (a form used from a script): nothing to refresh
            pass

    def _repr_mimebundle_(self, include=None, exclude=None) -> Dict[str, Any]:
        bundle = dict(self.view._repr_mimebundle_() or {})
        bundle["text/html"] = self.static_html()
        bundle["text/plain"] = self.static_text()
        return bundle

    def _value_text(self, f: Field) -> str:
        if f.kind in ("image", "audio"):
            return ", ".join(f"{u.name} ({len(u.content)} bytes)" for u in f.uploads) or "(no file)"
        if f.kind == "select" and f.invalid is not None:
            return _shown(f.invalid)
        value = f.widget.value
        return _shown(value, 200) if value not in (None, "") else ""

    def static_text(self) -> str:
        """The form as text (what a saved notebook's plain-text view shows)."""
        lines = [f"Form of {self.target} (a live widget: run the notebook to use it)"]
        for f in self.fields.values():
            lines.append(f"  {f.name}{' *' if required(f.input) else ''} ({type_text(f.input)}): {self._value_text(f)}")
        if self.error_text:
            lines.append(self.error_text)
        return scrub("\n".join(lines))

    def static_html(self) -> str:
        """The fields with their values and the last output (or error), as plain HTML."""
        rows = "".join(
            f'<tr><td style="{_CELL}"><b>{html.escape(f.name)}</b>{" *" if required(f.input) else ""}</td>'
            f'<td style="{_CELL}">{html.escape(type_text(f.input))}</td>'
            f'<td style="{_CELL}">{html.escape(self._value_text(f))}</td>'
            f'<td style="{_CELL};color:#666">{html.escape(scrub(f.input.description or ""))}</td></tr>'
            for f in self.fields.values())
        out = ""
        if self.error_text:
            out = f'<div style="{_MESSAGE.format(indent="0")}">{html.escape(self.error_text)}</div>'
        elif self.result is not None:
            bundle = self.result._repr_mimebundle_() if hasattr(self.result, "_repr_mimebundle_") else {}
            if bundle.get("text/html"):
                out = bundle["text/html"]
            elif bundle.get("image/png"):
                out = f'<img src="data:image/png;base64,{bundle["image/png"]}"/>'
            else:
                out = f"<pre>{html.escape(scrub(str(bundle.get('text/plain', repr(self.result)))))}</pre>"
        table = (f'<table style="border-collapse:collapse;font-size:12px">{rows}</table>' if rows else
                 '<div style="color:#666">(reads no inputs)</div>')
        named = html.escape(scrub(self.title)) + (f" ({html.escape(self.target)})" if self.title != self.target else "")
        return (f'<div class="mc-jupyter-form-static"><b>{named}</b> '
                f'<span style="color:#666">(a form: the live widget shows in JupyterLab, Notebook 7, VS Code, '
                f'Colab)</span>{table}<div>{out}</div></div>')


def _number(value: Any, kind: type, name: str = "") -> Any:
    if value is None:
        return kind(0)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"form field `{name}` takes a number, not {clip(repr(value), 40)}.")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(f"form field `{name}` takes {'a whole number' if kind is int else 'a number'}, "
                         f"not {clip(repr(value), 40)}.") from None


def form(target: str, fields: Sequence[InputField], runner: Runner,
         values: Optional[Dict[str, Any]] = None, title: Optional[str] = None,
         description: Optional[str] = None) -> FormWidget:
    """A :class:`FormWidget` on ``fields`` (:func:`mc_jupyter.workflows.inputs_of`), run by ``runner``;
    ``title`` and ``description`` (a workflow's) head it, else ``target``."""
    return FormWidget(target, fields, runner, values, title, description)


__all__ = ["FormWidget", "InputsTable", "form", "kind_of", "type_text", "Field", "Upload"]
