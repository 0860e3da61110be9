"""The sidebar's comm, kernel side: snapshots, pushes, commands, refusals, the sampling thread.

Most tests drive the comm package's own CommManager (the one ipykernel subclasses) with the
messages a frontend sends, against real registries holding the tiny models; the last one talks to
a real kernel process over ZMQ, as JupyterLab does.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import comm
import pytest
from comm.base_comm import BaseComm, CommManager

import mc_jupyter as mc
from mc_jupyter import activity, sidebar
from mc_jupyter.binding import read_env
from mc_jupyter.registry import State

ROOT = Path(__file__).resolve().parent.parent

WRITER = """
component:
  id: writer
  type: model
  task: text-generation
  model: {path}
  text: ${{input.prompt}}
"""


class RecordingComm(BaseComm):
    """A kernel-side comm whose messages to the frontend are kept, JSON-encoded as on the wire."""

    def __init__(self, *args, **kwargs):
        self.published = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.published.append((msg_type, json.loads(json.dumps(data))))


class Frontend:
    """What a panel does, as messages through the kernel's CommManager."""

    def __init__(self, manager: CommManager):
        self.manager, self.comm_id = manager, uuid.uuid4().hex

    def _deliver(self, handler, **content):
        handler(None, None, {"content": {"comm_id": self.comm_id, **content}})

    def open(self) -> "Frontend":
        self._deliver(self.manager.comm_open, target_name=sidebar.TARGET, data={})
        self.kernel_comm: RecordingComm = self.manager.comms[self.comm_id]
        return self

    def send(self, data) -> None:
        self._deliver(self.manager.comm_msg, data=data)

    def close(self) -> None:
        self._deliver(self.manager.comm_close, data={})

    def received(self, kind=None) -> list:
        """The data of every comm_msg the kernel sent, oldest first (of one ``type`` if given)."""
        return [d for t, d in self.kernel_comm.published if t == "comm_msg" and kind in (None, d["type"])]


@pytest.fixture
def manager(monkeypatch):
    """A fresh comm manager standing in for the kernel's, creating recording comms."""
    fresh = CommManager()
    monkeypatch.setattr(comm, "get_comm_manager", lambda: fresh)
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    yield fresh
    for connection in sidebar.open_connections():
        connection.close()


@pytest.fixture
def panel(manager, registry):
    """An open panel talking to ``registry``."""
    sidebar.register(registry)
    return Frontend(manager).open()


def compose_writer(registry, models):
    return mc.compose(WRITER.format(path=models["causal"]), registry=registry)


def eventually(condition, timeout: float = 5.0) -> bool:
    """Whether ``condition()`` holds within ``timeout`` seconds (threads are at work)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def fast_panel(manager, registry, **timing):
    """An open panel whose connection samples (and leases) on a test's time scale."""
    frontend = Frontend(manager)
    frontend.kernel_comm = RecordingComm(comm_id=frontend.comm_id, target_name=sidebar.TARGET, primary=False)
    manager.register_comm(frontend.kernel_comm)
    return frontend, sidebar.SidebarConnection(frontend.kernel_comm, registry, **timing)


def test_load_ext_registers_the_target_and_one_beacon_for_comm_info(manager, ip):
    ip.run_line_magic("reload_ext", "mc_jupyter")   # the `ip` fixture loaded it once already
    assert sidebar.TARGET in manager.targets
    listed = [c for c in manager.comms.values() if c.target_name == sidebar.TARGET]
    assert len(listed) == 1
    assert listed[0].published == []     # the beacon sends nothing


def test_opening_the_panel_sends_a_snapshot_of_components_and_memory(models, registry, manager):
    compose_writer(registry, models)
    sidebar.register(registry)
    panel = Frontend(manager).open()

    first = panel.received()[0]
    assert first["type"] == "snapshot"
    [row] = first["components"]
    assert row["id"] == "writer" and row["type"] == "model" and row["task"] == "text-generation"
    assert row["driver"] == "huggingface" and row["device"] == "cpu" and row["dtype"] == "float32"
    assert row["state"] == "ready" and row["load_seconds"] > 0
    assert row["memory_bytes"] == registry.entries["writer"].driver.memory_bytes > 0
    memory = first["memory"]
    assert memory["host"]["total"] >= memory["host"]["available"] > 0
    assert memory["process_rss"] > 0
    assert memory["gpus"] == [] and memory["gpus_known"] is True    # torch is imported; no CUDA here


