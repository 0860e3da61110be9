"""A managed server process: its whole tree held by a watchdog, watched, stopped whole.

No orphans, whatever the server does and whatever happens to the kernel:
- the server runs under a small watchdog process (:mod:`.watchdog`) that is a child subreaper, so
  every process the server starts stays its descendant even after ``setsid``, a double fork or
  daemon mode; ``stop()`` asks it to stop that whole tree (SIGTERM, a grace period, SIGKILL);
- the registry stops every server at interpreter exit (kernel shutdown and restart);
- the watchdog runs in its own session (a kill of the kernel's process group does not take it) and
  stops the tree by itself when the kernel disappears, SIGKILL included;
- should the watchdog itself be killed, the server gets a parent-death signal (Linux), and
  ``stop()`` still finds what is left by a tag in its environment.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import uuid
from typing import Deque, List, Mapping, Optional, Sequence, Union

from ..secrets import scrub
from ..errors import ServerError

Command = Union[str, Sequence[str]]
LOG_LINES = 2000
GRACE_SECONDS = 5.0
TAG = "MC_JUPYTER_SERVER"   # in the server's environment, inherited by everything it starts


def as_argv(command: Command, field: str = "manage.start", name: str = "") -> List[str]:
    """A YAML command as argv: a list as it is, a string split like a shell would. A blank command or a
    line that cannot be split (an unterminated quote) is an error naming the field, with how to write it."""
    where = f"server `{name}`: " if name else ""
    key = field.rsplit(".", 1)[-1]
    how = (f"  Write it as a list, `{key}: [program, arg, ...]`, or as one shell-quoted line, "
           f"`{key}: \"program --flag 'a value'\"`.")
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as e:   # "No closing quotation", "No escaped character"
            raise ServerError(f"{where}`{field}` cannot be split into a command ({e}): "
                              f"{scrub(command)[:200]!r}\n{how}") from None
    else:
        argv = [str(part) for part in command]
    if not argv or not argv[0].strip():
        raise ServerError(f"{where}`{field}` is blank: there is no program to run.\n{how}")
    return argv


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class ManagedProcess:
    """One server, the whole tree of processes it starts, and its log. ``env`` is the server's whole
    environment (:func:`mc_jupyter.servers.managed.server_env`); the state machine around it is
    :class:`mc_jupyter.servers.managed.ManagedServer`."""

    def __init__(self, name: str, command: Command, env: Optional[Mapping[str, str]] = None,
                 working_dir: Optional[str] = None):
        self.name, self.argv = name, as_argv(command, "manage.start", name)
        self.env, self.working_dir = dict(os.environ if env is None else env), working_dir
        self.log: Deque[str] = collections.deque(maxlen=LOG_LINES)
        self.proc: Optional[subprocess.Popen] = None    # the watchdog, the parent of the server's tree
        self.pid: Optional[int] = None                   # the server: the start command's own process
        self.tag = f"{os.getpid()}-{uuid.uuid4().hex}"
        self._reader: Optional[threading.Thread] = None

    def alive(self) -> bool:
        """True while any process of the tree runs (a server that daemonized lives on in its daemon)."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        """The server's exit status once its whole tree is gone (the watchdog exits with it)."""
        return self.proc.returncode if self.proc is not None else None

    def start(self) -> None:
        env = dict(self.env, **{TAG: self.tag})
        status_read, status_write = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mc_jupyter.servers.watchdog", "--launch", str(os.getpid()), str(status_write)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(status_write,),
                start_new_session=True)
        except OSError as e:
            os.close(status_read)
            raise ServerError(f"server `{self.name}`: cannot start its watchdog ({sys.executable}): {e}") from None
        finally:
            os.close(status_write)
        self._reader = threading.Thread(target=self._read, name=f"mc_jupyter-log-{self.name}", daemon=True)
        self._reader.start()
        with open(status_read, "rb") as status_pipe:
            with contextlib.suppress(OSError):   # a watchdog that died already says so below
                self.proc.stdin.write(json.dumps({"argv": self.argv, "cwd": self.working_dir, "env": env}).encode())
                self.proc.stdin.close()
            status = status_pipe.read().decode("utf-8", "replace")
        if status.startswith("pid "):
            self.pid = int(status[4:])
            return
        self.stop()
        if status.startswith("error "):
            raise ServerError(f"server `{self.name}`: cannot start `{shlex.join(self.argv)}`: {status[6:]}\n"
                              f"  Check that the program is installed and on PATH (or use `manage.install`).")
        raise ServerError(f"server `{self.name}`: its watchdog exited (code {self.returncode}) before starting it:\n    "
                          + "\n    ".join(self.tail(15) or ["(no output)"]))

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.log.append(scrub(raw.decode("utf-8", "replace").rstrip("\n")))   # a server may echo a token
        self.proc.stdout.close()

    def tail(self, n: int = 20) -> List[str]:
        return list(self.log)[-n:]

    def stop(self) -> None:
        """The watchdog stops the whole tree (SIGTERM, grace, SIGKILL); forced if it does not."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.close()   # a watchdog still waiting for its command gives up
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=GRACE_SECONDS + 5)
            except subprocess.TimeoutExpired:   # a watchdog that hangs: kill it, then what it held
                held = _descendants(self.proc.pid)
                self.proc.kill()
                self.proc.wait(timeout=5)
                _kill(held)
        _kill(tagged(self.tag))   # what escaped the watchdog: it was killed itself, so its tree was not held


def _descendants(pid: int) -> List[int]:
    import psutil
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def tagged(tag: str) -> List[int]:
    """The live processes whose environment carries ``tag``: a server's tree, wherever it moved."""
    import psutil
    found = []
    for p in psutil.process_iter(["environ", "status"], ad_value=None):
        if p.pid != os.getpid() and p.info["status"] != psutil.STATUS_ZOMBIE \
                and (p.info["environ"] or {}).get(TAG) == tag:
            found.append(p.pid)
    return found


def _kill(pids: List[int], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``grace``; psutil checks each pid is still the process it was."""
    import psutil
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)
        procs = psutil.wait_procs(procs, timeout=grace)[1]
        if not procs:
            return
