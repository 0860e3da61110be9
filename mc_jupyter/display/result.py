"""RunResult (the value of a ``%%run`` cell), the live stream view, and the status table.

A RunResult shows its output as one MIME bundle: the static picture (``image/png``/``text/html``
and ``text/plain``, from :mod:`.renderers`) and, where a widget view fits the output (the embedding
map, the image gallery, the before/after slider), that widget's ``application/vnd.jupyter.widget-view+json``
beside it, so each frontend shows the richest form it can and a saved notebook keeps the picture.
The widget layer sits above this one: it hands its views in with :func:`register_view`.
"""

from __future__ import annotations

import html
import re
import time
from typing import Any, Callable, Dict, List, Optional

from ..secrets import scrub
from ..devices import human_bytes
from ..engine import RunOutcome, StreamSink
from ..registry import Registry
from . import renderers

MAX_UPDATES_PER_SECOND = 30
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: ``view(outcome, registry) -> widget or None``: a widget for a run's output (an ipywidget, or an
#: object whose ``.widget`` is one and which adds a Python API), or None when it does not fit. Tried in
#: order; the first widget wins.
View = Callable[[RunOutcome, Optional[Registry]], Any]
_VIEWS: List[View] = []
_DEFAULT_REGISTRY: List[Optional[Registry]] = [None]


def widget_view(widget: Any) -> Dict[str, Any]:
    """The ``application/vnd.jupyter.widget-view+json`` of an ipywidget (protocol 2: its model id)."""
    return {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}


def register_view(view: View, registry: Optional[Registry] = None) -> None:
    """Let ``view`` show run outputs as a widget (once, however often it is registered); ``registry``
    (the kernel's) is the one a widget reruns components in when a RunResult was not given its own."""
    if view not in _VIEWS:
        _VIEWS.append(view)
    if registry is not None:
        _DEFAULT_REGISTRY[0] = registry


class RunResult:
    """What a workflow gave back. ``.output`` is the plain Python value; displaying it renders it.

    ``.widget`` is the interactive view of the output when one fits (``None`` otherwise): e.g.
    ``result.widget.query("a text")`` on an embedding map, ``result.widget.again()`` on a gallery."""

    def __init__(self, outcome: RunOutcome, already_shown: bool = False, registry: Optional[Registry] = None):
        self.outcome = outcome
        self.output = outcome.output
        self.workflow = outcome.workflow
        self.seconds = outcome.seconds
        self.jobs = {j.id: j.output for j in outcome.jobs}
        self.registry = registry
        self._skip_next_display = already_shown
        self._widget: Any = None
        self._widget_tried = False

    @property
    def widget(self) -> Any:
        """The output's widget (made on first use), or None when no registered view fits it."""
        if not self._widget_tried:
            self._widget_tried = True
            registry = self.registry or _DEFAULT_REGISTRY[0]
            for view in _VIEWS:
                self._widget = view(self.outcome, registry)
                if self._widget is not None:
                    break
        return self._widget

    def _bundle(self) -> Dict[str, Any]:
        last = self.outcome.last
        if last is None:
            bundle = renderers.render(self.output)
        else:
            bundle = renderers.render(self.output, last.texts, task=last.task, inputs=last.images, fields=last.fields)
        # a secret read through ${env.*} never shows, even when a server echoes it back
        bundle = {k: scrub(v) if k in ("text/plain", "text/html") and isinstance(v, str) else v
                  for k, v in bundle.items()}
        widget = self.widget
        if widget is not None:   # the widget view beside the static picture, in one output
            bundle[WIDGET_VIEW] = widget_view(getattr(widget, "widget", widget))
        return bundle

    def _ipython_display_(self) -> None:
        if self._skip_next_display:   # a stream already showed this output in place
            self._skip_next_display = False
            return
        from IPython.display import display
        display(self._bundle(), raw=True)

    def _repr_mimebundle_(self, include=None, exclude=None) -> Dict[str, Any]:
        return self._bundle()

    def __repr__(self) -> str:
        text = scrub(repr(self.output))
        return f"RunResult(workflow={self.workflow!r}, seconds={self.seconds:.3f}, output={text[:200]}" + \
               ("...)" if len(text) > 200 else ")")


class StreamView(StreamSink):
    """Text that grows in place, at most ~30 updates a second whatever the token rate."""

    def __init__(self, max_updates_per_second: float = MAX_UPDATES_PER_SECOND):
        self.interval = 1.0 / max_updates_per_second
        self.handle = None
        self.text = ""
        self.updates = 0
        self.tokens: Optional[int] = None
        self.first_tokens: Optional[int] = None      # tokens the first chunk carried
        self.started = self.first_chunk_at = self.last_update = 0.0

    def start(self, job_id: str, component_id: str) -> None:
        from IPython.display import display
        self.text, self.started, self.last_update, self.first_chunk_at = "", time.perf_counter(), 0.0, 0.0
        self.tokens = self.first_tokens = None
        self.handle = display(renderers.render_text("▌", f"{component_id}: generating…"), raw=True,
                              display_id=True)

    def chunk(self, text: str, tokens: Optional[int] = None) -> None:
        now = time.perf_counter()
        if not self.first_chunk_at:
            self.first_chunk_at, self.first_tokens = now, tokens
        self.text += text
        self.tokens = tokens
        if now - self.last_update >= self.interval:
            self._show(self.text + "▌", self._stats(now))
            self.last_update = now

    def finish(self, interrupted: bool = False) -> None:
        footer = self._stats(time.perf_counter())
        if interrupted:
            footer = "interrupted · " + footer
        self._show(self.text, footer)

    def _stats(self, now: float) -> str:
        """``64 tokens · 1.2 s · first token 85 ms · decode 55.1 tokens/s``: the time to the first token
        (tokenizing and the prefill included) apart from the rate of the decode after it."""
        seconds = max(now - self.started, 1e-9)
        if not self.first_chunk_at:
            return f"{self.tokens or 0} tokens · {seconds:.1f} s"
        first = f"{(self.first_chunk_at - self.started) * 1e3:.0f} ms"
        if not self.tokens:
            return f"{len(self.text)} characters · {seconds:.1f} s · first text {first}"
        out = f"{self.tokens} tokens · {seconds:.1f} s · first token {first}"
        decoded, decode_s = self.tokens - (self.first_tokens or 0), now - self.first_chunk_at
        if decoded > 0 and decode_s > 0:
            out += f" · decode {decoded / decode_s:.1f} tokens/s"
        return out

    def _show(self, text: str, footer: str) -> None:
        if self.handle is not None:
            self.handle.update(renderers.render_text(scrub(text), footer), raw=True)
            self.updates += 1


