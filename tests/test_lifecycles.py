"""The two guarded state machines: a managed server's (:mod:`mc_jupyter.servers.managed`) and a registry
entry's (:meth:`mc_jupyter.registry.Entry.move`); what they report reaches ``snapshot()``."""

import itertools
import sys
import threading
import time

import pytest

import mc_jupyter as mc
from mc_jupyter.errors import ConfigError, NotLoadedError, ServerError, WorkflowError
from mc_jupyter.registry import MOVES, Entry, State, not_loaded
from mc_jupyter.servers.managed import ManagedServer, ServerState
from mc_jupyter.workflows import order
from tests.test_servers import SERVER, free_port, gone, server_yaml


@pytest.fixture(autouse=True)
def install_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def server(port: int, *extra: str, ready_timeout: float = 20) -> ManagedServer:
    return ManagedServer("llm", [sys.executable, SERVER, "--port", str(port), *extra], "127.0.0.1", port,
                         ready_timeout=ready_timeout)


# -- the managed server ------------------------------------------------------------------------------
def test_a_server_starts_once_and_stops_once():
    s = server(free_port())
    assert s.state is ServerState.STOPPED and s.info()["server_state"] == "stopped"
    s.stop()                                            # never started: nothing to do
    assert s.state is ServerState.STOPPED
    s.start()
    try:
        assert s.state is ServerState.RUNNING and s.info()["server_state"] == "running"
        with pytest.raises(RuntimeError, match=r"^Cannot start server `llm` again: it is already running\. "
                                               r"A server starts once; compose it again to start a new one\.$"):
            s.start()
        assert s.state is ServerState.RUNNING and s.process.alive()
    finally:
        s.stop()
    pid = s.process.pid
    assert s.state is ServerState.STOPPED and gone(pid)
    s.stop()                                            # stopping a stopped server does nothing
    assert s.state is ServerState.STOPPED
    with pytest.raises(RuntimeError, match=r"^Cannot start server `llm` again: it has been stopped\."):
        s.start()


def test_a_server_whose_start_fails_is_failed_and_stays_failed():
    s = server(free_port(), "--exit-early")
    with pytest.raises(ServerError, match=r"exited \(code 2\) before it was ready"):
        s.start()
    info = s.info()
    assert s.state is ServerState.FAILED and info["server_state"] == "failed"
    assert info["server_error"].startswith("server `llm` exited (code 2) before it was ready")
    s.stop()                                            # the tree is already gone; the state says why
    assert s.state is ServerState.FAILED and not s.process.alive()
    with pytest.raises(RuntimeError, match=r"^Cannot start server `llm` again: it has failed\."):
        s.start()


@pytest.mark.parametrize("now, to", [(a, b) for a, b in itertools.product(ServerState, ServerState)
                                     if b is not ServerState.STARTING])
def test_every_server_move_outside_the_table_raises_a_sentence(now, to):
    s = server(1)
    s.state = now
    if to in {ServerState.STOPPED: set(), ServerState.STARTING: {ServerState.RUNNING, ServerState.FAILED,
                                                                 ServerState.STOPPED},
              ServerState.RUNNING: {ServerState.STOPPED}, ServerState.FAILED: set()}[now]:
        s._move(to)
        assert s.state is to
    else:
        with pytest.raises(RuntimeError, match=f"^Cannot move server `llm` from {now.value} to {to.value}\\.$"):
            s._move(to)
        assert s.state is now


def test_a_server_that_exits_by_itself_reads_stopped():
    s = server(free_port())
    s.start()
    s.process.stop()                                    # as if it died: the watchdog's tree is gone
    assert s.state is ServerState.RUNNING
    assert s.info()["server_state"] == "stopped" and s.state is ServerState.STOPPED
    s.stop()


# -- what the registry shows -------------------------------------------------------------------------
def test_a_server_seen_while_it_starts_shows_starting_then_running(registry):
    port, seen, done = free_port(), [], threading.Event()

    def watch():
        while not done.is_set():
            seen.extend(row["state"] for row in registry.snapshot())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        mc.compose(server_yaml(port, "--start-after=1.5"), registry=registry)
    finally:
        done.set()
        watcher.join()
    assert "starting" in seen and set(seen) <= {"loading", "starting", "running"}, seen
    [row] = registry.snapshot()
    assert row["state"] == "running" and row["error"] == ""
    pid = registry.entries["llm"].driver.process.pid
    registry.unload("llm")
    assert gone(pid)


