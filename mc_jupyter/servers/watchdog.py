"""The watchdog: the parent of a managed server's whole process tree, however the server daemonizes.

    python -m mc_jupyter.servers.watchdog --launch KERNEL_PID STATUS_FD   (the server's argv, cwd, env
                                                                           as JSON on stdin)
    python -m mc_jupyter.servers.watchdog KERNEL_PID SERVER_PID           (what it runs as)

Started by the kernel in its own session (a kill of the kernel's process group does not take it), it
marks itself a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), starts the server in the server's
own session, writes ``pid N`` (or ``error ...``) to STATUS_FD, and re-executes itself under the
second name, which ``ps`` shows with the server's pid. A process that the server leaves behind
(``setsid``, a double fork, daemon mode) is re-parented to the watchdog instead of init, so the tree
is exactly the watchdog's descendants, found by parent links alone: no pid lists to keep fresh, no
pid reuse to guard against, and every exit status it collects is its own.

It stops the tree (SIGTERM to every descendant, a grace period, then SIGKILL until none is left) when
the kernel asks (SIGTERM), when the kernel is gone (its parent changes: shut down, crashed,
SIGKILLed), or when the server failed (a non-zero exit or a signal) and left processes behind. It
exits once no descendant is left, with the server's own exit status. A server that exits 0 and leaves
a process running has daemonized: the watchdog goes on watching that process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

GRACE_SECONDS = 5.0
POLL_SECONDS = 0.25
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
WATCHED = (signal.SIGCHLD, signal.SIGTERM)   # blocked from the start and taken with sigtimedwait


def _prctl(option: int, value: int) -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):   # not Linux: no subreaper, the tree is what keeps its parents
        pass


def _in_server() -> None:  # pragma: no cover - runs in the server between fork and exec
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)   # should the watchdog itself be killed


def launch(kernel_pid: int, status_fd: int) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)   # a stop asked for now waits for the watch loop
    _prctl(PR_SET_CHILD_SUBREAPER, 1)                   # both survive the exec below
    spec = json.loads(sys.stdin.read() or "null")
    if spec is None:   # the kernel gave up before sending it
        sys.exit(1)
    try:
        server = subprocess.Popen(spec["argv"], cwd=spec["cwd"] or None, env=spec["env"], stdin=subprocess.DEVNULL,
                                  start_new_session=True, preexec_fn=_in_server)
    except (OSError, ValueError) as e:
        _tell(status_fd, f"error {e}")
        sys.exit(127)
    _tell(status_fd, f"pid {server.pid}")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):   # the log pipe's writers are now the server's tree alone: its end is the tree's
        os.dup2(devnull, fd)
    os.execv(sys.executable, [sys.executable, "-m", "mc_jupyter.servers.watchdog", str(kernel_pid), str(server.pid)])


def _tell(fd: int, status: str) -> None:
    """The kernel may have stopped listening (an interrupt): the server is held all the same."""
    try:
        os.write(fd, status.encode())
    except OSError:
        pass
    os.close(fd)


class Tree:
    """The watchdog's descendants: the server and everything it started, wherever it moved."""

    def __init__(self, server_pid: int):
        self.server_pid, self.status = server_pid, None   # the server's exit code, once collected

    def reap(self) -> bool:
        """Collect every child that exited (each is ours); True while any descendant is left."""
        try:
            while True:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    return True
                if pid == self.server_pid:
                    self.status = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            return False

    def signal_all(self, sig: int) -> None:
        import psutil
        for p in psutil.Process().children(recursive=True):
            try:
                p.send_signal(sig)
                if sig == signal.SIGTERM:
                    p.send_signal(signal.SIGCONT)   # a stopped process acts on SIGTERM once continued
            except psutil.Error:
                pass

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.reap() and time.monotonic() < deadline:
            signal.sigtimedwait([signal.SIGCHLD], 0.05)
        while self.reap():   # what forked meanwhile is a descendant too: kill until none is left
            self.signal_all(signal.SIGKILL)
            signal.sigtimedwait([signal.SIGCHLD], 0.05)


def watch(kernel_pid: int, server_pid: int) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    tree, asked = Tree(server_pid), False
    while tree.reap():
        if asked or os.getppid() != kernel_pid or tree.status not in (None, 0):
            tree.stop()
            break
        info = signal.sigtimedwait(WATCHED, POLL_SECONDS)
        asked = asked or (info is not None and info.si_signo == signal.SIGTERM)
    _exit_as(tree.status)


def _exit_as(status) -> None:
    """Exit as the server did, a signal included, so the kernel reads the server's own exit status."""
    if status is not None and status < 0:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # no core file for a signal passed on
        try:
            signal.signal(-status, signal.SIG_DFL)
        except (OSError, ValueError):   # SIGKILL has no handler to reset
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [-status])
        os.kill(os.getpid(), -status)
    os._exit(1 if status is None or status < 0 else status)


if __name__ == "__main__":
    if sys.argv[1] == "--launch":
        launch(int(sys.argv[2]), int(sys.argv[3]))
    else:
        watch(int(sys.argv[1]), int(sys.argv[2]))
