"""Faults: a kernel interrupt in the middle of every long call, a kernel restart or shutdown with models
and servers up, a server that crashes mid-stream.

A kernel interrupt is what JupyterLab's stop button sends: SIGINT, which Python turns into a
KeyboardInterrupt in the main thread at the next bytecode. Here a watcher thread sends it
(``signal.pthread_kill`` of the main thread) once the call is provably under way. After each:
the KeyboardInterrupt reaches the caller, the registry is as it was before the call (same rows, same
entry, driver and model objects), what the call had loaded is freed, and the kernel goes on working.
One more test sweeps a KeyboardInterrupt over every line the registry runs during a compose
(``sys.settrace`` raising it, as a signal would land there), so no window of the compose is left out.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import textwrap
import threading
import traceback
import time
import weakref
from pathlib import Path

import psutil
import pytest

import mc_jupyter as mc
import mc_jupyter.registry as registry_module
from mc_jupyter.drivers.hf_generation import TextGeneration
from mc_jupyter.engine import StreamSink
from mc_jupyter.errors import UserError
from mc_jupyter.registry import State
from tests.test_server_orphans import execute
from tests.test_servers import SERVER, free_port, gone, server_yaml

ROOT = Path(__file__).resolve().parents[2]


# -- helpers -------------------------------------------------------------------------------------
def writer(cid: str, path, n: int = 3, streaming: bool = False, extra: str = "") -> str:
    return (f"  - id: {cid}\n    type: model\n    task: text-generation\n    model: {path}\n"
            f"    streaming: {'true' if streaming else 'false'}\n    text: ${{input.prompt}}\n"
            f"    params: {{max_output_length: {n}, temperature: 0}}\n{extra}")


def components(*blocks: str) -> str:
    return "components:\n" + "".join(blocks)


@contextlib.contextmanager
def interrupted(when=lambda: True, delay: float = 0.0, timeout: float = 60.0):
    """The body must end in a KeyboardInterrupt: SIGINT reaches the main thread ``delay`` seconds
    after ``when()`` first holds (polled from a watcher thread, as a user watching the cell would)."""
    main = threading.main_thread().ident
    done, fired = threading.Event(), threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            if when():
                if done.wait(delay):
                    return
                fired.set()
                signal.pthread_kill(main, signal.SIGINT)
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, name="test-interrupter", daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            yield info
    finally:
        done.set()
        watcher.join()
    assert fired.is_set(), "the call ended before the interrupt was sent"


class Frozen:
    """What the registry holds now, to compare after a fault: the rows and the very objects."""

    def __init__(self, registry):
        self.registry = registry
        with registry.lock:
            self.rows = registry.snapshot()
            self.entries = dict(registry.entries)
            self.drivers = {k: e.driver for k, e in registry.entries.items()}
            self.weights = {k: _weights(e.driver) for k, e in registry.entries.items()}
            self.workflows = dict(registry.workflows)
            self.target = registry.default_target

    def problems(self) -> list:
        r = self.registry
        out = []
        with r.lock:
            if r.snapshot() != self.rows:
                brief = lambda rows: [(row["id"], row["state"]) for row in rows]   # noqa: E731
                out.append(f"rows {brief(r.snapshot())} != {brief(self.rows)}")
            if r.entries.keys() != self.entries.keys():
                out.append(f"ids {sorted(r.entries)} != {sorted(self.entries)}")
            for k, e in r.entries.items():
                if k in self.entries and (e is not self.entries[k] or e.driver is not self.drivers[k]
                                          or _weights(e.driver) is not self.weights[k]):
                    out.append(f"`{k}` is not the same entry/driver/model object")
                if k in self.entries and (e.state is not State.READY or e.runs != 0):
                    out.append(f"`{k}` is {e.state} with runs={e.runs}")
            if r.workflows != self.workflows or r.default_target != self.target:
                out.append(f"workflows {list(r.workflows)}/{r.default_target} != {list(self.workflows)}/{self.target}")
            if r.loading:
                out.append(f"still loading: {list(r.loading)}")
        return out


def _weights(driver):
    return getattr(driver, "model", None) or getattr(driver, "pipeline", None) or getattr(driver, "process", None)


def generate_threads() -> list:
    return [t.name for t in threading.enumerate() if t.name.startswith("mc_jupyter-generate")]


def live(cls) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is cls)


@pytest.fixture
def loads(monkeypatch):
    """Every text-generation driver whose ``load`` was entered, in order."""
    seen = []
    original = TextGeneration.load

    def load(self):
        seen.append(self)
        tracer = sys.gettrace()     # the sweep below injects into the registry's lines only: the
        sys.settrace(None)          # load itself runs untraced (and fast)
        try:
            original(self)
        finally:
            sys.settrace(tracer)

    monkeypatch.setattr(TextGeneration, "load", load)
    return seen


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory, models):
    """A 90M-parameter Llama config with only one stored tensor: transformers initialises the rest,
    so its load takes a second or more of real from_pretrained work."""
    import torch
    import transformers
    from safetensors.torch import save_file
    from tests import tiny_models

    folder = tmp_path_factory.mktemp("slow-llama")
    transformers.LlamaConfig(vocab_size=400, hidden_size=1024, intermediate_size=4096, num_hidden_layers=6,
                             num_attention_heads=8, num_key_value_heads=4).save_pretrained(folder)
    tiny_models.build_tokenizer().save_pretrained(folder)
    save_file({"model.norm.weight": torch.ones(1024)}, str(folder / "model.safetensors"))
    return folder


class Collect(StreamSink):
    def __init__(self):
        self.chunks, self.finished, self.first = [], None, threading.Event()

    def chunk(self, text, tokens=None):
        self.chunks.append(text)
        self.first.set()

    def finish(self, interrupted=False):
        self.finished = interrupted


# -- (a) an interrupt while a model loads --------------------------------------------------------
@pytest.mark.slow
def test_an_interrupt_while_a_model_loads_frees_what_the_compose_loaded_and_changes_nothing(
        registry, models, slow_model, loads):
    from transformers import LlamaForCausalLM

    mc.compose(components(writer("keep", models["causal"]), writer("old", models["causal"])) +
               "workflows:\n  - id: w0\n    job: {component: keep}\n", registry=registry)
    before = Frozen(registry)
    expected = mc.run("keep", {"prompt": "Once upon"}, registry=registry).output
    llamas = live(LlamaForCausalLM)
    del loads[:]

    started, began = threading.Event(), []
    registry.subscribe(lambda kind, data: data.get("id") == "slow" and kind == "loading" and
                       (began.append(time.perf_counter()), started.set()))
    text = components(writer("keep", models["causal"]),                                   # reused
                      writer("old", models["causal"], extra="    precision: float32\n"),  # reloaded
                      writer("fresh", models["causal"]),                                  # new
                      writer("slow", slow_model)) + \
        "workflows:\n  - id: w1\n    job: {component: fresh}\n"
    with interrupted(started.is_set, delay=0.3) as info:
        mc.compose(text, registry=registry)
    seconds = time.perf_counter() - began[0]   # from the slow load's start (the loads before it vary with load)
    frames = [f.f_code.co_name for f, _ in traceback.walk_tb(info.value.__traceback__)]

    assert seconds < 0.3 + 1.0                                  # it stopped promptly, not after the load
    assert "from_pretrained" in frames                          # it landed inside the slow model's load
    assert before.problems() == []
    assert [d.component_id for d in loads] == ["old", "fresh", "slow"]
    assert all(not hasattr(d, "model") and not hasattr(d, "tokenizer") for d in loads)   # all freed
    refs = [weakref.ref(d) for d in loads]
    del loads[:], info
    assert live(LlamaForCausalLM) == llamas                     # no half-built model left anywhere
    assert all(r() is None for r in refs)
    # the kernel goes on: the old models answer as before, and the same compose now succeeds
    assert mc.run("keep", {"prompt": "Once upon"}, registry=registry).output == expected
    mc.compose(text.replace(writer("slow", slow_model), ""), registry=registry)
    assert sorted(registry.entries) == ["fresh", "keep", "old"]
    assert registry.entries["keep"].driver is before.drivers["keep"]


@pytest.mark.slow
def test_a_model_half_built_when_the_interrupt_came_is_freed_even_while_the_error_is_kept(registry, slow_model):
    """IPython keeps the last error (sys.last_traceback) until the next one; the frames of an interrupted
    from_pretrained must not keep the half-built model (on a GPU: its memory) alive through it."""
    from transformers import LlamaForCausalLM
    llamas = live(LlamaForCausalLM)
    started = threading.Event()
    registry.subscribe(lambda kind, data: kind == "loading" and started.set())
    with interrupted(started.is_set, delay=0.4) as info:
        mc.compose(components(writer("slow", slow_model)), registry=registry)
    kept = info.value                          # what IPython holds on to after the cell
    assert "from_pretrained" in [f.f_code.co_name for f, _ in traceback.walk_tb(kept.__traceback__)]
    assert live(LlamaForCausalLM) == llamas, "the half-built model lives on in the kept traceback's frames"
    assert registry.snapshot() == [] and registry.loading == {}


# -- the same, at every line the registry runs during a compose ---------------------------------
class InjectAt:
    """A kernel interrupt at the ``n``-th line executed in mc_jupyter/registry.py.

    A real one is SIGINT: Python calls the SIGINT handler installed right then, between two bytecodes
    of the main thread. So does this tracer: it calls ``signal.getsignal(SIGINT)`` (the default one
    raises KeyboardInterrupt; the registry's :mod:`mc_jupyter.interrupts` holds it back while models
    move into the registry or are freed, and raises it when that is done).
    """

    def __init__(self, n: int):
        self.n, self.count, self.where = n, 0, None

    FUNCTIONS = ("apply", "_apply", "_load", "_free")    # plan() and the compilers before them change nothing

    def __call__(self, frame, event, arg):
        code = frame.f_code
        return self.local if code.co_filename == registry_module.__file__ and code.co_name in self.FUNCTIONS else None

    def local(self, frame, event, arg):
        if event == "line":
            self.count += 1
            if self.count == self.n:
                self.where = f"registry.py:{frame.f_lineno} ({frame.f_code.co_name})"
                signal.getsignal(signal.SIGINT)(signal.SIGINT, frame)
        return self.local


@pytest.mark.slow
def test_an_interrupt_at_any_line_of_a_compose_leaves_the_registry_whole_and_frees_what_it_loaded(
        registry, models, loads):
    before_text = components(writer("keep", models["causal"]), writer("old", models["causal"])) + \
        "workflows:\n  - id: w0\n    job: {component: keep}\n"
    text = components(writer("keep", models["causal"]),
                      writer("old", models["causal"], extra="    precision: float32\n"),
                      writer("fresh", models["causal"])) + "workflows:\n  - id: w1\n    job: {component: fresh}\n"

    def fresh_start():
        registry.down()
        registry.loading.clear()    # down() leaves `loading` alone; what a broken point left there goes
        mc.compose(before_text, registry=registry)
        del loads[:]
        return Frozen(registry)

    def applied(before) -> list:
        r = registry
        out = []
        if sorted(r.entries) != ["fresh", "keep", "old"] or r.default_target != "w1" or sorted(r.workflows) != ["w0", "w1"]:
            return [f"not applied: {sorted(r.entries)} {sorted(r.workflows)} {r.default_target}"]
        if r.entries["keep"].driver is not before.drivers["keep"]:
            out.append("`keep` was reloaded")
        if r.entries["old"].driver is before.drivers["old"] or hasattr(before.drivers["old"], "model"):
            out.append("the replaced `old` is not freed")
        if any(e.state is not State.READY or not hasattr(e.driver, "model") for e in r.entries.values()):
            out.append("an entry is not ready")
        return out

    before = fresh_start()
    counter = InjectAt(0)
    sys.settrace(counter)
    try:
        mc.compose(text, registry=registry)
    finally:
        sys.settrace(None)
    total = counter.count
    assert applied(before) == [] and total > 30
    print(f"interrupting a compose at each of its {total} registry lines")

    failures = {}
    before = fresh_start()
    gc.freeze()     # each unload collects garbage: leave the imported libraries' objects out of it
    for n in range(1, total + 1):
        inject = InjectAt(n)
        sys.settrace(inject)
        try:
            mc.compose(text, registry=registry)
            outcome = "no interrupt"
        except KeyboardInterrupt:
            outcome = "interrupt"
        finally:
            sys.settrace(None)
        unchanged, done = before.problems(), applied(before)
        in_registry = {id(e.driver) for e in registry.entries.values()}
        leaked = [d.component_id for d in loads if id(d) not in in_registry and hasattr(d, "model")]
        bad = []
        if unchanged and done:
            bad.append(f"the registry is neither as before ({unchanged[0]}) nor as the compose makes it ({done[0]})")
        if leaked:
            bad.append(f"loaded but never freed: {leaked}")
        if registry.loading:
            bad.append(f"left in `loading`: {list(registry.loading)}")
        if bad:
            failures.setdefault(inject.where or outcome, "; ".join(bad))
        if unchanged or leaked:
            before = fresh_start()
        else:
            del loads[:]
    gc.unfreeze()
    assert failures == {}, f"{len(failures)} lines of the {total} run break the compose when interrupted:\n" + \
        "\n".join(f"{where}: {problem}" for where, problem in sorted(failures.items()))


# -- (b) a plain generation, (c) a stream --------------------------------------------------------
def test_an_interrupt_during_a_long_generation_reaches_the_caller_and_the_model_stays_usable(registry, models):
    mc.compose(components(writer("talker", models["causal"], n='"${input.n}"')), registry=registry)
    expected = mc.run(inputs={"prompt": "Hi", "n": 6}, registry=registry).output
    before = Frozen(registry)
    t0 = time.perf_counter()
    with interrupted(delay=0.5):
        mc.run(inputs={"prompt": "Hi", "n": 1000}, registry=registry)     # ~10 s of tokens
    assert time.perf_counter() - t0 < 0.5 + 1.0
    assert before.problems() == []                      # runs is back to 0: it can be unloaded again
    assert mc.run(inputs={"prompt": "Hi", "n": 6}, registry=registry).output == expected


def test_an_interrupt_during_a_stream_keeps_the_text_stops_the_thread_and_the_model_stays_usable(registry, models):
    mc.compose(components(writer("talker", models["causal"], n='"${input.n}"', streaming=True)), registry=registry)
    expected = mc.run(inputs={"prompt": "Hi", "n": 6}, stream=Collect(), registry=registry).output
    before = Frozen(registry)
    sink = Collect()
    with interrupted(sink.first.is_set, delay=0.2):
        mc.run(inputs={"prompt": "Hi", "n": 1000}, stream=sink, registry=registry)
    assert sink.finished is True and sink.chunks
    assert generate_threads() == []
    assert before.problems() == []
    assert mc.run(inputs={"prompt": "Hi", "n": 6}, stream=Collect(), registry=registry).output == expected


# -- (d) a diffusion run --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sdxl(tmp_path_factory, models):
    from tests import tiny_diffusion
    folder = tmp_path_factory.mktemp("tiny-sdxl")
    tiny_diffusion.sdxl().save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_an_interrupt_during_a_diffusion_run_leaves_the_pipeline_as_it_was(registry, sdxl):
    import numpy as np
    mc.compose(f"""
