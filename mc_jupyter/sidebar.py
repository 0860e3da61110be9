"""Kernel side of the JupyterLab sidebar: one comm per open panel.

``%load_ext mc_jupyter`` calls :func:`register`. It registers the comm target ``mc_jupyter.sidebar``
and lists one idle *beacon* comm under it, so that a panel learns from a ``comm_info_request`` that
this kernel has the extension loaded, without opening anything (a comm opened to a target that is
not registered makes the kernel log an error). The panel then opens a comm to the target, and each
open comm gets a :class:`SidebarConnection`, which

* sends a ``snapshot`` at once, on ``refresh``, after every registry event (load, failure, unload), and
  after every change of an :mod:`mc_jupyter.activity` mark (a chat opened, a turn generating);
* sends a ``memory`` sample every ``SAMPLE_SECONDS`` from a thread of its own, while the comm is open
  (a ``snapshot`` instead when the components changed without an event, e.g. a server exited);
* runs the panel's ``unload`` and ``stop`` commands, and answers anything else with an ``error``,
  changing nothing.

A panel that goes away without closing its comm (a reloaded browser tab) stops renewing its lease:
after ``LEASE_SECONDS`` without any message from it, the kernel closes the comm and the thread ends.

Messages are the comm's ``data``; their shapes are declared once, below, as TypedDicts (the kernel's
:data:`KernelMessage` and the panel's :data:`Command`, with :class:`Component` and :class:`Memory`).
``labextension/src/model.ts`` declares the same, and ``tests/test_sidebar_contract.py`` checks that both
sides name the same kinds and fields, and that the messages this module really sends fit. Kernel to panel::

    {"type": "snapshot", "components": [Component, ...], "memory": Memory}
    {"type": "memory", "memory": Memory}
    {"type": "error", "message": "..."}
    comm_close {"reason": "..."}                  only when the lease ran out

Panel to kernel::

    {"command": "refresh"}                        send a snapshot now
    {"command": "keepalive"}                      renew the lease (the panel sends one every 20 s)
    {"command": "unload", "id": "chat"}           free a component (a model)
    {"command": "stop", "id": "llm-server"}       stop a managed server (it is unloaded)

A :class:`Component` row is :meth:`Entry.describe` (plain and secret-free) plus ``activity``, the
component's :func:`mc_jupyter.activity.activities` marks (``["chat: generating"]``); its ``state`` is one
of :data:`STATES`. :class:`Memory` is :func:`kernel_memory`. Every string sent is scrubbed too.

Threads: comm handlers run on a kernel subshell thread when the frontend uses subshells (JupyterLab
4.4+ with ipykernel 7 does: the panel asks ``comm_info_request`` and opens its comm on the comm
target's subshell, so a kernel busy running a cell answers at once), registry and activity events on
whichever thread changed them, samples on the connection's own thread (they reach the panel while the
main thread runs a cell: IOPub sends are thread-safe). The registry's lock guards its state; a
per-connection lock keeps sends whole and stops them at close.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, TypedDict, Union, get_args, get_type_hints

import comm

from . import activity
from .api import REGISTRY
from .secrets import scrub
from .devices import memory_snapshot
from .errors import UserError, choices_text, did_you_mean
from .registry import Registry, State

TARGET = "mc_jupyter.sidebar"
SAMPLE_SECONDS = 1.5
LEASE_SECONDS = 120.0


# -- the messages: the one declaration of their shapes (model.ts mirrors it) -------------------
class Host(TypedDict):
    total: int
    available: int


class Gpu(TypedDict):
    index: int
    name: str
    total: int
    used: int
    allocated_by_kernel: int


class Memory(TypedDict):
    """:func:`kernel_memory`. ``gpus_known``: whether an empty ``gpus`` means "no GPU"."""
    host: Host
    process_rss: int
    gpus: List[Gpu]
    gpus_known: bool


class Component(TypedDict):
    """One row: :meth:`mc_jupyter.registry.Entry.describe`, and ``activity``: what the kernel is doing
    with the component beyond its state (:func:`mc_jupyter.activity.activities`, oldest first)."""
    id: str
    type: str
    task: Optional[str]
    driver: Optional[str]
    model: Optional[str]
    store: Optional[str]           # a vector store: "12 vectors · 384-d · l2 · ./store"
    device: Optional[str]
    dtype: Optional[str]
    quantization: Optional[str]
    parameters: Optional[int]
    memory_bytes: Optional[int]
    placement: Optional[Dict[str, int]]
    state: str
    load_seconds: float
    error: str
    activity: List[str]


class Snapshot(TypedDict):
    type: Literal["snapshot"]
    components: List[Component]
    memory: Memory


class MemorySample(TypedDict):
    type: Literal["memory"]
    memory: Memory


class ErrorReply(TypedDict):
    type: Literal["error"]
    message: str


class Refresh(TypedDict):
    command: Literal["refresh"]


class Keepalive(TypedDict):
    command: Literal["keepalive"]


class Unload(TypedDict):
    command: Literal["unload"]
    id: str


class Stop(TypedDict):
    command: Literal["stop"]
    id: str


#: What the kernel sends (``type`` tells them apart).
KernelMessage = Union[Snapshot, MemorySample, ErrorReply]
#: What the panel sends (``command`` tells them apart); anything else is refused.
Command = Union[Refresh, Keepalive, Unload, Stop]

#: A component's ``state``: a model's (:class:`mc_jupyter.registry.State`) or a managed server's
#: (``ServerState`` of :mod:`mc_jupyter.servers`, which ``describe`` shows instead while it has one).
STATES: Tuple[str, ...] = tuple(s.value for s in State) + ("starting", "running", "stopped")


def _kinds(union: Any, tag: str) -> Dict[str, type]:
    """``{"snapshot": Snapshot, ...}``: each member of ``union`` by the literal value of its ``tag`` key."""
    return {get_args(get_type_hints(member)[tag])[0]: member for member in get_args(union)}


#: Each kernel message by its ``type``.
KERNEL_MESSAGES: Dict[str, type] = _kinds(KernelMessage, "type")
#: Each command the panel may send: the keys it takes besides ``command``.
COMMANDS: Dict[str, Tuple[str, ...]] = {name: tuple(k for k in get_type_hints(member) if k != "command")
                                        for name, member in _kinds(Command, "command").items()}

_CONNECTIONS: List["SidebarConnection"] = []
_CONNECTIONS_LOCK = threading.Lock()


def register(registry: Registry = REGISTRY) -> None:
    """Register the comm target and its beacon in this kernel (again is harmless)."""
    manager = comm.get_comm_manager()
    manager.register_target(TARGET, lambda channel, message: SidebarConnection(channel, registry))
    if not any(c.target_name == TARGET for c in list(manager.comms.values())):
        # primary=False: nothing is sent; the beacon only lists the target in comm_info replies.
        manager.register_comm(comm.create_comm(target_name=TARGET, primary=False))


def open_connections() -> List["SidebarConnection"]:
    """The panels this kernel is talking to now."""
    with _CONNECTIONS_LOCK:
        return list(_CONNECTIONS)


def parse_command(data: Any) -> Tuple[str, Optional[str]]:
    """``(command, component id or None)`` from a panel's message; a :class:`UserError` if it is not one."""
    valid = choices_text(COMMANDS)
    if not isinstance(data, dict) or not isinstance(data.get("command"), str):
        raise UserError(f"a sidebar message must be an object with a `command` (one of {valid}); "
                        f"got {_preview(data)}. Nothing was changed.")
    name = data["command"]
    if name not in COMMANDS:
        raise UserError(f"unknown sidebar command `{name[:80]}`{did_you_mean(name, COMMANDS)}; "
                        f"the commands are {valid}. Nothing was changed.")
    wanted = {"command", *COMMANDS[name]}
    if set(data) != wanted:
        raise UserError(f"the sidebar command `{name}` takes the keys {choices_text(wanted)}; got "
                        f"{choices_text(data)}. Nothing was changed.")
    component_id = data.get("id")
    if "id" in wanted and (not isinstance(component_id, str) or not component_id):
        raise UserError(f"the sidebar command `{name}` needs `id`, a component id (a non-empty string); "
                        f"got {_preview(component_id)}. Nothing was changed.")
    return name, component_id


