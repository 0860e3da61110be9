"""No orphan server processes after a kernel restart or a killed kernel (real kernels, real servers)."""

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from tests.test_servers import SERVER, free_port, gone

ROOT = Path(__file__).resolve().parent.parent


def execute(client, code: str) -> str:
    out = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(textwrap.dedent(code), timeout=120, output_hook=hook)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


def compose_server(client, through_a_shell: bool = False, extra: str = "") -> int:
    """Start a managed server in the kernel; ``through_a_shell`` makes the server a grandchild."""
    port = free_port()
    start = f"[{sys.executable}, {SERVER}, --port, {port}{extra}]"
    if through_a_shell:   # `; true` keeps bash from exec-ing: it stays the parent, as a pyenv/conda wrapper does
        start = f"[bash, -c, '{sys.executable} {SERVER} --port {port}; true']"
    code = f"""
        import mc_jupyter as mc
        mc.compose('''
        component:
          id: llm
          type: http-server
          manage:
            start: {start}
            ready_timeout: 20
          port: {port}
          path: /api/generate
          body: {{prompt: "${{input.prompt}}", stream: false}}
          output: ${{response.response}}
        ''')
        print(mc.REGISTRY.entries["llm"].driver.process.pid)
        print(mc.run(inputs={{"prompt": "are you there"}}).output)
    """
    lines = execute(client, code).strip().splitlines()
    assert lines[-1] == "You said: are you there"
    return int(lines[-2])


@pytest.fixture
def kernel():
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_a_kernel_restart_stops_the_servers_it_started(kernel):
    km, kc = kernel
    pid = compose_server(kc)
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    assert gone(pid, within=15)


def test_a_killed_kernel_leaves_no_server_behind(kernel):
    km, kc = kernel
    pid = compose_server(kc, through_a_shell=True)
    import psutil
    server = [p for p in psutil.Process(pid).children() if "model_server" in " ".join(p.cmdline())]
    assert len(server) == 1          # bash (the group leader) -> the server
    os.kill(km.provisioner.process.pid, signal.SIGKILL)     # no atexit, no shutdown message: the watchdog acts
    assert gone(pid, within=15)
    assert not psutil.pid_exists(server[0].pid) or server[0].status() == psutil.STATUS_ZOMBIE   # dead, maybe unreaped


def test_a_killed_kernel_leaves_no_daemon_behind(kernel, tmp_path):
    """A server that double-forks into a new session: the watchdog still holds the daemon, and stops it."""
    km, kc = kernel
    pid_file = tmp_path / "pids"
    pid_file.touch()
    compose_server(kc, extra=f", --daemonize=exit, --pid-file={pid_file}")
    import psutil
    tree = [psutil.Process(int(line.split()[0])) for line in pid_file.read_text().splitlines()[-1:]]   # the daemon
    assert tree[0].is_running() and os.getsid(tree[0].pid) != os.getsid(km.provisioner.process.pid)
    os.kill(km.provisioner.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(p.is_running() for p in tree):   # pid and create time
        time.sleep(0.1)
    assert not any(p.is_running() for p in tree)