component:
  id: painter
  type: model
  task: image-generation
  architecture: sdxl
  model: {sdxl}
  device: cpu
  prompt: ${{input.prompt}}
  params: {{width: 64, height: 64, num_inference_steps: "${{input.steps}}", seed: 7}}
""", registry=registry)
    image = mc.run(inputs={"prompt": "a fox", "steps": 2}, registry=registry).output
    before = Frozen(registry)
    t0 = time.perf_counter()
    with interrupted(delay=1.0):
        mc.run(inputs={"prompt": "a fox", "steps": 5000}, registry=registry)
    assert time.perf_counter() - t0 < 1.0 + 2.0
    assert before.problems() == []
    again = mc.run(inputs={"prompt": "a fox", "steps": 2}, registry=registry).output
    assert np.array_equal(np.asarray(image), np.asarray(again))     # same seed, same image: nothing corrupted


# -- (e) a managed server that never gets ready ----------------------------------------------------
def processes_with(text: str) -> list:
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(p.info["cmdline"] or []):
            found.append(p.info["pid"])
    return found


def on_port(port: int) -> list:
    """Live (not zombie) processes whose arguments hold ``--port PORT``, e.g. a test server or its shell."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        words = " ".join(p.info["cmdline"] or []).split()
        if p.info["status"] != psutil.STATUS_ZOMBIE and any(a == "--port" and b.rstrip(";") == str(port)
                                                             for a, b in zip(words, words[1:])):
            found.append(p.info["pid"])
    return found


