"""The kernel-resident registry: the only owner of live objects (loaded models, later servers).

Components are keyed by id and added to by every ``%%compose``. Each has a fingerprint of its load
settings: an unchanged component is reused (same object, no reload), a changed one is loaded anew
and the old one freed. :meth:`Registry.apply` is all-or-nothing: when any load fails, what it
loaded is freed and the registry is exactly as before. All state changes hold ``lock``; readers
(the sidebar, from another thread) take :meth:`snapshot`.

An entry's state changes only through :meth:`Entry.move`, whose legal moves are::

    LOADING ──▶ READY ──unload, replaced, rolled back──▶ UNLOADED ──first run (preload: false)──▶ LOADING
       │                                                    ▲
       └──▶ FAILED ──next run (preload: false)──▶ LOADING   │
       (LOADING and FAILED may be freed: ──────────────────┘)

so a READY entry is never loaded again in place (a changed compose loads a new entry; an unloaded one
loads through LOADING), and nothing becomes READY or FAILED except from LOADING. Workflows are compiled
by :mod:`mc_jupyter.workflows`, against the action ids of the components they may use.
"""

from __future__ import annotations

import contextlib
import enum
import traceback
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Dict, List, Optional

from .binding import compile_value, guard_secrets
from .config.positions import clip
from .config.schema import ComponentSpec, ComposeConfig, ModelComponent
from .config.store_schema import VectorStoreComponent
from . import progress
from .devices import human_bytes, release_memory
from .drivers.base import Driver
from .errors import ModelLoadError, NotLoadedError, UserError, choices_text, did_you_mean
from .install import Say, component_class
from .interrupts import allowed, deferred
from .secrets import scrub
from .workflows import CompiledWorkflow, compile_workflows