def test_the_panel_hears_of_a_load_as_it_starts_and_ends_and_of_an_unload(models, registry, panel):
    assert panel.received("snapshot")[0]["components"] == []

    compose_writer(registry, models)
    states = [[c["state"] for c in s["components"]] for s in panel.received("snapshot")[1:]]
    assert states == [["loading"], ["ready"]]

    registry.unload("writer")
    assert panel.received("snapshot")[-1]["components"] == []



def test_a_chat_s_activity_marks_show_on_its_card_as_they_change(models, registry, panel):
    compose_writer(registry, models)
    before = len(panel.received("snapshot"))

    token = activity.begin("writer", "chat")
    activity.change(token, "chat: generating")
    other = activity.begin("nobody-loaded", "chat")    # a mark on a component not loaded shows nowhere
    activity.end(token)
    activity.end(other)

    marks = [[c["activity"] for c in s["components"]] for s in panel.received("snapshot")[before:]]
    assert marks == [[["chat"]], [["chat: generating"]], [[]]]      # one snapshot per change on a card
    panel.close()
    leftover = activity.begin("writer", "chat")       # a closed panel hears nothing more
    activity.end(leftover)
    assert len(panel.received("snapshot")) == before + 3


@pytest.mark.slow
@pytest.mark.parametrize("command", ["unload", "stop"])
def test_unload_and_stop_commands_free_the_component(models, registry, panel, command):
    compose_writer(registry, models)
    entry = registry.entries["writer"]

    panel.send({"command": command, "id": "writer"})

    assert registry.snapshot() == [] and entry.state is State.UNLOADED and entry.driver is None
    assert panel.received("snapshot")[-1]["components"] == []
    assert panel.received("error") == []


def test_refresh_sends_a_snapshot_and_keepalive_sends_nothing(models, registry, panel):
    compose_writer(registry, models)
    count = len(panel.received())
    panel.send({"command": "keepalive"})
    assert len(panel.received()) == count
    panel.send({"command": "refresh"})
    assert [c["id"] for c in panel.received()[-1]["components"]] == ["writer"]


REFUSED = [
    ({"command": "explode"}, "unknown sidebar command `explode`; the commands are `keepalive`, `refresh`, "
                             "`stop`, `unload`. Nothing was changed."),
    ({"command": "unlaod", "id": "writer"},
     "unknown sidebar command `unlaod` (did you mean `unload`?); the commands are `keepalive`, `refresh`, `stop`, "
     "`unload`. Nothing was changed."),
    ({"command": "unload"}, "the sidebar command `unload` takes the keys `command`, `id`; got `command`. "
                            "Nothing was changed."),
    ({"command": "unload", "id": "writer", "force": True},
     "the sidebar command `unload` takes the keys `command`, `id`; got `command`, `force`, `id`. Nothing was changed."),
    ({"command": "refresh", "id": "writer"}, "the sidebar command `refresh` takes the keys `command`; got "
                                             "`command`, `id`. Nothing was changed."),
    ({"command": "unload", "id": ""}, "the sidebar command `unload` needs `id`, a component id (a non-empty "
                                      "string); got ''. Nothing was changed."),
    ({"command": "stop", "id": ["writer"]}, "the sidebar command `stop` needs `id`, a component id (a non-empty "
                                            "string); got ['writer']. Nothing was changed."),
    ({"id": "writer"}, "a sidebar message must be an object with a `command` (one of `keepalive`, `refresh`, "
                       "`stop`, `unload`); got {'id': 'writer'}. Nothing was changed."),
    ("unload writer", "a sidebar message must be an object with a `command` (one of `keepalive`, `refresh`, "
                      "`stop`, `unload`); got 'unload writer'. Nothing was changed."),
    (None, "a sidebar message must be an object with a `command` (one of `keepalive`, `refresh`, `stop`, "
           "`unload`); got None. Nothing was changed."),
    ({"command": "unload", "id": "writr"}, "no component `writr` is loaded (did you mean `writer`?)\n  Loaded: "
                                           "`writer`."),
]


