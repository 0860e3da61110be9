"""The sidebar's comm, from its own thread, against composes, runs and unloads on the main thread.

In JupyterLab 4.6 comm messages are handled on a kernel subshell thread while cells run on the main
thread, and the panel's sampling thread reads the registry too. Here one thread sends the panel's
messages (refresh, keepalive, unload, stop, malformed ones) through the real ``SidebarConnection``
handler, as tests/test_sidebar_comm.py drives it, while the main thread composes, runs, streams and
unloads the tiny models; the connection samples every 10 ms on its own thread all the while.

What must hold: no exception escapes except the documented ``UserError``s; every snapshot the panel
received is whole (valid states, fields that fit the state, no id twice); between two main-thread
operations the registry holds only ready, loaded components and nothing half-loaded; every model
ever loaded is either in the registry or freed; afterwards the registry is what the last operations
say, and no thread is left behind.
"""

from __future__ import annotations

import gc
import inspect
import random
import re
import sys
import threading
import time
from collections import Counter

import pytest

import mc_jupyter as mc
from mc_jupyter.drivers.hf_generation import TextGeneration
from mc_jupyter.engine import StreamSink
from mc_jupyter.errors import UserError
from mc_jupyter.registry import State
from tests.test_sidebar_comm import fast_panel, manager  # noqa: F401  (manager is a fixture)

IDS = ("a", "b", "c", "s")      # `s` streams
MAIN_OPS, SIDEBAR_OPS = 350, 750

#: What the main thread may be told (documented UserErrors), by operation.
MAIN_ALLOWED = {
    "run": [r"^no workflow or component `\w+`", r"^no component `\w+` is loaded"],
    "stream": [r"^no workflow or component `s`", r"^no component `s` is loaded"],
    "unload": [r"^no component `\w+` is loaded"],
    "bad-compose": [r"^component `missing`|the local model path `/nonexistent/tiny` does not exist"],
}
#: The error replies the panel may get.
SIDEBAR_ALLOWED = [r"^no component `[^`]*` is loaded", r"^component `\w+` is running a job right now",
                   r"^a sidebar message must be an object", r"^unknown sidebar command",
                   r"^the sidebar command `\w+` takes the keys", r"^the sidebar command `\w+` needs `id`"]
MALFORMED = [{"command": "explode"}, {"command": "unload"}, {"command": "unload", "id": "a", "force": True},
             {"command": "refresh", "id": "a"}, {"command": "stop", "id": ""}, {"command": "unload", "id": ["a"]},
             {"id": "a"}, "unload a", None, 42, [], {"command": None}]


@pytest.fixture
def loads(monkeypatch):
    """Every text-generation driver that finished loading, to find any that was never freed."""
    seen = []
    original = TextGeneration.load

    def load(self):
        original(self)
        seen.append(self)

    monkeypatch.setattr(TextGeneration, "load", load)
    return seen