def test_a_server_whose_start_fails_shows_failed_and_then_nothing(registry):
    rows = []
    registry.subscribe(lambda kind, data: kind == "failed" and rows.extend(registry.snapshot()))
    with pytest.raises(ServerError, match=r"exited \(code 2\) before it was ready"):
        mc.compose(server_yaml(free_port(), "--exit-early"), registry=registry)
    [row] = rows
    assert row["id"] == "llm" and row["state"] == "failed"
    assert row["error"].startswith("server `llm` exited (code 2) before it was ready")
    assert registry.snapshot() == [] and registry.loading == {}


# -- the registry entry ------------------------------------------------------------------------------
def entry() -> Entry:
    config = mc.read_config("component:\n  id: c\n  type: http-client\n  endpoint: http://127.0.0.1:1/x\n")
    return Entry("c", config.components["c"], {}, "fingerprint")


@pytest.mark.parametrize("now, to", list(itertools.product(State, State)))
def test_every_entry_move_is_checked_against_the_table(now, to):
    e = entry()
    e.state = now
    if to in MOVES[now]:
        e.move(to, "boom" if to is State.FAILED else "")
        assert e.state is to and e.error == ("boom" if to is State.FAILED else "")
        return
    with pytest.raises(RuntimeError) as info:
        e.move(to)
    assert e.state is now
    if now is State.READY and to is State.LOADING:
        assert str(info.value) == ("Cannot load component `c` again while it is loaded: unload it first (a changed "
                                   "compose loads a new entry in its place).")
    else:
        assert str(info.value).startswith(f"Cannot move component `c` from {now.value} to {to.value}")


def test_the_legal_entry_moves():
    assert MOVES == {State.LOADING: {State.READY, State.FAILED, State.UNLOADED}, State.READY: {State.UNLOADED},
                     State.FAILED: {State.LOADING, State.UNLOADED}, State.UNLOADED: {State.LOADING}}
    e = entry()
    for to in (State.FAILED, State.LOADING, State.READY, State.UNLOADED, State.LOADING):   # a retry, an unload, a run
        e.move(to, "boom" if to is State.FAILED else "")
    assert e.state is State.LOADING and e.error == ""


def test_no_component_loaded_is_one_error_for_get_and_unload(registry):
    mc.compose("component:\n  id: client\n  type: http-client\n  endpoint: http://127.0.0.1:1/x\n", registry=registry)
    for call, hint in ((lambda: registry.get("clinet"), "Loaded: `client`. Compose it first."),
                       (lambda: registry.unload("clinet"), "Loaded: `client`.")):
        with pytest.raises(NotLoadedError) as info:
            call()
        assert isinstance(info.value, WorkflowError) and isinstance(info.value, ConfigError)
        assert str(info.value) == f"no component `clinet` is loaded (did you mean `client`?)\n  {hint}"
    assert str(not_loaded("x", [])) == "no component `x` is loaded\n  Loaded: none."


def test_workflow_order_is_written_order_or_a_checked_topological_one():
    config = mc.read_config("""
component: {id: c, type: http-client, endpoint: "http://127.0.0.1:1/x"}
workflows:
  - id: plain
    jobs: [{id: a, component: c}, {id: b, component: c}]
  - id: deps
    jobs: [{id: a, component: c, depends_on: [b]}, {id: b, component: c}]
  - id: loop
    jobs: [{id: a, component: c, depends_on: [b]}, {id: b, component: c, depends_on: [a]}]
""")
    flows = config.workflows
    assert order(flows["plain"], config.positions) == ["a", "b"]
    assert order(flows["deps"], config.positions) == ["b", "a"]
    with pytest.raises(WorkflowError, match=r"in a cycle: a -> b -> a"):
        order(flows["loop"], config.positions)