def component_rows(registry: Registry = REGISTRY) -> List[Component]:
    """The registry's rows, each with its component's activity marks."""
    return [Component(**row, activity=activity.activities(row["id"])) for row in registry.snapshot()]


def kernel_memory() -> Memory:
    """:func:`memory_snapshot`: host RAM, the kernel's RSS, each GPU through NVML (no CUDA context made),
    and ``gpus_known``: whether its GPU list means anything (NVML answered, or there is no NVIDIA driver).
    Each GPU's ``processes`` (for the status table) is left out: the panel does not show them."""
    memory = memory_snapshot()
    memory["gpus"] = [{k: v for k, v in gpu.items() if k != "processes"} for gpu in memory["gpus"]]
    return memory


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _scrubbed(value: Any) -> Any:
    """``value`` with every secret read through ``${env.*}`` masked in its strings."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


class SidebarConnection:
    """One open panel: snapshots on registry events, memory samples on a thread, the panel's commands."""

    def __init__(self, channel: Any, registry: Registry = REGISTRY, *, sample_seconds: float = SAMPLE_SECONDS,
                 lease_seconds: float = LEASE_SECONDS, memory: Callable[[], Memory] = kernel_memory):
        self.channel, self.registry, self.memory = channel, registry, memory
        self.sample_seconds, self.lease_seconds = sample_seconds, lease_seconds
        self.samples, self.sampling_cpu_seconds = 0, 0.0   # the thread's own CPU time (docs/sidebar.md)
        self._send_lock = threading.Lock()
        self._closed = threading.Event()
        self._renewed = time.monotonic()
        self._sent_rows: List[Component] = []
        self._sampler = threading.Thread(target=self._sample, name=f"mc_jupyter-sidebar-{channel.comm_id[:8]}",
                                         daemon=True)
        with _CONNECTIONS_LOCK:
            _CONNECTIONS.append(self)
        self._unsubscribe = registry.subscribe(lambda kind, data: self.send_snapshot())
        self._unsubscribe_activity = activity.subscribe(self._send_if_changed)   # marks of loaded ones
        channel.on_msg(self._on_message)
        channel.on_close(lambda message: self.close())
        self.send_snapshot()
        self._sampler.start()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- kernel to panel -----------------------------------------------------------------------
    def send(self, data: KernelMessage) -> None:
        with self._send_lock:
            if not self._closed.is_set():
                self.channel.send(_scrubbed(data))

    def send_snapshot(self) -> None:
        rows = component_rows(self.registry)
        self._sent_rows = rows
        self.send(Snapshot(type="snapshot", components=rows, memory=self.memory()))

    def _send_if_changed(self) -> None:
        """A snapshot if the rows differ from the last one sent (an activity mark on a loaded component)."""
        if component_rows(self.registry) != self._sent_rows:
            self.send_snapshot()

    def send_memory(self) -> None:
        self.send(MemorySample(type="memory", memory=self.memory()))

    def _sample(self) -> None:
        while not self._closed.wait(self.sample_seconds):
            if time.monotonic() - self._renewed > self.lease_seconds:
                self.close(reason=f"no message from the panel for {self.lease_seconds:g} s")
                return
            started = time.thread_time()
            if component_rows(self.registry) != self._sent_rows:   # a change no event told of: a server that exited
                self.send_snapshot()
            else:
                self.send_memory()
            self.samples += 1
            self.sampling_cpu_seconds += time.thread_time() - started

    # -- panel to kernel -----------------------------------------------------------------------
    def _on_message(self, message: Dict[str, Any]) -> None:
        self._renewed = time.monotonic()
        try:
            name, component_id = parse_command(message.get("content", {}).get("data"))
            if name == "refresh":
                self.send_snapshot()
            elif name in ("unload", "stop"):   # a managed server is a component too: stopping frees it
                self.registry.unload(component_id)
        except UserError as e:
            self.send(ErrorReply(type="error", message=str(e)))
        except Exception as e:   # a bug: the panel hears of it, the kernel log keeps the traceback
            self.send(ErrorReply(type="error", message=f"the sidebar command failed: {type(e).__name__}: {e}"))
            raise

    # -- closing -------------------------------------------------------------------------------
    def close(self, reason: str = "") -> None:
        """Stop sampling and listening; ``reason`` (kernel side only) also closes the panel's comm."""
        with self._send_lock:
            if self._closed.is_set():
                return
            self._closed.set()
        self._unsubscribe()
        self._unsubscribe_activity()
        with _CONNECTIONS_LOCK:
            if self in _CONNECTIONS:
                _CONNECTIONS.remove(self)
        if reason:
            self.channel.close(data={"reason": reason})
        if self._sampler.is_alive() and threading.current_thread() is not self._sampler:
            self._sampler.join(timeout=5)