@pytest.mark.slow
@pytest.mark.parametrize("message, reply", REFUSED, ids=[repr(m)[:40] for m, _ in REFUSED])
def test_unknown_or_malformed_messages_get_an_error_reply_and_change_nothing(models, registry, panel, message,
                                                                              reply):
    compose_writer(registry, models)
    before, model = registry.snapshot(), registry.entries["writer"].driver.model
    sent = len(panel.received())

    panel.send(message)

    assert panel.received()[sent:] == [{"type": "error", "message": reply}]
    assert registry.snapshot() == before and registry.entries["writer"].driver.model is model


def test_a_secret_in_an_error_reply_is_masked(registry, panel, monkeypatch):
    monkeypatch.setenv("MC_SIDEBAR_TOKEN", "sk-sidebar-secret-123")
    read_env("MC_SIDEBAR_TOKEN")      # a value read through ${env.*} is a secret from then on
    panel.send({"command": "unload", "id": "sk-sidebar-secret-123"})
    [error] = panel.received("error")
    assert "sk-sidebar-secret" not in error["message"] and "no component `***` is loaded" in error["message"]


def test_memory_samples_arrive_while_open_and_the_thread_stops_on_close(registry, manager):
    panel, connection = fast_panel(manager, registry, sample_seconds=0.02)
    assert eventually(lambda: len(panel.received("memory")) >= 5)
    samples = panel.received("memory")
    assert samples[-1]["memory"]["process_rss"] > 0
    assert connection.samples == len(samples) and connection.sampling_cpu_seconds > 0

    panel.close()

    assert connection.closed and not connection._sampler.is_alive()
    assert connection not in sidebar.open_connections() and registry._listeners == []
    count = len(panel.received())
    time.sleep(0.1)
    registry.down()                     # a registry event after close reaches nobody
    assert len(panel.received()) == count


def test_a_change_no_event_told_of_is_sent_as_a_snapshot_with_the_next_sample(models, registry, manager):
    compose_writer(registry, models)
    panel, _ = fast_panel(manager, registry, sample_seconds=0.02)
    assert eventually(lambda: len(panel.received("memory")) >= 2)
    assert len(panel.received("snapshot")) == 1                  # unchanged rows: memory samples only

    registry.entries["writer"].driver.memory_bytes = 1234    # as a managed server that exits changes its row
    assert eventually(lambda: len(panel.received("snapshot")) == 2)
    assert panel.received("snapshot")[-1]["components"][0]["memory_bytes"] == 1234


def test_the_kernel_closes_a_comm_whose_panel_stopped_renewing_its_lease(registry, manager):
    panel, connection = fast_panel(manager, registry, sample_seconds=0.02, lease_seconds=0.4)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:           # a live panel: keepalives hold the comm open
        panel.send({"command": "keepalive"})
        time.sleep(0.05)
    assert not connection.closed

    assert eventually(lambda: connection.closed)  # a vanished one: the lease runs out
    connection._sampler.join(timeout=5)
    assert not connection._sampler.is_alive()
    assert panel.kernel_comm.published[-1] == ("comm_close", {"reason": "no message from the panel for 0.4 s"})
    assert panel.comm_id not in manager.comms and registry._listeners == []