@pytest.fixture
def thread_errors(monkeypatch):
    """Exceptions that ended any thread (the sampler, a generation thread)."""
    caught = []
    monkeypatch.setattr(threading, "excepthook", lambda args: caught.append(
        f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}"))
    return caught


def block(cid: str, path, precision: bool = False, n: int = 2) -> str:
    return (f"  - id: {cid}\n    type: model\n    task: text-generation\n    model: {path}\n"
            f"    streaming: {'true' if cid == 's' else 'false'}\n" + ("    precision: float32\n" if precision else "") +
            f"    text: ${{input.prompt}}\n    params: {{max_output_length: {n}, temperature: 0}}\n")


class Quiet(StreamSink):
    pass


def row_problems(row: dict) -> list:
    """What is wrong with one snapshot row of a tiny text-generation model, if anything."""
    out = []
    if row.get("id") not in IDS + ("missing",) or row.get("type") != "model" or row.get("task") != "text-generation":
        out.append("identity")
    state = row.get("state")
    if state not in ("loading", "ready", "failed"):   # no `preload: false` here: `unloaded` is never shown
        out.append(f"state {state!r}")
    if state == "ready" and not (row["device"] == "cpu" and row["dtype"] == "float32" and row["parameters"] == 44192
                                 and row["memory_bytes"] > 0 and row["error"] == ""):
        out.append("a ready row without its model's figures")
    if state == "loading" and (row["device"] is not None or row["parameters"] is not None):
        out.append("a loading row with a model's figures")
    if state == "failed" and not row["error"]:
        out.append("a failed row without its error")
    return [f"{p}: {row}" for p in out]


def between_ops_problems(registry) -> list:
    """Between two main-thread operations nothing loads or runs: every entry is ready and loaded."""
    out = []
    with registry.lock:
        if registry.loading:
            out.append(f"left in loading: {list(registry.loading)}")
        for cid, e in registry.entries.items():
            if e.state is not State.READY or e.driver is None or not hasattr(e.driver, "model") or e.runs:
                out.append(f"`{cid}` is {e.state.value}, driver {type(e.driver).__name__}, runs {e.runs}")
    return out


@pytest.mark.slow
def test_sidebar_commands_from_another_thread_interleaved_with_composes_runs_and_unloads(
        models, registry, manager, loads, thread_errors):
    path = models["causal"]
    threads_before = {t.ident for t in threading.enumerate()}
    panel, connection = fast_panel(manager, registry, sample_seconds=0.01)
    main_rng, side_rng = random.Random(2024), random.Random(7)
    problems, counts = [], Counter()
    main_done = threading.Event()

    def sidebar_thread() -> None:
        for i in range(SIDEBAR_OPS):
            kind = side_rng.choice(["refresh", "keepalive", "unload", "unload", "stop", "malformed"])
            message = (side_rng.choice(MALFORMED) if kind == "malformed" else
                       {"command": kind} if kind in ("refresh", "keepalive") else
                       {"command": kind, "id": side_rng.choice(IDS + ("zzz",))})
            try:
                panel.send(message)
            except Exception as e:   # the handler re-raises only what is not a UserError: a bug
                problems.append(f"sidebar {message!r}: {type(e).__name__}: {e}")
            counts["sidebar " + kind] += 1
            if not main_done.is_set():
                time.sleep(side_rng.uniform(0, 0.004))

    side = threading.Thread(target=sidebar_thread, name="test-sidebar-commands")
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)            # many more thread switches than the default 5 ms
    gc.freeze()     # every unload collects garbage: leave the imported libraries' objects out of it
    started = time.perf_counter()
    side.start()
    try:
        for i in range(MAIN_OPS):
            kind = main_rng.choice(["compose", "compose", "run", "run", "stream", "unload", "bad-compose"])
            try:
                if kind in ("compose", "bad-compose"):
                    ids = main_rng.sample(IDS, main_rng.randint(1, 3))
                    text = "components:\n" + "".join(block(c, path, main_rng.random() < 0.3, main_rng.choice((2, 3)))
                                                     for c in ids)
                    if kind == "bad-compose":
                        text += block("missing", "/nonexistent/tiny")
                        with pytest.raises(UserError):
                            mc.compose(text, registry=registry)
                    else:
                        mc.compose(text, registry=registry)
                elif kind == "run":
                    out = mc.run(main_rng.choice(IDS[:3]), {"prompt": "Hi"}, registry=registry).output
                    assert isinstance(out, str) and out
                elif kind == "stream":
                    out = mc.run("s", {"prompt": "Hi"}, stream=Quiet(), registry=registry).output
                    assert isinstance(out, str) and out
                else:
                    mc.unload(main_rng.choice(IDS), registry=registry)
                counts["main " + kind] += 1
            except UserError as e:
                if not any(re.search(p, str(e)) for p in MAIN_ALLOWED.get(kind, [])):
                    problems.append(f"main {kind}: {type(e).__name__}: {e}")
                counts["main " + kind + " refused"] += 1
            problems += [f"after main op {i} ({kind}): {p}" for p in between_ops_problems(registry)]
    finally:
        main_done.set()
        side.join(timeout=60)
        sys.setswitchinterval(switch)
        gc.unfreeze()
    seconds = time.perf_counter() - started
    assert not side.is_alive()

    # -- what the panel saw ----------------------------------------------------------------------
    snapshots = panel.received("snapshot")
    for snapshot in snapshots:
        ids = [row["id"] for row in snapshot["components"]]
        if len(ids) != len(set(ids)):
            problems.append(f"a snapshot lists an id twice: {ids}")
        for row in snapshot["components"]:
            problems += row_problems(row)
        if not snapshot["memory"]["process_rss"] > 0:
            problems.append("a snapshot without memory")
    for error in panel.received("error"):
        if not any(re.search(p, error["message"]) for p in SIDEBAR_ALLOWED):
            problems.append(f"sidebar error reply: {error['message']}")
    problems += thread_errors

    # -- every model ever loaded is in the registry or freed ---------------------------------------
    held = {id(e.driver) for e in registry.entries.values()}
    problems += [f"`{d.component_id}` was loaded, is not in the registry, and was never freed"
                 for d in loads if id(d) not in held and hasattr(d, "model")]
    total = sum(v for k, v in counts.items() if not k.endswith("refused"))
    summary = f"{total} operations in {seconds:.1f} s ({dict(sorted(counts.items()))}), {len(snapshots)} snapshots"
    distinct = list(dict.fromkeys(problems))
    assert problems == [], summary + f"\n{len(distinct)} problems, the first 40:\n" + "\n".join(distinct[:40])
    assert total >= 1000 and seconds < 60, summary

    # -- the last operations decide what is left ---------------------------------------------------
    mc.compose("components:\n" + "".join(block(c, path) for c in IDS), registry=registry)
    panel.send({"command": "unload", "id": "a"})
    panel.send({"command": "stop", "id": "c"})
    mc.unload("b", registry=registry)
    assert sorted(registry.entries) == ["s"] and between_ops_problems(registry) == []
    assert [r["id"] for r in panel.received("snapshot")[-1]["components"]] == ["s"]
    assert mc.run("s", {"prompt": "Hi"}, stream=Quiet(), registry=registry).output

    # -- no thread left behind ---------------------------------------------------------------------
    panel.close()
    assert connection.closed and not connection._sampler.is_alive() and registry._listeners == []
    deadline = time.monotonic() + 5
    # tqdm's one monitor thread per process (started by the first progress bar a load shows) is not ours
    def new_threads():
        return [t.name for t in threading.enumerate() if t.ident not in threads_before and t.name != "tqdm_monitor"]
    while time.monotonic() < deadline and new_threads():
        time.sleep(0.02)
    assert new_threads() == []


