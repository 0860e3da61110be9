"""Progress that looks like Jupyter: one bar per component load, one per diffusion run, then one line.

The registry and the drivers say what they do here; this module decides how it shows::

    with progress.bar(f"loading {component_id}", total=3) as bar:
        bar.step("tokenizer")      # the stage starting now; the one before it counts as done
        ...
        bar.step("weights")
        ...
        bar.finish("loaded chat: 2.3 s, cpu, float32, 270.0 MiB")   # the line left when done

How it shows (:func:`mode`):

- ``widget``: in an IPython kernel (ipykernel) with ipywidgets 8 importable: an ``IntProgress`` and a
  label in one output, whose MIME bundle carries ``text/plain`` and ``text/html`` fallbacks beside the
  widget view. When the work ends the whole output is replaced (``update_display_data``) by one line of
  text, so a frontend with a widget manager (JupyterLab, Notebook 7, VS Code, Colab) shows a live bar,
  and a saved notebook (nbclient, nbconvert) keeps only the line.
- ``text``: anywhere else (terminal IPython, a script, a kernel without ipywidgets): the line alone,
  written once at the end; never a carriage-return fragment. A failed load writes nothing (its error
  says what happened).
- ``off``: nothing.

``MC_JUPYTER_PROGRESS=widget|text|off`` in the environment, or :func:`configure`, overrides the choice.

Bars nest: a :func:`bar` opened while another is open in the same thread (the registry's load bar around
a driver's ``load``) joins the open one, so the driver's steps move the registry's bar and only the
outermost one shows. While the outermost bar is open, the progress bars of transformers, diffusers and
huggingface_hub are switched off (each as soon as it is imported) and put back as they were after, and
tqdm's ``IProgress not found`` warning is filtered (:func:`install`). Listeners (:func:`watch`) see every
bar open, move and close: the tests count a diffusion run's steps with one.

Ground floor: imports nothing of ours but :mod:`mc_jupyter.secrets`, and nothing heavy at module level
(ipywidgets and IPython's display are imported when a bar shows).
"""

from __future__ import annotations

import contextlib
import contextvars
import html
import importlib.util
import os
import sys
import threading
import time
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional

from .secrets import scrub

MODES = ("widget", "text", "off")

#: tqdm's warnings that reach a notebook's stderr as a pink block: ipywidgets missing, and notebook mode
_TQDM_WARNINGS = (r"IProgress not found", r"Using `tqdm\.autonotebook\.tqdm` in notebook mode")

_current: contextvars.ContextVar[Optional["Bar"]] = contextvars.ContextVar("mc_jupyter_progress_bar", default=None)
_configured: Optional[str] = None
_listeners: List[Callable[[str, "Bar"], None]] = []
_lock = threading.Lock()


def install() -> None:
    """Filter tqdm's ``IProgress not found`` TqdmWarning (and its notebook-mode notice) in this process.

    Idempotent and cheap (imports nothing; a filter already in place is not added again). Called by
    ``load_ipython_extension`` and again whenever a bar opens, since ``warnings.catch_warnings`` blocks
    (pytest runs every test in one) put the filters back as they were."""
    present = {getattr(f[1], "pattern", None) for f in warnings.filters if f[0] == "ignore"}
    for pattern in _TQDM_WARNINGS:
        if pattern not in present:
            warnings.filterwarnings("ignore", message=pattern)


def configure(mode: Optional[str] = None) -> None:
    """Force ``"widget"``, ``"text"`` or ``"off"``; ``None`` goes back to choosing (:func:`mode`)."""
    global _configured
    if mode is not None and mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, not {mode!r}")
    _configured = mode


def mode() -> str:
    """How a bar shows now: :func:`configure`'s choice, else ``MC_JUPYTER_PROGRESS``, else ``"widget"`` in
    an ipykernel kernel that can import ipywidgets, else ``"text"``."""
    if _configured is not None:
        return _configured
    forced = os.environ.get("MC_JUPYTER_PROGRESS", "").strip().lower()
    if forced in MODES:
        return forced
    if _kernel_shell() is not None and importlib.util.find_spec("ipywidgets") is not None:
        return "widget"
    return "text"


def watch(listener: Callable[[str, "Bar"], None]) -> Callable[[], None]:
    """Call ``listener(event, bar)`` on every ``"open"``, ``"step"`` (a step or an advance), ``"total"`` (the
    total changed) and ``"close"`` of an outermost bar, whatever the mode (``off`` too); returns the function
    that stops it."""
    with _lock:
        _listeners.append(listener)

    def unwatch() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)
    return unwatch