# -- a real kernel, as JupyterLab talks to it ---------------------------------------------------
class Kernel:
    """A real IPython kernel process (this checkout's mc_jupyter, the tests' offline HF cache),
    driven over ZMQ; every IOPub message is kept so none is missed between calls."""

    def __init__(self):
        from jupyter_client.manager import start_new_kernel
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.manager, self.client = start_new_kernel(kernel_name="python3", startup_timeout=60,
                                                     env=dict(os.environ, PYTHONPATH=path))
        self.iopub, self._read = [], 0

    def _pull(self, timeout: float) -> None:
        import queue
        try:
            self.iopub.append(self.client.get_iopub_msg(timeout=timeout))
        except queue.Empty:
            pass

    def execute(self, code: str) -> str:
        """Run ``code``; its stdout (an error fails the test)."""
        msg_id = self.client.execute(code)
        reply = self.client.get_shell_msg(timeout=120)
        mine = lambda m: m["parent_header"].get("msg_id") == msg_id
        while not any(mine(m) and m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                      for m in self.iopub):
            self._pull(1)
        out = [m for m in self.iopub if mine(m)]
        assert reply["content"]["status"] == "ok", [m["content"] for m in out if m["msg_type"] == "error"]
        return "".join(m["content"]["text"] for m in out if m["msg_type"] == "stream")

    def send(self, msg_type: str, content: dict) -> None:
        self.client.shell_channel.send(self.client.session.msg(msg_type, content))

    def wait_for(self, comm_id: str, until, timeout: float = 30) -> list:
        """The comm's messages (data) from the kernel, up to the first for which ``until(data)`` holds."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self._read < len(self.iopub):
                msg = self.iopub[self._read]
                self._read += 1
                if msg["msg_type"] in ("comm_msg", "comm_close") and msg["content"].get("comm_id") == comm_id:
                    seen.append(msg["content"]["data"])
                    if until(msg["content"]["data"]):
                        return seen
            self._pull(0.5)
        raise AssertionError(f"no such message on comm {comm_id} within {timeout} s; saw {seen}")

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(models):
    k = Kernel()
    yield k
    k.stop()


def snapshot_with(state):
    return lambda d: d.get("type") == "snapshot" and [c["state"] for c in d["components"]] == state


@pytest.mark.slow
def test_a_real_kernel_serves_the_panel_over_zmq(kernel, models):
    comm_info = lambda: kernel.client.comm_info(target_name=sidebar.TARGET, reply=True)["content"]["comms"]
    assert comm_info() == {}                                     # not loaded: nothing listed
    kernel.execute("%load_ext mc_jupyter")
    assert len(comm_info()) == 1                                 # the beacon

    comm_id = uuid.uuid4().hex
    kernel.send("comm_open", {"comm_id": comm_id, "target_name": sidebar.TARGET, "data": {}})
    [snapshot] = kernel.wait_for(comm_id, snapshot_with([]))
    # GPUs are read through NVML, so the answer is known before torch is imported: no NVIDIA driver
    # here, so none (on a GPU machine NVML lists them)
    assert kernel.execute("import sys; print('torch' in sys.modules)").strip() == "False"
    assert snapshot["memory"]["gpus_known"] is True

    kernel.execute(f"%%compose\n{WRITER.format(path=models['causal']).strip()}")
    *_, ready = kernel.wait_for(comm_id, snapshot_with(["ready"]))
    assert ready["components"][0]["id"] == "writer" and ready["components"][0]["memory_bytes"] > 0

    kernel.send("comm_msg", {"comm_id": comm_id, "data": {"command": "frobnicate"}})
    *_, error = kernel.wait_for(comm_id, lambda d: d.get("type") == "error")
    assert error["message"].startswith("unknown sidebar command `frobnicate`")
    kernel.send("comm_msg", {"comm_id": comm_id, "data": {"command": "unload", "id": "writer"}})
    kernel.wait_for(comm_id, snapshot_with([]))
    assert kernel.execute("import mc_jupyter; print(mc_jupyter.REGISTRY.snapshot())").strip() == "[]"

    kernel.wait_for(comm_id, lambda d: d.get("type") == "memory", timeout=10)   # a sample every 1.5 s
    kernel.send("comm_close", {"comm_id": comm_id, "data": {}})
    threads = "import threading; print([t.name for t in threading.enumerate() if 'sidebar' in t.name])"
    assert kernel.execute(threads).strip() == "[]"