def watchdogs_of(server_pid: int) -> list:
    return [pid for pid in processes_with("mc_jupyter.servers.watchdog")
            if " ".join(psutil.Process(pid).cmdline()).endswith(f" {server_pid}")]


@pytest.mark.slow
def test_an_interrupt_while_a_server_starts_stops_its_process_group_and_frees_the_compose(registry, models, loads):
    mc.compose(components(writer("keep", models["causal"])), registry=registry)
    before = Frozen(registry)
    del loads[:]
    port = free_port()
    never_ready = yaml_server("llm", port, "--start-after=600", ready_timeout=600)
    servers = []

    def started() -> bool:   # the server process is up and its watchdog too: it is waiting to get ready
        servers[:] = on_port(port)
        return bool(servers) and bool(watchdogs_of(servers[0]))

    with interrupted(started, delay=0.3):
        mc.compose(components(writer("fresh", models["causal"]), never_ready), registry=registry)
    assert before.problems() == []
    assert [d.component_id for d in loads] == ["fresh"] and not hasattr(loads[0], "model")
    [pid] = servers
    assert gone(pid)                                          # the server and its whole group
    assert on_port(port) == [] and watchdogs_of(pid) == []    # and its watchdog
    # the kernel goes on: a server that does get ready starts on the same port and answers
    mc.compose(components(yaml_server("llm", port)), registry=registry)
    assert mc.run("llm", {"prompt": "still here"}, stream=Collect(), registry=registry).output == "You said: still here"
    pid = registry.entries["llm"].driver.process.pid
    registry.unload("llm")
    assert gone(pid)


