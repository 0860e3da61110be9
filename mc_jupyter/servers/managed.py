"""A managed server's whole lifecycle in one place: install, start, readiness wait, stop.

One guarded state machine (:class:`ServerState`); :meth:`ManagedServer.info` reports it as it is, so
``starting`` and ``failed`` reach the status table and the sidebar. The moves::

    STOPPED ──start()──▶ STARTING ──ready──▶ RUNNING ──stop() or it exits──▶ STOPPED
                            │
                            └── install fails, it exits, not ready in time, interrupted ──▶ FAILED

- a server starts once: ``start()`` on a STARTING or RUNNING server, or on one that has stopped or
  failed, raises (as httpx's "Cannot reopen a client instance, once it has been closed."); a new
  compose makes a new server;
- ``stop()`` is never refused: it stops a STARTING or RUNNING server (STOPPED); on a STOPPED one it
  does nothing; on a FAILED one it keeps the state (the panel shows why) and makes sure the process
  tree is gone (a start interrupted while it stopped the tree leaves nothing behind);
- every other move (RUNNING back to STARTING, FAILED to RUNNING, ...) raises a sentence naming it.

The process tree itself (watchdog, no orphans) is :mod:`.process`.
"""

from __future__ import annotations

import enum
import hashlib
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..errors import ServerError
from ..secrets import scrub
from .process import Command, ManagedProcess, as_argv, port_in_use

DEFAULT_READY_TIMEOUT = 120.0


class ServerState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


#: The legal moves; anything else raises (see the module's docstring).
MOVES = {
    ServerState.STOPPED: {ServerState.STARTING},          # only before the first start
    ServerState.STARTING: {ServerState.RUNNING, ServerState.FAILED, ServerState.STOPPED},
    ServerState.RUNNING: {ServerState.STOPPED},
    ServerState.FAILED: set(),
}