def current() -> Optional["Bar"]:
    """The bar open in this thread, if any."""
    return _current.get()


class Bar:
    """One piece of work with ``total`` steps: ``value`` of them done, ``stage`` the one under way."""

    def __init__(self, title: str, total: int, done: Optional[str] = None):
        self.title, self.total, self.value, self.stage = title, max(int(total), 0), 0, ""
        self.stages: List[str] = []
        self.done_text = done
        self.summary: Optional[str] = None      # the line left when done
        self.failed = False
        self.closed = False
        self.started = time.perf_counter()
        self.view: Optional[_View] = None   # how it shows: a _WidgetView (.progress, .text) or a _TextView
        self._quiet: Optional[LibraryBars] = None

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def expect(self, total: int) -> None:
        """Say how many steps there are (a joined bar learns it from the driver)."""
        self.total = max(int(total), self.value)
        self._moved("total")

    def step(self, stage: str) -> None:
        """``stage`` starts now; the stage before it (if any) counts as done."""
        if self.stages:
            self.value += 1
        self.stages.append(stage)
        self.stage = stage
        self.total = max(self.total, self.value + 1)
        self._moved()

    def advance(self, n: int = 1, stage: Optional[str] = None) -> None:
        """``n`` more steps are done (a diffusion step); ``stage`` says where it stands."""
        self.value += n
        self.total = max(self.total, self.value)
        if stage is not None:
            self.stage = stage
        self._moved()

    def finish(self, summary: str) -> None:
        """The one line the bar becomes when its block ends without an error."""
        self.summary = scrub(summary)

    def line(self) -> str:
        if self.failed:
            return f"{self.title}: stopped after {self.seconds:.1f} s"
        return self.summary or f"{self.done_text or self.title}: {self.seconds:.1f} s"

    def label(self) -> str:
        stage = f" · {self.stage}" if self.stage else ""
        count = f" ({self.value}/{self.total})" if self.total else ""
        return scrub(f"{self.title}{stage}{count}")

    # -- what the module does with it ----------------------------------------------------------
    def _open(self) -> None:
        kind = mode()
        if kind == "widget":
            try:
                self.view = _WidgetView(self)
            except Exception:   # no display hook after all (an unusual kernel): the line, as text
                self.view = _TextView()
        elif kind == "text":
            self.view = _TextView()
        _notify("open", self)

    def _moved(self, event: str = "step") -> None:
        if self.closed:
            return
        if self._quiet is not None:
            self._quiet.silence()
        if self.view is not None:
            self.view.update(self)
        _notify(event, self)

    def _close(self, failed: bool) -> None:
        self.failed = failed
        if not failed:
            self.value = self.total = max(self.total, self.value, 1)
            if self.view is not None:
                self.view.update(self)
        self.closed = True
        if self.view is not None:
            self.view.close(self)
        _notify("close", self)


@contextlib.contextmanager
def bar(title: str, total: Optional[int] = None, done: Optional[str] = None) -> Iterator[Bar]:
    """A progress bar around a block (see the module's docstring).

    ``title`` says what runs (``"loading chat"``), ``total`` how many steps (may be given later with
    :meth:`Bar.expect`, or grow with :meth:`Bar.step`), ``done`` the start of the line left at the end
    when nobody calls :meth:`Bar.finish` (``"loaded chat"`` gives ``"loaded chat: 2.3 s"``). Inside
    another bar of this thread it yields that bar (setting its ``total``) and shows nothing of its own."""
    outer = _current.get()
    if outer is not None:
        if total:
            outer.expect(total)
        yield outer
        return
    install()
    made = Bar(title, total or 0, done)
    token = _current.set(made)
    quiet = LibraryBars()
    made._quiet = quiet
    try:
        made._open()
        yield made
    except BaseException:
        made._close(failed=True)
        raise
    else:
        made._close(failed=False)
    finally:
        _current.reset(token)
        quiet.restore()


def quiet_libraries() -> None:
    """Switch off the bars of libraries imported since the open bar began (the bar does this itself at
    every step; a driver may call it right after its imports)."""
    made = _current.get()
    if made is not None and made._quiet is not None:
        made._quiet.silence()