# -- the storm's findings, reduced to one deterministic sequence each --------------------------------
def test_an_unload_from_the_panel_while_a_compose_loads_leaves_no_half_made_entry(models, registry, manager):
    """The panel's unload of a component that a running compose reuses (it arrives while the compose
    loads another one): afterwards the component is either gone or loaded, never `loading` without a model."""
    path = models["causal"]
    mc.compose("components:\n" + block("a", path), registry=registry)
    panel, connection = fast_panel(manager, registry, sample_seconds=60)
    registry.subscribe(lambda kind, data: kind == "loading" and data.get("id") == "b" and
                       panel.send({"command": "unload", "id": "a"}))
    mc.compose("components:\n" + block("a", path) + block("b", path), registry=registry)   # `a` reused
    assert panel.received("error") == []
    assert between_ops_problems(registry) == []
    assert [row["state"] for row in registry.snapshot()] == ["ready"] * len(registry.entries)


def test_a_component_loaded_on_its_first_run_is_not_left_loading_and_leaves_no_row_once_unloaded(models, registry):
    """`preload: false`: the run loads it (Registry.ensure_loaded); afterwards nothing is `loading`,
    and once unloaded it has no row."""
    mc.compose("components:\n" + block("a", models["causal"]).replace("    text:", "    preload: false\n    text:"),
               registry=registry)
    assert mc.run("a", {"prompt": "Hi"}, registry=registry).output
    assert registry.loading == {}
    registry.unload("a")
    assert registry.snapshot() == []


def test_an_unload_from_the_panel_just_as_a_run_starts_does_not_load_the_model_again_outside_the_registry(
        models, registry, manager, loads):
    """The panel's unload handled just after a run found its component, before it marked it in use
    (engine.run, between resolve_target and registry.use): the run may fail ("not loaded") or the
    unload may be refused ("running a job"), but no model may be loaded again outside the registry."""
    import mc_jupyter.engine as engine
    mc.compose("components:\n" + block("a", models["causal"]), registry=registry)
    panel, connection = fast_panel(manager, registry, sample_seconds=60)
    source, first = inspect.getsourcelines(engine.run)
    line = first + next(i for i, text in enumerate(source) if "registry.use(component.id)" in text)
    sent = []

    def tracer(frame, event, arg):
        if frame.f_code is not engine.run.__code__:
            return None

        def local(frame, event, arg):
            if event == "line" and frame.f_lineno == line and not sent:
                sent.append(True)
                panel.send({"command": "unload", "id": "a"})    # as the subshell thread would, right then
            return local
        return local

    sys.settrace(tracer)
    try:
        try:
            mc.run("a", {"prompt": "Hi"}, registry=registry)
        except UserError as e:
            assert re.search(r"no component `a` is loaded|no workflow or component `a`", str(e)), str(e)
    finally:
        sys.settrace(None)
    assert sent
    held = {id(e.driver) for e in registry.entries.values()}
    assert [d.component_id for d in loads if id(d) not in held and hasattr(d, "model")] == []
    assert registry.loading == {} and between_ops_problems(registry) == []


def test_a_failed_compose_frees_its_new_models_only_after_they_left_the_panels_snapshot(models, registry,
                                                                                          monkeypatch):
    """A compose that loads `fresh` and then fails on `missing` frees `fresh`; a snapshot the panel takes
    while it is being freed (from its own thread, any time) must not show it as an `unloaded` row."""
    import mc_jupyter.registry as registry_module
    seen = []
    original = registry_module._free

    def free(entry):
        seen.append(registry.snapshot())          # what the panel would read at that instant
        original(entry)
        seen.append(registry.snapshot())

    monkeypatch.setattr(registry_module, "_free", free)
    with pytest.raises(UserError):
        mc.compose("components:\n" + block("a", models["causal"]) + block("missing", "/nonexistent/tiny"),
                   registry=registry)
    assert seen and all(snapshot == [] for snapshot in seen), seen
    assert registry.entries == {} and registry.loading == {}


def test_two_first_runs_at_once_load_a_preload_false_component_once(models, registry):
    """Two threads run a `preload: false` component at the same moment: the second waits for the first's
    load and uses it (one load, the same greedy text), instead of loading it again or failing."""
    mc.compose("components:\n" + block("a", models["causal"]).replace("    text:", "    preload: false\n    text:"),
               registry=registry)
    start, outputs, errors = threading.Barrier(2), [], []

    def one():
        start.wait()
        try:
            outputs.append(mc.run("a", {"prompt": "Hi"}, registry=registry).output)
        except BaseException as e:   # reported below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(outputs) == 2 and outputs[0] == outputs[1] and outputs[0]
    assert registry.entries["a"].load_count == 1 and registry.entries["a"].state is State.READY