def server_env(env: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    """The environment of every command of a server (install, start, stop): the kernel's, with
    ``manage.env`` on top (values as text)."""
    return dict(os.environ, **{str(k): str(v) for k, v in (env or {}).items()})


class ManagedServer:
    """One managed server: its commands, its address, its process tree, its state."""

    def __init__(self, name: str, start: Command, host: str, port: int, *,
                 install: Optional[Sequence[Command]] = None, build: Optional[Sequence[Command]] = None,
                 clean: Optional[Sequence[Command]] = None, stop: Optional[List[str]] = None,
                 env: Optional[Mapping[str, Any]] = None, working_dir: Optional[str] = None,
                 health_path: Optional[str] = None, ready_timeout: float = DEFAULT_READY_TIMEOUT):
        """``install`` / ``build`` / ``clean``: lists of commands, each an argv list or a shell line
        (:func:`mc_jupyter.config.http_schema.commands` makes one from the YAML)."""
        self.name, self.host, self.port = name, host, port
        self.install_argv = _argvs(install, "manage.install", name)
        self.build_argv = _argvs(build, "manage.build", name)
        self.clean_argv = _argvs(clean, "manage.clean", name)
        self.stop_argv = stop
        self.env, self.working_dir = server_env(env), working_dir or None
        self.health_path, self.ready_timeout = health_path, ready_timeout
        self.process = ManagedProcess(name, start, self.env, self.working_dir)
        self.state = ServerState.STOPPED
        self.error = ""               # the first line of why it failed
        self._started = False
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- the state machine ---------------------------------------------------------------------
    def _move(self, to: ServerState, error: str = "") -> None:
        """The one place the state changes; an illegal move raises a sentence naming it."""
        with self._lock:
            now = self.state
            if to is ServerState.STARTING and (self._started or now is not ServerState.STOPPED):
                how = {ServerState.STARTING: "it is already starting", ServerState.RUNNING: "it is already running",
                       ServerState.FAILED: "it has failed", ServerState.STOPPED: "it has been stopped"}[now]
                raise RuntimeError(f"Cannot start server `{self.name}` again: {how}. A server starts once; "
                                   f"compose it again to start a new one.")
            if to not in MOVES[now]:
                raise RuntimeError(f"Cannot move server `{self.name}` from {now.value} to {to.value}.")
            self._started = self._started or to is ServerState.STARTING
            self.state, self.error = to, error or self.error

    def start(self) -> None:
        """Install (once per distinct command), start, and wait until it answers; on any failure (an
        interrupt included) the tree is stopped, the state is FAILED, and the error goes on."""
        self._move(ServerState.STARTING)
        try:
            for argv in self.install_argv:
                run_install(self.name, argv, self.env, self.working_dir)
            for argv in self.build_argv:    # after install, once per distinct command and working_dir
                run_install(self.name, argv, self.env, self.working_dir, what="build")
            self.process.start()
            wait_ready(self.process, self.host, self.port, self.health_path, self.ready_timeout)
        except BaseException as e:
            if self.state is ServerState.STARTING:     # not stopped meanwhile from another thread
                self._move(ServerState.FAILED, (str(e).splitlines() or [type(e).__name__])[0])
            self.process.stop()
            raise
        self._move(ServerState.RUNNING)

    def stop(self) -> None:
        """The server's own ``manage.stop`` first (while it runs), then the whole tree; never refused.
        Then ``manage.clean`` (model-compose's teardown), for a server that started: its commands run in
        order, and the install and build markers are forgotten, so the next start installs and builds
        again."""
        with self._lock:
            state = self.state
        if state is ServerState.STOPPED:
            return
        if state is ServerState.RUNNING and self.stop_argv and self.process.alive():
            try:
                subprocess.run(self.stop_argv, capture_output=True, timeout=30, cwd=self.working_dir, env=self.env)
            except (OSError, subprocess.TimeoutExpired) as e:
                self.process.log.append(f"[mc_jupyter] manage.stop failed: {scrub(str(e))}")
        self.process.stop()
        if self.clean_argv and self.process.pid is not None:
            self.clean()
        if state is not ServerState.FAILED:
            self._move(ServerState.STOPPED)

    def clean(self) -> None:
        """Run ``manage.clean`` (each command, in order; a failure is logged, never raised: a stop is never
        refused) and forget the install and build markers."""
        for argv in self.clean_argv:
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.working_dir,
                                      env=self.env)
                if proc.returncode != 0:
                    self.process.log.append(f"[mc_jupyter] manage.clean `{scrub(shlex.join(argv))}` exited "
                                            f"{proc.returncode}: {scrub((proc.stdout + proc.stderr).strip())[-300:]}")
            except (OSError, subprocess.TimeoutExpired) as e:
                self.process.log.append(f"[mc_jupyter] manage.clean failed: {scrub(str(e))}")
        for argv in self.install_argv:
            _install_marker(argv).unlink(missing_ok=True)
        for argv in self.build_argv:
            _install_marker(argv, "build", self.working_dir).unlink(missing_ok=True)

    def exited(self) -> bool:
        """Whether a RUNNING server's tree has exited by itself; if so it is STOPPED from now on."""
        with self._lock:
            if self.state is not ServerState.RUNNING or self.process.alive():
                return False
        self._move(ServerState.STOPPED)
        return True

    def died(self, within: float = 2.0) -> bool:
        """After a failed request: whether the server's tree is gone (then it is STOPPED). When the start
        command's own process has exited, the watchdog is given ``within`` seconds to finish stopping
        the tree, so a crash is told apart from an error answer of a live server."""
        deadline = time.monotonic() + within
        while self.process.alive() and not _running(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.process.alive():
            return False
        self.exited()
        return True

    def info(self) -> Dict[str, Any]:
        """The real state (a server that exited by itself reads ``stopped``), its pid and its error."""
        self.exited()
        return {"server_state": self.state.value, "pid": self.process.pid, "server_error": self.error}


def _running(pid: Optional[int]) -> bool:
    import psutil
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_ready(process: ManagedProcess, host: str, port: int, health_path: Optional[str], timeout: float) -> None:
    """Until the port accepts (and the health path answers below 500); fail fast if the process exits."""
    import httpx
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            code = process.returncode
            time.sleep(0.1)   # let the log reader catch the last lines
            raise ServerError(f"server `{process.name}` exited (code {code}) before it was ready. Its last log "
                              f"lines:\n    " + "\n    ".join(process.tail(15) or ["(no output)"]))
        if port_in_use(host, port):
            if not health_path:
                return
            try:
                if httpx.get(f"http://{host}:{port}/{health_path.lstrip('/')}", timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise ServerError(f"server `{process.name}` was not ready on {host}:{port} within {timeout:.0f} s. Its last log "
                      f"lines:\n    " + "\n    ".join(process.tail(15) or ["(no output)"]) +
                      "\n  Raise `manage.ready_timeout`, or check the port in the start command.")


def _argvs(commands: Optional[Sequence[Command]], field: str, name: str) -> List[List[str]]:
    if not commands:
        return []
    if isinstance(commands, str):
        commands = [commands]     # one shell line
    return [as_argv(c, field, name) for c in commands]


def _install_marker(argv: List[str], what: str = "install", working_dir: Optional[str] = None) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mc_jupyter" / "installs"
    key = shlex.join(argv) if what == "install" else f"{what}\0{os.path.abspath(working_dir or '.')}\0{shlex.join(argv)}"
    return root / hashlib.sha256(key.encode()).hexdigest()[:24]


def run_install(name: str, command: Any, env: Mapping[str, str], working_dir: Optional[str],
                what: str = "install") -> bool:
    """Run a ``manage.install`` command once per distinct command (a marker file remembers; a
    ``manage.build`` command, ``what="build"``, once per command and working directory); True if it
    ran. ``env`` is the whole environment (:func:`server_env`)."""
    argv = as_argv(command, f"manage.{what}", name)
    marker = _install_marker(argv, what, working_dir)
    if marker.exists():
        return False
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=working_dir or None, env=dict(env))
    except OSError as e:
        raise ServerError(f"server `{name}`: cannot run the {what} command `{scrub(shlex.join(argv))}`: {e}\n"
                          f"  Check that the program is installed and on PATH.") from None
    output = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode != 0:
        raise ServerError(f"server `{name}`: the {what} command failed (exit {proc.returncode}). Its last lines:\n    "
                          + "\n    ".join(output[-15:] or ["(no output)"]))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(shlex.join(argv))
    _show_collapsed(f"{name}: {what} finished in {time.monotonic() - started:.1f} s ({len(output)} lines of output)",
                    output)
    return True


def _show_collapsed(summary: str, lines: List[str]) -> None:
    """The summary, with the whole output folded under it in a notebook (secrets masked)."""
    lines = [scrub(line) for line in lines]
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        import html as html_
        body = html_.escape("\n".join(lines[-500:]))
        display({"text/plain": summary,
                 "text/html": f"<details><summary>{html_.escape(summary)}</summary><pre>{body}</pre></details>"},
                raw=True)
    else:
        print(summary)