class LibraryBars:
    """transformers', diffusers' and huggingface_hub's own progress bars, switched off while a bar of ours
    is open and put back as they were after. A library is touched only once it is imported (this
    imports none of them)."""

    #: module -> (is it on?, turn it off, turn it on), function names of that module, in the order they are
    #: put back: transformers' switch flips the hub's too, so the hub's own state is put back last
    SWITCHES = {
        "transformers.utils.logging": ("is_progress_bar_enabled", "disable_progress_bar", "enable_progress_bar"),
        "diffusers.utils.logging": ("is_progress_bar_enabled", "disable_progress_bar", "enable_progress_bar"),
        "huggingface_hub.utils": ("are_progress_bars_disabled", "disable_progress_bars", "enable_progress_bars"),
    }

    def __init__(self) -> None:
        self._was_on: Dict[str, bool] = {}
        self.silence()

    def silence(self) -> None:
        found = {}
        for name, (ask, off, _) in self.SWITCHES.items():   # every state read before any is switched:
            module = sys.modules.get(name)                    # transformers' switch flips the hub's too
            if name in self._was_on or module is None or not hasattr(module, off):
                continue
            try:
                on = bool(getattr(module, ask)())
            except Exception:       # a library version without the switch: leave it be
                continue
            found[name] = (module, not on if ask.startswith("are_") else on)   # the hub asks the other way
        for name, (module, was_on) in found.items():
            try:
                getattr(module, self.SWITCHES[name][1])()
            except Exception:
                continue
            self._was_on[name] = was_on

    def restore(self) -> None:
        for name, (_, off, on) in self.SWITCHES.items():
            if name not in self._was_on:
                continue
            was_on = self._was_on.pop(name)
            if name.startswith("huggingface_hub"):
                # explicitly either way: transformers' switch above may have turned it on; never `on` when
                # HF_HUB_DISABLE_PROGRESS_BARS is set (the hub warns), which shows here as "was off"
                switch = on if was_on else off
            elif was_on:
                switch = on
            else:
                continue
            try:
                getattr(sys.modules[name], switch)()
            except Exception:
                pass


# -- views ---------------------------------------------------------------------------------------

class _View:
    def update(self, bar: Bar) -> None:
        """The bar moved."""

    def close(self, bar: Bar) -> None:
        """The bar is done (``bar.failed`` says how)."""


class _TextView(_View):
    """One line at the end, to stdout (or as a display output in a kernel); nothing for a failure."""

    def close(self, bar: Bar) -> None:
        if bar.failed:
            return
        if _kernel_shell() is not None:
            from IPython.display import display
            display({"text/plain": bar.line()}, raw=True)
        else:
            print(bar.line(), flush=True)


class _WidgetView(_View):
    """An ipywidgets ``IntProgress`` beside a label, in one output that is replaced by the line at the end."""

    def __init__(self, bar: Bar):
        import ipywidgets
        from IPython.display import display

        self.progress = ipywidgets.IntProgress(value=bar.value, min=0, max=max(bar.total, 1),
                                               layout=ipywidgets.Layout(width="16em"))
        self.text = ipywidgets.Label(value=bar.label())
        self.box = ipywidgets.HBox([self.progress, self.text])
        self.handle = display(self._bundle(bar), raw=True, display_id=True)

    def _bundle(self, bar: Bar) -> Dict[str, Any]:
        bundle = dict(self.box._repr_mimebundle_() or {})
        bundle["text/plain"] = bar.label()
        bundle["text/html"] = (f"<progress value='{bar.value}' max='{max(bar.total, 1)}'></progress> "
                               f"<span>{html.escape(bar.label())}</span>")
        return bundle

    def update(self, bar: Bar) -> None:
        self.progress.max = max(bar.total, 1)
        self.progress.value = min(bar.value, self.progress.max)
        self.text.value = bar.label()

    def close(self, bar: Bar) -> None:
        line = bar.line()
        self.handle.update({"text/plain": line, "text/html": f"<pre style='margin:0'>{html.escape(line)}</pre>"},
                           raw=True)
        for widget in (self.box, self.text, self.progress):
            widget.close()


def _kernel_shell() -> Any:
    """The running ipykernel shell (a notebook, VS Code, Colab, nbclient), or None (terminal IPython, a
    script). IPython is not imported for this."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell if getattr(shell, "kernel", None) is not None else None


def _notify(event: str, made: Bar) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event, made)
        except Exception:    # a listener's failure never breaks a load
            pass
