"""A managed server process: started in its own process group, watched, stopped whole.

No orphans, whatever happens to the kernel:
- ``stop()`` sends SIGTERM to the whole process group, then SIGKILL after a grace period;
- the registry stops every server at interpreter exit (kernel shutdown and restart);
- on Linux the direct child gets a parent-death signal, and a small watchdog process (in its own
  session, so a kill of the kernel's process group does not take it too) kills the server's group
  when the kernel disappears, SIGKILL included.
"""

from __future__ import annotations

import collections
import enum
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Deque, Dict, List, Optional, Sequence, Union

from ..binding import scrub
from ..errors import UserError
from .watchdog import group_exists

Command = Union[str, Sequence[str]]
LOG_LINES = 2000
GRACE_SECONDS = 5.0


class ServerState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


class ServerError(UserError):
    """A managed server that could not be installed, started, or reached."""


def as_argv(command: Command) -> List[str]:
    """A YAML command as argv: a list as it is, a string split like a shell would."""
    if isinstance(command, str):
        return shlex.split(command)
    return [str(part) for part in command]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass


class ManagedProcess:
    """One server process group with its log."""

    def __init__(self, name: str, command: Command, env: Optional[Dict[str, str]] = None,
                 working_dir: Optional[str] = None):
        self.name, self.argv = name, as_argv(command)
        self.env, self.working_dir = env or {}, working_dir
        self.log: Deque[str] = collections.deque(maxlen=LOG_LINES)
        self.state = ServerState.STOPPED
        self.proc: Optional[subprocess.Popen] = None
        self.watchdog: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        env = dict(os.environ, **{k: str(v) for k, v in self.env.items()})
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.working_dir or None, env=env, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        except (OSError, ValueError) as e:
            self.state = ServerState.FAILED
            raise ServerError(f"server `{self.name}`: cannot start `{shlex.join(self.argv)}`: {e}\n"
                              f"  Check that the program is installed and on PATH (or use `manage.install`).") from None
        self.state = ServerState.STARTING
        self._reader = threading.Thread(target=self._read, name=f"mc_jupyter-log-{self.name}", daemon=True)
        self._reader.start()
        self.watchdog = subprocess.Popen(
            [sys.executable, "-m", "mc_jupyter.servers.watchdog", str(os.getpid()), str(self.proc.pid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.log.append(scrub(raw.decode("utf-8", "replace").rstrip("\n")))   # a server may echo a token
        self.proc.stdout.close()

    def tail(self, n: int = 20) -> List[str]:
        return list(self.log)[-n:]

    def stop(self) -> None:
        """SIGTERM to the whole group; SIGKILL what is left after the grace period."""
        if self.proc is None:
            return
        pgid = self.proc.pid   # start_new_session: the group id is the child's pid
        for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(pgid):
                if self.proc.poll() is None:
                    try:
                        self.proc.wait(timeout=0.05)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.05)
            if not _group_alive(pgid):
                break
        if self.proc.poll() is None:
            self.proc.wait(timeout=2)
        if self.watchdog is not None and self.watchdog.poll() is None:
            self.watchdog.terminate()
            self.watchdog.wait(timeout=2)
        self.state = ServerState.STOPPED


def _group_alive(pgid: int) -> bool:
    return group_exists(pgid) and _any_live_member(pgid)


def _any_live_member(pgid: int) -> bool:
    """killpg(0) succeeds while zombies remain; look for a member that is not a zombie."""
    try:
        import psutil
    except ImportError:
        return True
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False
