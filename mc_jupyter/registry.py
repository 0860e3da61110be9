"""The kernel-resident registry: the only owner of live objects (loaded models, later servers).

Components are keyed by id and added to by every ``%%compose``. Each has a fingerprint of its load
settings: an unchanged component is reused (same object, no reload), a changed one is loaded anew
and the old one freed. :meth:`Registry.apply` is all-or-nothing: when any load fails, what it
loaded is freed and the registry is exactly as before. All state changes hold ``lock``; readers
(the sidebar, from another thread) take :meth:`snapshot`.
"""

from __future__ import annotations

import contextlib
import enum
import traceback
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from .binding import compile_value, guard_secrets
from .config.positions import clip, format_path
from .config.schema import ComponentSpec, ComposeConfig, WorkflowSpec
from .devices import release_memory
from .drivers.base import Driver
from .errors import (ConfigError, ModelLoadError, UserError, WorkflowError, choices_text,
                     did_you_mean)
from .install import Say, component_class
from .interrupts import allowed, deferred


class State(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


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

    @property
    def task(self) -> Optional[str]:
        return self.spec.task

    def describe(self) -> Dict[str, Any]:
        """A plain, secret-free summary for the status table and the sidebar."""
        info = self.driver.info() if self.driver else {}
        c = self.spec.config
        model = c.model if c.type == "model" else None
        return {"id": self.id, "type": self.spec.type, "task": _plain(getattr(c, "task", None)),
                "driver": _plain(getattr(c, "driver", None)), "model": _model_name(model),
                "device": info.get("device"), "dtype": info.get("dtype"),
                "quantization": _plain(getattr(c, "quantization", "none")), "parameters": info.get("parameters"),
                "memory_bytes": info.get("memory_bytes"), "placement": info.get("placement"),
                "state": info.get("server_state") or self.state.value,
                "load_seconds": round(self.load_seconds, 3), "error": self.error}


def _plain(value: Any) -> Any:
    """An enum member as its YAML word (the sidebar's JSON and the status table show words)."""
    return value.value if isinstance(value, enum.Enum) else value


def _model_name(model: Any) -> Optional[str]:
    if isinstance(model, dict):
        return model.get("repository") or model.get("path")
    return model


@dataclass
class CompiledWorkflow:
    spec: WorkflowSpec
    jobs_input: Dict[str, Any]
    jobs_output: Dict[str, Any]
    output: Any
    order: List[str]


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

    def get(self, component_id: str) -> Entry:
        with self.lock:
            entry = self.entries.get(component_id)
        if entry is None:
            raise WorkflowError(f"no component `{component_id}` is loaded{did_you_mean(component_id, self.entries)}",
                                hint=f"Loaded: {choices_text(self.entries) or 'none'}. Compose it first.")
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
            for key in ("max_concurrent_count", "runtime"):
                if key in spec.config.model_fields_set:
                    plan.notes.append(f"`{key}` of `{cid}` has no effect in a notebook.")
            if getattr(spec.config, "trust_remote_code", False):
                plan.notes.append(f"`trust_remote_code: true` for `{cid}`: the model repository's own Python code "
                                  f"runs in this kernel. Turn it on only for repositories you trust.")
        if estimate != "none":
            plan.estimates = _estimates(new_entries, plan.load + plan.reload, estimate)
        known = {**{k: e for k, e in self.entries.items()}, **new_entries}
        workflows = {wid: _compile_workflow(w, known, config) for wid, w in config.workflows.items()}
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

    def _apply(self, plan: Plan, new_entries: Dict[str, Entry], workflows: Dict[str, CompiledWorkflow],
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
                    if getattr(entry.spec.config, "preload", True) is False:
                        entry.state = State.UNLOADED
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
                        if old.driver is not None and old.spec.settings != entry.spec.settings:
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
        """Load a ``preload: false`` component on its first run."""
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
        entry.state = State.LOADING
        with self.lock:
            self.loading[entry.id] = entry
        self._emit("loading", id=entry.id)
        driver = cls(entry.id, entry.spec.config)
        entry.driver = driver          # held from the start, so any interruption can free it
        started = time.perf_counter()
        try:
            with allowed():            # interrupting a slow load stops it at once
                driver.load()
        except BaseException as e:
            entry.state, entry.error = State.FAILED, str(e).splitlines()[0] if str(e) else type(e).__name__
            entry.driver = None
            driver.unload()
            traceback.clear_frames(e.__traceback__)   # the frames of a half-done load hold its tensors
            with self.lock:
                self.loading.pop(entry.id, None)
            self._emit("failed", id=entry.id)
            if _out_of_memory(e):
                release_memory()
                raise ModelLoadError(f"component `{entry.id}` ran out of memory while loading ({type(e).__name__}: "
                                     f"{str(e).splitlines()[0] if str(e) else 'no details'}).\n  What it had taken "
                                     f"is freed. Try `quantization: nf4` or `int8`, `precision: float16`, a smaller "
                                     f"model, or `%mc unload` another component first; `%%compose --dry-run` "
                                     f"estimates the memory.") from None
            raise
        entry.state = State.READY
        entry.load_seconds, entry.loaded_at = time.perf_counter() - started, time.time()
        entry.load_count += 1

    # -- freeing -------------------------------------------------------------------------------
    def unload(self, component_id: str) -> None:
        with deferred():
            with self.lock:
                entry = self.entries.get(component_id)
                if entry is None:
                    raise ConfigError(f"no component `{component_id}` is loaded"
                                      f"{did_you_mean(component_id, self.entries)}",
                                      hint=f"Loaded: {choices_text(self.entries) or 'none'}.")
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
    entry.state = State.UNLOADED


def _compile_actions(spec: ComponentSpec, config: ComposeConfig) -> Dict[str, CompiledAction]:
    out = {}
    for aid, action in spec.actions.items():
        fields = {k: compile_value(v, action.path + (k,), config.positions)
                  for k, v in action.fields.items() if k != "output"}
        output = compile_value(action.fields.get("output"), action.path + ("output",), config.positions)
        out[aid] = CompiledAction(aid, fields, output, action.path)
    return out


def _compile_workflow(spec: WorkflowSpec, known: Dict[str, Entry], config: ComposeConfig) -> CompiledWorkflow:
    positions = config.positions
    ids = [j.id for j in spec.jobs]
    jobs_input, jobs_output = {}, {}
    for job in spec.jobs:
        where = dict(path=format_path(job.path + ("component",)), line=positions.line(job.path + ("component",)))
        entry = known.get(job.component)
        if entry is None:
            raise WorkflowError(f"job `{job.id}` uses component `{job.component}`, which is not defined"
                                f"{did_you_mean(job.component, known)}",
                                hint=f"Defined components: {choices_text(known) or 'none'}. Define it in this "
                                     f"cell or compose it in an earlier one.", **where)
        if job.action is not None and job.action not in entry.actions:
            p = job.path + ("action",)
            raise WorkflowError(f"component `{job.component}` has no action `{job.action}`"
                                f"{did_you_mean(job.action, entry.actions)}", path=format_path(p),
                                line=positions.line(p), hint=f"Its actions: {choices_text(entry.actions)}.")
        for dep in job.depends_on or []:
            if dep not in ids:
                p = job.path + ("depends_on",)
                raise WorkflowError(f"job `{job.id}` depends on `{dep}`, which is not a job of this workflow"
                                    f"{did_you_mean(dep, ids)}", path=format_path(p), line=positions.line(p),
                                    hint=f"Jobs here: {choices_text(ids)}.")
        jobs_input[job.id] = compile_value(job.input, job.path + ("input",), positions)
        jobs_output[job.id] = compile_value(job.output, job.path + ("output",), positions)
    output = compile_value(spec.output, spec.path + ("output",), positions)
    return CompiledWorkflow(spec, jobs_input, jobs_output, output, _order(spec, positions))


def _order(spec: WorkflowSpec, positions) -> List[str]:
    """Written order without ``depends_on``; a checked topological order with it (dialect §3)."""
    if not any(j.depends_on for j in spec.jobs):
        return [j.id for j in spec.jobs]
    deps = {j.id: list(j.depends_on or []) for j in spec.jobs}
    order: List[str] = []
    state: Dict[str, int] = {}

    def visit(jid: str, chain: List[str]) -> None:
        if state.get(jid) == 2:
            return
        if state.get(jid) == 1:
            cycle = chain[chain.index(jid):] + [jid]
            job = next(j for j in spec.jobs if j.id == jid)
            p = job.path + ("depends_on",)
            raise WorkflowError(f"the jobs depend on each other in a cycle: {' -> '.join(cycle)}",
                                path=format_path(p), line=positions.line(p),
                                hint="Remove one of the `depends_on` entries so the jobs can run in an order.")
        state[jid] = 1
        for dep in deps[jid]:
            visit(dep, chain + [jid])
        state[jid] = 2
        order.append(jid)

    for j in spec.jobs:
        visit(j.id, [])
    return order