def yaml_server(cid: str, port: int, *extra: str, ready_timeout: float = 20) -> str:
    import yaml
    component = yaml.safe_load(server_yaml(port, *extra, ready_timeout=ready_timeout))["component"]
    component["id"] = cid
    block = yaml.safe_dump([component], sort_keys=False)
    return textwrap.indent(block, "  ")


# -- a server that crashes mid-stream ---------------------------------------------------------------
def test_a_server_that_crashes_mid_stream_fails_the_run_with_its_last_log_lines(registry):
    port = free_port()
    mc.compose(server_yaml(port, "--crash-after=2"), registry=registry)
    sink = Collect()
    with pytest.raises(UserError) as info:
        mc.run(inputs={"prompt": "one two three four"}, stream=sink, registry=registry)
    assert sink.chunks == ["You", " said:"]                  # what came before the crash was shown
    message = str(info.value)
    assert "crashing mid-stream on purpose" in message, message   # the server's last log lines, in the error
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and registry.snapshot()[0]["state"] != "stopped":
        time.sleep(0.05)
    assert registry.snapshot()[0]["state"] == "stopped"


# -- kernel restart and shutdown with models and servers up ---------------------------------------
def bring_up(client, models) -> int:
    """A model and two servers (one behind a shell, so a grandchild) in the kernel; their ports."""
    ports = [free_port(), free_port()]
    shell = f"[bash, -c, '{sys.executable} {SERVER} --port {ports[1]}; true']"
    code = f"""
        import mc_jupyter as mc
        mc.compose('''
        components:
          - id: writer
            type: model
            task: text-generation
            model: {models['causal']}
            text: ${{input.prompt}}
            params: {{max_output_length: 3, temperature: 0}}
          - id: direct
            type: http-server
            manage: {{start: [{sys.executable}, {SERVER}, --port, {ports[0]}], ready_timeout: 20}}
            port: {ports[0]}
            path: /api/generate
            body: {{prompt: "${{input.prompt}}", stream: false}}
            output: ${{response.response}}
          - id: wrapped
            type: http-server
            manage: {{start: {shell}, ready_timeout: 20}}
            port: {ports[1]}
            path: /api/generate
            body: {{prompt: "${{input.prompt}}", stream: false}}
            output: ${{response.response}}
        ''')
        print(mc.run("direct", {{"prompt": "up"}}).output, mc.run("wrapped", {{"prompt": "up"}}).output,
              len(mc.run("writer", {{"prompt": "up"}}).output) > 0)
    """
    # what the cell printed, whatever else (a library's warning) reached its streams
    assert "You said: up You said: up True" in execute(client, code).splitlines()
    return ports