class StatusTable:
    """The registry's components as a table (``%mc status``)."""

    COLUMNS = ("id", "type", "task", "driver", "model", "device", "dtype", "parameters", "memory", "state", "load")

    def __init__(self, rows: List[Dict[str, Any]], memory: Optional[Dict[str, Any]] = None):
        self.rows, self.memory = rows, memory

    def _cells(self, row: Dict[str, Any]) -> List[str]:
        params = row.get("parameters")
        device = row.get("device") or ""
        if row.get("placement"):   # a model split by a device map: where each part lives
            device = ", ".join(f"{d} {human_bytes(b)}" for d, b in row["placement"].items())
        return [row["id"], row["type"], row.get("task") or "", row.get("driver") or "",
                str(row.get("model") or row.get("store") or ""),   # a vector store: its vectors, size, place
                device, row.get("dtype") or "",
                f"{params / 1e6:.2f} M" if params else "", human_bytes(row.get("memory_bytes")) if row.get(
                    "memory_bytes") else "", row["state"], f"{row['load_seconds']:.2f} s" if row["load_seconds"] else ""]

    def __repr__(self) -> str:
        if not self.rows:
            return "No components loaded. Run a %%compose cell."
        table = [list(self.COLUMNS)] + [self._cells(r) for r in self.rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(self.COLUMNS))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table) + self._memory_line()

    def _memory_line(self) -> str:
        if not self.memory:
            return ""
        m = self.memory
        parts = [f"kernel RSS {human_bytes(m['process_rss'])}",
                 f"host RAM {human_bytes(m['host']['total'] - m['host']['available'])} / {human_bytes(m['host']['total'])}"]
        parts += [f"GPU{g['index']} {human_bytes(g['used'])} / {human_bytes(g['total'])}" for g in m.get("gpus", [])]
        return "\n" + " · ".join(parts)

    def _repr_html_(self) -> str:
        if not self.rows:
            return "<i>No components loaded. Run a <code>%%compose</code> cell.</i>"
        head = "".join(f"<th>{c}</th>" for c in self.COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in self._cells(r)) + "</tr>"
                       for r in self.rows)
        foot = f"<div style='color:#777;font-size:11px'>{html.escape(self._memory_line().strip())}</div>"
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{foot}"


class PlanView:
    """What ``%%compose --dry-run`` would do, without loading anything."""

    def __init__(self, plan: Any, loaded: bool):
        self.plan, self.loaded = plan, loaded

    def lines(self) -> List[str]:
        p = self.plan
        verb = "" if self.loaded else "would "
        out = []
        for cid, spec in p.components.items():
            action = "reuse" if cid in p.reuse else "reload" if cid in p.reload else "load"
            out.append(f"{verb}{action} `{cid}`: {_describe_component(spec)}")
        for estimate in p.estimates:
            out += estimate.lines()
        for wid in p.workflows:
            out.append(f"workflow `{wid}` ready")
        if p.target:
            out.append(f"%%run without an id runs: {p.target.replace('component:', 'component ')}")
        out += [f"note: {n}" for n in p.notes]
        return out

    def __repr__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        items = "".join("<li>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(l)) + "</li>"
                        for l in self.lines())
        return f"<ul style='margin:0'>{items}</ul>"


def _describe_component(spec: Any) -> str:
    """One line: a model's task, driver, model and placement; a server's command and port; a client's URL."""
    c = spec.config
    if spec.type == "http-server":
        start = (c.manage.start if c.manage else None) or []
        command = " ".join(map(str, start)) if isinstance(start, list) else str(start)
        command = command if len(command) <= 60 else command[:57] + "..."
        return f"http-server · start `{command}` · port {8000 if c.port is None else c.port}"
    if spec.type == "http-client":
        fields = spec.actions[spec.default_action].fields
        return f"http-client · {fields.get('endpoint') or fields.get('base_url') or 'no endpoint'}"
    if spec.type == "vector-store":
        where = c.storage_dir or ("in memory" if c.driver == "faiss" else "./chroma")
        size = f"{c.dimension}-d · " if c.dimension else ""
        methods = sorted({a.fields.get("method") for a in spec.actions.values() if a.fields.get("method")})
        return f"vector-store · {c.driver} · {size}{c.metric} · {where} · methods {', '.join(methods)}"
    if spec.type == "text-splitter":
        return "text-splitter · chunks text (model-compose's recursive splitter)"
    model = c.model
    if isinstance(model, dict):
        model = model.get("repository") or model.get("path")
    return (f"{c.task} · {c.driver} · {model or 'default model'} · "
            f"device {c.device or 'auto'} · precision {c.precision}")