class State(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


#: The legal moves of an entry (the module's docstring draws them).
MOVES = {
    State.LOADING: {State.READY, State.FAILED, State.UNLOADED},
    State.READY: {State.UNLOADED},
    State.FAILED: {State.LOADING, State.UNLOADED},
    State.UNLOADED: {State.LOADING},
}


def not_loaded(component_id: str, loaded: Collection[str], then: str = "") -> NotLoadedError:
    """The one "no component loaded" error (to run, unload, stop or read the logs of one): the id, a
    did-you-mean, what is loaded, and ``then`` (what to do)."""
    return NotLoadedError(f"no component `{clip(component_id)}` is loaded{did_you_mean(component_id, loaded)}",
                          hint=f"Loaded: {choices_text(loaded) or 'none'}." + (f" {then}" if then else ""))


@dataclass
class CompiledAction:
    id: str
    fields: Dict[str, Any]      # bindings parsed, ``output`` excluded
    output: Any
    path: tuple


@dataclass
class Entry:
    """One component in the registry."""

    id: str
    spec: ComponentSpec
    actions: Dict[str, CompiledAction]
    fingerprint: str
    state: State = State.LOADING
    driver: Optional[Driver] = None
    load_seconds: float = 0.0
    loaded_at: float = 0.0
    load_count: int = 0
    error: str = ""
    runs: int = 0            # jobs running on it now; a component in use is not freed under them
    #: held through a first-run load (``preload: false``), so two runs at once load it once
    first_load: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def task(self) -> Optional[str]:
        return self.spec.task

    def move(self, to: State, error: str = "") -> None:
        """The one place the state changes (``error`` with FAILED); an illegal move raises a sentence."""
        now = self.state
        if to not in MOVES[now]:
            if now is State.READY and to is State.LOADING:
                raise RuntimeError(f"Cannot load component `{self.id}` again while it is loaded: unload it first "
                                   f"(a changed compose loads a new entry in its place).")
            raise RuntimeError(f"Cannot move component `{self.id}` from {now.value} to {to.value}"
                               + (": only a load makes it ready or failed." if to in (State.READY, State.FAILED)
                                  else "."))
        self.state, self.error = to, error if to is State.FAILED else ("" if to is State.READY else self.error)

    def describe(self) -> Dict[str, Any]:
        """A plain, secret-free summary for the status table and the sidebar. A managed server's own
        state (starting, running, stopped, failed) stands in for the entry's while it has one."""
        info = self.driver.info() if self.driver else {}
        if self.state is not State.READY:   # a half-done load's figures are not the model's yet; a server's state is
            info = {k: v for k, v in info.items() if k.startswith("server_")}
        m = self.spec.config if isinstance(self.spec.config, ModelComponent) else None
        store = self.spec.config if isinstance(self.spec.config, VectorStoreComponent) else None
        driver = _plain(m.driver) if m else (store.driver if store else None)
        return {"id": self.id, "type": self.spec.type, "task": _plain(m.task) if m else None,
                "driver": driver, "model": _model_name(m.model) if m else None, "store": info.get("store"),
                "device": info.get("device"), "dtype": info.get("dtype"),
                "quantization": _plain(m.quantization) if m else "none", "parameters": info.get("parameters"),
                "memory_bytes": info.get("memory_bytes"), "placement": info.get("placement"),
                "state": info.get("server_state") or self.state.value,
                "load_seconds": round(self.load_seconds, 3), "error": self.error or info.get("server_error") or ""}


def _plain(value: Any) -> Any:
    """An enum member as its YAML word (the sidebar's JSON and the status table show words)."""
    return value.value if isinstance(value, enum.Enum) else value


def _model_name(model: Any) -> Optional[str]:
    if isinstance(model, dict):
        return model.get("repository") or model.get("path")
    return model


@dataclass
class Plan:
    """What a compose does: ids to load, reload, reuse; shown by ``--dry-run``."""

    load: List[str] = field(default_factory=list)
    reload: List[str] = field(default_factory=list)
    reuse: List[str] = field(default_factory=list)
    workflows: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    target: Optional[str] = None
    undecided: List[str] = field(default_factory=list)       # several workflows, none marked default
    components: Dict[str, ComponentSpec] = field(default_factory=dict)
    estimates: List[Any] = field(default_factory=list)      # planning.ComponentPlan (dry run) or Estimate


Listener = Callable[[str, Dict[str, Any]], None]


def _runtime_note(cid: str, runtime: Any) -> str:
    """What model-compose's ``runtime:`` (native, embedded, process, virtualenv, docker) comes to here."""
    kind = runtime.get("type") if isinstance(runtime, dict) else runtime
    kind = kind or "native"
    where = {"docker": "in a docker container", "virtualenv": "in its own virtualenv",
             "process": "in a separate process"}.get(str(kind))
    if where is None:
        return f"`runtime: {kind}` of `{cid}`: it runs in this kernel, as model-compose's native runtime does."
    return (f"`runtime: {kind}` of `{cid}`: model-compose would run it {where}; here it runs in this kernel "
            f"(its packages come from the kernel's environment; `%config McJupyter.auto_install = True` adds "
            f"what is missing).")


class Registry:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.entries: Dict[str, Entry] = {}
        self.workflows: Dict[str, CompiledWorkflow] = {}
        self.default_target: Optional[str] = None     # a workflow id, or "component:ID"
        self.undecided: List[str] = []                # the latest compose's workflows, when none is the default
        self.loading: Dict[str, Entry] = {}
        self._listeners: List[Listener] = []

    # -- events --------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self.lock:
            self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, kind: str, **data: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, data)
            except Exception:  # a broken listener must not break a compose
                pass

    # -- reading -------------------------------------------------------------------------------
    def snapshot(self) -> List[Dict[str, Any]]:
        with self.lock:
            rows = [e.describe() for e in self.entries.values()]
            rows += [e.describe() for e in self.loading.values() if e.id not in self.entries]
        return rows

    def get(self, component_id: str, then: str = "Compose it first.") -> Entry:
        """The entry of ``component_id``, or :func:`not_loaded`'s error (``then``: what to do)."""
        with self.lock:
            entry = self.entries.get(component_id)
            if entry is None:
                raise not_loaded(component_id, list(self.entries), then)
        return entry

    # -- composing -----------------------------------------------------------------------------
    def plan(self, config: ComposeConfig, estimate: str = "gpu"
             ) -> tuple[Plan, Dict[str, Entry], Dict[str, CompiledWorkflow]]:
        """Compile bindings and workflows and diff against what is loaded; changes nothing.

        ``estimate``: "all" estimates the memory of every model to load (``--dry-run``), "gpu" only of
        those going to a GPU (a real compose warns before a load that cannot fit), "none" skips it.
        """
        plan = Plan(notes=list(config.notes), components=dict(config.components))
        new_entries: Dict[str, Entry] = {}
        for cid, spec in config.components.items():
            entry = Entry(cid, spec, _compile_actions(spec, config), spec.fingerprint())
            new_entries[cid] = entry
            with self.lock:
                old = self.entries.get(cid)
            if old is not None and old.fingerprint == entry.fingerprint and old.state is State.READY:
                plan.reuse.append(cid)
            elif old is not None:
                plan.reload.append(cid)
            else:
                plan.load.append(cid)
            if "max_concurrent_count" in spec.config.model_fields_set and not spec.type.startswith("http-"):
                plan.notes.append(f"`max_concurrent_count` of `{cid}` has no effect in a notebook (its runs take "
                                  f"turns on the one loaded model).")   # http components limit them for real
            if spec.type == "http-server" and spec.config.port is None:
                plan.notes.append(f"http-server `{cid}` gives no `port:`: 8000, model-compose's default (its start "
                                  f"command must listen there).")
            if "runtime" in spec.config.model_fields_set:
                plan.notes.append(_runtime_note(cid, spec.config.runtime))
            if isinstance(spec.config, ModelComponent) and spec.config.trust_remote_code:
                plan.notes.append(f"`trust_remote_code: true` for `{cid}`: the model repository's own Python code "
                                  f"runs in this kernel. Turn it on only for repositories you trust.")
        if estimate != "none":
            plan.estimates = _estimates(new_entries, plan.load + plan.reload, estimate)
        with self.lock:
            known = {cid: list(e.actions) for cid, e in self.entries.items()}
        known.update({cid: list(e.actions) for cid, e in new_entries.items()})
        workflows = compile_workflows(config, known)
        plan.workflows = list(workflows)
        marked = [w for w, c in workflows.items() if c.spec.default]
        if marked or len(workflows) == 1:
            plan.target = marked[0] if marked else next(iter(workflows))
        elif workflows:            # several, none marked: a run without an id must name one
            plan.undecided = list(workflows)
            plan.notes.append(f"{len(workflows)} workflows and none marked `default: true`: name the one to run "
                              f"(`%%run {clip(plan.undecided[0], 40)}`).")
        elif len(config.components) == 1:
            plan.target = "component:" + next(iter(config.components))
        elif config.default_component is not None:   # model-compose's `default: true` on a component
            plan.target = "component:" + config.default_component
        return plan, new_entries, workflows

    def apply(self, config: ComposeConfig, auto_install: bool = False, say: Optional[Say] = None) -> Plan:
        """Load what the plan says; all or nothing.

        A kernel interrupt stops a load (and anything before it) at once; one that comes while models
        move into the registry or are freed is held until that is done (:mod:`mc_jupyter.interrupts`),
        so that no model is ever left loaded outside the registry.
        """
        plan, new_entries, workflows = self.plan(config)       # changes nothing
        with deferred():
            return self._apply(plan, new_entries, workflows, auto_install, say)

    def _apply(self, plan: Plan, new_entries: Dict[str, Entry], workflows: Dict[str, Any],
               auto_install: bool, say: Optional[Say]) -> Plan:
        for estimate in plan.estimates:
            if not estimate.fits and say is not None:
                say(estimate.lines()[-1])
        loaded: List[Entry] = []
        try:
            todo = [cid for cid in new_entries if cid not in plan.reuse]
            for _ in range(3):
                for cid in todo:
                    entry = new_entries[cid]
                    if isinstance(entry.spec.config, ModelComponent) and not entry.spec.config.preload:
                        entry.move(State.UNLOADED)
                        continue
                    loaded.append(entry)        # before loading: an interrupt mid-load still frees it
                    self._load(entry, auto_install, say)
                # A component this compose reuses may have been unloaded meanwhile (the sidebar's button,
                # from its own thread): load it again, so the compose leaves what its cell says.
                with self.lock:
                    todo = [cid for cid in plan.reuse if not _ready(self.entries.get(cid))]
                if not todo:
                    break
                for cid in todo:
                    plan.reuse.remove(cid)
                    plan.load.append(cid)
        except BaseException:
            with self.lock:        # out of the snapshot first, so the panel never sees a row being freed
                for entry in new_entries.values():
                    self.loading.pop(entry.id, None)
            for entry in loaded:
                _free(entry)
            release_memory()
            self._emit("changed")
            raise
        replaced: List[Entry] = []
        with self.lock:
            saved = (dict(self.entries), dict(self.workflows), self.default_target, self.undecided)
            try:
                for cid, entry in new_entries.items():
                    old = self.entries.get(cid)
                    if cid in plan.reuse and old is not None:
                        if old.driver is not None and (old.spec.settings != entry.spec.settings
                                                       or old.spec.config != entry.spec.config):
                            old.driver.reconfigure(entry.spec.config)   # e.g. new adapter weights
                        old.actions, old.spec = entry.actions, entry.spec   # new action fields, same model
                        continue
                    if cid in plan.reuse:
                        # unloaded (from the sidebar) again, in the instant before this commit: it stays
                        # unloaded; its next compose loads it
                        continue
                    if old is not None:
                        replaced.append(old)
                    self.entries[cid] = entry
                for cid in new_entries:
                    self.loading.pop(cid, None)
                self.workflows.update(workflows)
                if plan.target or plan.undecided:
                    self.default_target, self.undecided = plan.target, plan.undecided
            except BaseException:   # failed mid-commit (a driver's reconfigure): put the registry back, free what was loaded
                self.entries, self.workflows, self.default_target, self.undecided = saved
                for cid in new_entries:
                    self.loading.pop(cid, None)
                for entry in loaded:
                    _free(entry)
                raise
        try:
            for old in replaced:
                _free(old)
        finally:
            if replaced:
                release_memory()
        self._emit("changed")
        return plan

    def ensure_loaded(self, entry: Entry, auto_install: bool = False, say: Optional[Say] = None) -> None:
        """Load a ``preload: false`` component on its first run (a second run at the same time waits for
        that load, then uses it)."""
        with entry.first_load:
            with self.lock:
                if entry.state is State.READY:
                    return
                if self.entries.get(entry.id) is not entry:
                    raise UserError(f"component `{entry.id}` was unloaded; compose it again to use it.")
            with deferred():
                try:
                    self._load(entry, auto_install, say)
                finally:
                    with self.lock:
                        self.loading.pop(entry.id, None)
                self._emit("changed")

    @contextlib.contextmanager
    def use(self, component_id: str):
        """The entry of ``component_id``, marked in use, found and marked in one locked step."""
        with self.lock:
            entry = self.get(component_id)
            entry.runs += 1
        try:
            yield entry
        finally:
            with self.lock:
                entry.runs -= 1

    @guard_secrets(lambda self, entry, *a: f"component `{entry.id}`", lambda self, entry, *a: entry.spec.settings)
    def _load(self, entry: Entry, auto_install: bool, say: Optional[Say]) -> None:
        with allowed():                # may install packages: as slow as a load
            cls = component_class(entry.spec.config, auto_install, say)
        with self.lock:
            if entry.state is not State.LOADING:      # a `preload: false` one's first run, or a retry
                entry.move(State.LOADING)
            self.loading[entry.id] = entry
        self._emit("loading", id=entry.id)
        driver = cls(entry.id, entry.spec.config)
        entry.driver = driver          # held from the start, so any interruption can free it
        # one bar per load (the driver's steps move it), which becomes the line of loaded_line(entry)
        with progress.bar(f"loading {entry.id}", done=f"loaded {entry.id}") as bar:
            started = time.perf_counter()
            try:
                with allowed():            # interrupting a slow load stops it at once
                    driver.load()
            except BaseException as e:
                with self.lock:            # still in `loading`: the panel shows the failed row and its error
                    entry.driver = None
                    entry.move(State.FAILED, str(e).splitlines()[0] if str(e) else type(e).__name__)
                self._emit("failed", id=entry.id)
                driver.unload()
                traceback.clear_frames(e.__traceback__)   # the frames of a half-done load hold its tensors
                with self.lock:
                    self.loading.pop(entry.id, None)
                if _out_of_memory(e):
                    release_memory()
                    config = entry.spec.config
                    smaller = ("`precision: float16` (fast_decode packs int8/int4 after loading the plain weights: "
                               "they do not lower the load's peak)" if entry.spec.type == "model" and config.fast_decode
                               else "`quantization: nf4` or `int8`, `precision: float16`")
                    raise ModelLoadError(
                        f"component `{entry.id}` ran out of memory while loading ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'no details'}).\n  What it had taken is freed. Try "
                        f"{smaller}, a smaller model, or `%mc unload` "
                        f"another component first; `%%compose --dry-run` estimates the memory.") from None
                raise
            with self.lock:
                entry.move(State.READY)
            entry.load_seconds, entry.loaded_at = time.perf_counter() - started, time.time()
            entry.load_count += 1
            bar.finish(loaded_line(entry))

    # -- freeing -------------------------------------------------------------------------------
    def unload(self, component_id: str) -> None:
        with deferred():
            with self.lock:
                entry = self.get(component_id, then="")
                if entry.runs:
                    raise UserError(f"component `{component_id}` is running a job right now, so it is not unloaded."
                                    f"\n  Wait for the run to finish (or interrupt the kernel), then unload it.")
                del self.entries[component_id]
                if self.default_target == "component:" + component_id:
                    self.default_target = None
            _free(entry)               # outside the lock: stopping a server takes a while
        release_memory()
        self._emit("changed")

    def down(self) -> List[str]:
        with deferred():
            with self.lock:
                entries = list(self.entries.values())
                self.entries.clear()
                self.loading.clear()
                self.workflows.clear()
                self.default_target, self.undecided = None, []
            for entry in entries:      # outside the lock: stopping a server takes a while
                _free(entry)
        release_memory()
        self._emit("changed")
        return [e.id for e in entries]


