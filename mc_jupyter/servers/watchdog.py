"""``python -m mc_jupyter.servers.watchdog KERNEL_PID SERVER_PGID``

Runs in its own session beside a managed server. When the kernel process is gone (shut down,
crashed, SIGKILLed) it kills the server's whole process group, then exits; it also exits when the
group is gone. Polls twice a second.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _exists(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def group_exists(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(kernel_pid: int, pgid: int) -> None:
    while group_exists(pgid):
        if not _exists(kernel_pid):
            try:
                os.killpg(pgid, signal.SIGTERM)
                for _ in range(50):
                    time.sleep(0.1)
                    if not group_exists(pgid):
                        return
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        time.sleep(0.5)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