def no_process_left(processes, ports, within: float = 20.0) -> list:
    deadline = time.monotonic() + within
    while True:
        left = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        left += [psutil.Process(pid) for port in ports for pid in on_port(port)]
        if not left or time.monotonic() > deadline:
            return [" ".join(p.cmdline()) for p in left if p.is_running()]
        time.sleep(0.1)


@pytest.mark.slow
def test_a_kernel_restart_then_a_shutdown_with_models_and_servers_up_leave_no_process_behind(models):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), startup_timeout=60)
    try:
        for how in ("restart", "shutdown"):
            kernel = psutil.Process(km.provisioner.process.pid)
            ports = bring_up(kc, models)
            family = kernel.children(recursive=True)
            commands = [" ".join(p.cmdline()) for p in family]
            servers = [c for c in commands if "model_server.py" in c and not c.startswith("bash")]
            assert len(servers) == 2 and sum("servers.watchdog" in c for c in commands) == 2, commands
            if how == "restart":
                km.restart_kernel(now=False)
                kc.wait_for_ready(timeout=60)
                assert km.provisioner.process.pid != kernel.pid
            else:
                km.shutdown_kernel(now=False)
            assert no_process_left([kernel, *family], ports) == [], how
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)


def test_an_interrupt_inside_deferred_is_held_to_its_end_and_an_allowed_block_takes_it_at_once():
    from mc_jupyter.interrupts import allowed, deferred
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            signal.raise_signal(signal.SIGINT)       # a real SIGINT, as the kernel's interrupt sends
            steps.append("after the signal")         # still runs: the interrupt is held
    assert steps == ["after the signal"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            signal.raise_signal(signal.SIGINT)
            with allowed():                          # a load starts: the held interrupt is taken now
                steps.append("never")
    assert "never" not in steps and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        with deferred(), allowed():
            signal.raise_signal(signal.SIGINT)       # inside a load: at once
            steps.append("never")
    assert "never" not in steps
    with deferred():
        pass                                         # nothing came: nothing raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