def loaded_line(entry: Entry) -> str:
    """The one line a finished load leaves in the cell: ``loaded chat: 2.3 s, cpu, float32, 270.0 MiB``
    (what :meth:`Entry.describe` knows of the device, precision and memory; secret-free)."""
    row = entry.describe()
    parts = [f"{row['load_seconds']:.1f} s"] + [str(row[k]) for k in ("device", "dtype") if row.get(k)]
    if row.get("memory_bytes"):
        parts.append(human_bytes(row["memory_bytes"]))
    return scrub(f"loaded {entry.id}: " + ", ".join(parts))


def _estimates(entries: Dict[str, Entry], ids: List[str], which: str) -> List[Any]:
    """``which="all"`` (``--dry-run``): per component to load, what ``auto`` came to, every refusal the compose
    would make and the memory estimate; ``"gpu"``: the estimates of the models going to a GPU, so that a
    compose warns before a load that cannot fit (see :func:`mc_jupyter.planning.plan_components`)."""
    from .planning import plan_components
    return plan_components([(cid, entries[cid].spec) for cid in ids], which)


def _ready(entry: Optional[Entry]) -> bool:
    return entry is not None and entry.state is State.READY and entry.driver is not None


def _out_of_memory(error: BaseException) -> bool:
    if isinstance(error, UserError):   # already a clear message (a server's log may mention memory)
        return False
    text = str(error).lower()
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError" or \
        "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text


def _free(entry: Entry) -> None:
    if entry.driver is not None:
        entry.driver.unload()
        entry.driver = None
    if entry.state is not State.UNLOADED:    # freeing twice (a rollback after a sidebar unload) is a no-op
        entry.move(State.UNLOADED)


def _compile_actions(spec: ComponentSpec, config: ComposeConfig) -> Dict[str, CompiledAction]:
    out = {}
    for aid, action in spec.actions.items():
        fields = {k: compile_value(v, action.path + (k,), config.positions)
                  for k, v in action.fields.items() if k != "output"}
        output = compile_value(action.fields.get("output"), action.path + ("output",), config.positions)
        out[aid] = CompiledAction(aid, fields, output, action.path)
    return out
