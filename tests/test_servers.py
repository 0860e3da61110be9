"""Managed servers and HTTP clients with real processes on 127.0.0.1, and no orphans, ever."""

import json
import os
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

import mc_jupyter as mc
from mc_jupyter.engine import StreamSink
from mc_jupyter.errors import UserError
from tests.test_spec_blocks import BLOCKS

SERVER = str(Path(__file__).resolve().parent / "model_server.py")
SERVING = [b for b in BLOCKS if b.startswith("8.6#")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gone(pid: int, within: float = 10.0) -> bool:
    """True once ``pid`` and every process of its group have exited (zombies count as exited)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [p for p in psutil.process_iter(["pid", "status"])
                 if p.info["status"] != psutil.STATUS_ZOMBIE and _pgid(p.info["pid"]) == pid]
        if not alive and (not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE):
            return True
        time.sleep(0.1)
    return False


def _pgid(pid: int):
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


@pytest.fixture(autouse=True)
def install_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def pointed_at_test_server(block_id: str, port: int, **server_args) -> str:
    """The spec block with its start command (and any install, endpoint) pointed at the test server."""
    data = yaml.safe_load(BLOCKS[block_id])
    component = data["component"]
    argv = [sys.executable, SERVER, "--port", str(port)] + [f"--{k.replace('_', '-')}" if v is True else
                                                           f"--{k.replace('_', '-')}={v}"
                                                           for k, v in server_args.items()]
    if component["type"] == "http-server":
        component["manage"] = {"start": argv, "install": [sys.executable, "-c", "print('installing the server')"],
                               "ready_timeout": 20}
        component["port"] = port
    else:
        component["endpoint"] = component["endpoint"].replace("localhost:11434", f"127.0.0.1:{port}") \
            .replace("localhost:8080", f"127.0.0.1:{port}")
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.slow
@pytest.mark.parametrize("block_id", SERVING)
def test_every_serving_block_composes_verbatim_with_dry_run_and_starts_nothing(registry, block_id):
    before = {p.pid for p in psutil.process_iter()}
    plan = mc.compose(BLOCKS[block_id], registry=registry, dry_run=True)
    assert "would load `default`" in repr(plan)
    assert registry.snapshot() == []
    started = {p.pid for p in psutil.process_iter()} - before
    assert not [p for p in started if psutil.pid_exists(p) and "model_server" in " ".join(psutil.Process(p).cmdline())]


RUNS = {
    "8.6#1": ({"prompt": "Hello there"}, "You said: Hello there"),                       # vLLM, SSE stream
    "8.6#2": ({"prompt": "Hello there"}, {"response": "You said: Hello there"}),       # Ollama, stream: false
    "8.6#3": ({"prompt": "Hello there"}, "You said: Hello there"),                       # Ollama, NDJSON stream
    "8.6#4": ({"messages": [{"role": "user", "content": "Hi you"}]}, {"message": "You said: Hi you"}),
    "8.6#5": ({"prompt": "Hello there"}, {"response": "You said: Hello there"}),       # http-client, Ollama
    "8.6#6": ({"prompt": "Hello there"}, {"generated_text": "You said: Hello there"}),  # http-client, TGI
}


class Collect(StreamSink):
    def __init__(self):
        self.chunks = []

    def chunk(self, text, tokens=None):
        self.chunks.append(text)


@pytest.mark.slow
@pytest.mark.parametrize("block_id", sorted(RUNS))
def test_every_serving_block_runs_against_a_real_server_process(registry, block_id):
    port = free_port()
    client_server = None
    if BLOCKS[block_id].startswith("component:\n  type: http-client"):
        client_server = psutil.Popen([sys.executable, SERVER, "--port", str(port)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            time.sleep(0.05)
    try:
        mc.compose(pointed_at_test_server(block_id, port), registry=registry)
        inputs, expected = RUNS[block_id]
        sink = Collect()
        result = mc.run(inputs=inputs, stream=sink, registry=registry)
        assert result.output == expected
        if isinstance(expected, str):      # the streamed ones grow in place, word by word
            assert "".join(sink.chunks) == expected and len(sink.chunks) == len(expected.split())
    finally:
        registry.down()
        if client_server is not None:
            client_server.terminate()
            client_server.wait(5)


def server_yaml(port: int, *extra: str, ready_timeout: float = 20, health: str = "") -> str:
    args = ", ".join([sys.executable, SERVER, "--port", str(port), *extra])
    return f"""
component:
  id: llm
  type: http-server
  manage:
    start: [{args}]
    ready_timeout: {ready_timeout}
    {"health_path: " + health if health else ""}
  port: {port}
  path: /v1/chat/completions
  body:
    model: ${{input.model | tiny}}
    messages: [{{role: user, content: "${{input.prompt}}"}}]
    stream: true
  stream_format: json
  output: ${{response[].choices[0].delta.content}}
"""


def test_an_unchanged_compose_keeps_the_running_server_and_unload_stops_the_whole_group(registry):
    port = free_port()
    mc.compose(server_yaml(port, health="/health"), registry=registry)
    pid = registry.entries["llm"].driver.process.pid
    assert psutil.Process(pid).is_running() and os.getpgid(pid) == pid      # its own process group
    mc.compose(server_yaml(port, health="/health"), registry=registry)
    assert registry.entries["llm"].driver.process.pid == pid
    row = registry.snapshot()[0]
    assert row["state"] == "running" and row["device"] == f"pid {pid} · 127.0.0.1:{port}"
    assert "GET /health" in "\n".join(mc.logs("llm", registry=registry))
    registry.unload("llm")
    assert gone(pid)


@pytest.mark.slow
def test_down_stops_every_server(registry):
    ports = [free_port(), free_port()]
    components = [dict(yaml.safe_load(server_yaml(p))["component"], id=f"s{i}") for i, p in enumerate(ports)]
    mc.compose(yaml.safe_dump({"components": components}), registry=registry)
    pids = [registry.entries[f"s{i}"].driver.process.pid for i in range(2)]
    registry.down()
    assert all(gone(pid) for pid in pids)


def test_a_port_already_taken_is_reported_before_starting(registry):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError) as info:
            mc.compose(server_yaml(port), registry=registry)
    assert f"port {port} on 127.0.0.1 is already in use" in str(info.value)
    assert registry.snapshot() == []


@pytest.mark.slow
def test_a_server_that_exits_early_fails_the_compose_with_its_last_log_lines(registry):
    before = registry.snapshot()
    with pytest.raises(UserError) as info:
        mc.compose(server_yaml(free_port(), "--exit-early"), registry=registry)
    message = str(info.value)
    assert "server `llm` exited (code 2) before it was ready" in message
    assert "error: CUDA out of memory while loading the model (simulated)" in message
    assert registry.snapshot() == before


@pytest.mark.slow
def test_a_server_that_is_not_ready_in_time_is_stopped_and_reported(registry):
    port = free_port()
    with pytest.raises(UserError) as info:
        mc.compose(server_yaml(port, "--start-after=30", ready_timeout=1), registry=registry)
    assert f"was not ready on 127.0.0.1:{port} within 1 s" in str(info.value)
    assert "model server starting" in str(info.value)
    assert not [p for p in psutil.process_iter(["cmdline"]) if f"--port {port}" in " ".join(p.info["cmdline"] or [])]


@pytest.mark.slow
def test_install_runs_once_per_distinct_command(registry, capsys):
    port = free_port()
    text = server_yaml(port).replace("  manage:\n", f"  manage:\n    install: [{sys.executable}, -c, \"print('hi')\"]\n")
    mc.compose(text, registry=registry)
    assert "llm: install finished" in capsys.readouterr().out
    registry.unload("llm")
    mc.compose(text, registry=registry)
    assert "install finished" not in capsys.readouterr().out


def test_a_failing_install_shows_its_last_lines(registry):
    text = server_yaml(free_port()).replace(
        "  manage:\n", f"  manage:\n    install: [{sys.executable}, -c, \"import sys; print('no space left'); sys.exit(4)\"]\n")
    with pytest.raises(UserError) as info:
        mc.compose(text, registry=registry)
    assert "the install command failed (exit 4)" in str(info.value) and "no space left" in str(info.value)


def test_http_errors_show_the_status_and_the_body(registry):
    port = free_port()
    mc.compose(server_yaml(port), registry=registry)
    with pytest.raises(UserError) as info:
        mc.run(inputs={"prompt": "hi", "model": "missing"}, registry=registry)
    assert "answered HTTP 404 Not Found" in str(info.value) and "model 'missing' not found" in str(info.value)


def test_a_client_whose_server_is_down_says_so(registry):
    port = free_port()
    mc.compose(f"component:\n  type: http-client\n  endpoint: http://127.0.0.1:{port}/generate\n"
               f"  body: {{inputs: x}}\n  timeout: 5\n", registry=registry)
    with pytest.raises(UserError) as info:
        mc.run(registry=registry)
    assert f"cannot connect to http://127.0.0.1:{port}/generate" in str(info.value)


def test_a_server_that_crashes_mid_stream_fails_the_run_and_shows_as_stopped(registry):
    port = free_port()
    mc.compose(server_yaml(port, "--crash-after=2"), registry=registry)
    with pytest.raises(Exception) as info:
        mc.run(inputs={"prompt": "one two three four"}, stream=Collect(), registry=registry)
    assert "RemoteProtocolError" in repr(info.value) or "incomplete" in str(info.value).lower() or \
        "peer closed" in str(info.value).lower()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and registry.snapshot()[0]["state"] != "stopped":
        time.sleep(0.05)
    assert registry.snapshot()[0]["state"] == "stopped"
    assert "crashing mid-stream on purpose" in "\n".join(mc.logs("llm", registry=registry))


def test_start_gets_its_env_and_working_dir(registry, tmp_path):
    code = "import os; print('MODEL=' + os.environ['MY_MODEL'], 'CWD=' + os.getcwd()); raise SystemExit(1)"
    text = f"""
component:
  type: http-server
  manage:
    start: [{sys.executable}, -c, "{code}"]
    env: {{MY_MODEL: tiny-llama}}
    working_dir: {tmp_path}
  port: {free_port()}
"""
    with pytest.raises(UserError) as info:
        mc.compose(text, registry=registry)
    assert f"MODEL=tiny-llama CWD={tmp_path}" in str(info.value)


def test_a_stop_command_runs_before_the_signals(registry, tmp_path):
    port = free_port()
    marker = tmp_path / "stopped"
    text = server_yaml(port).replace("  manage:\n", f"  manage:\n    stop: [touch, {marker}]\n")
    mc.compose(text, registry=registry)
    pid = registry.entries["llm"].driver.process.pid
    registry.unload("llm")
    assert marker.exists() and gone(pid)


def test_a_client_with_base_url_and_path_and_a_plain_text_stream(registry):
    port = free_port()
    server = psutil.Popen([sys.executable, SERVER, "--port", str(port)])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            time.sleep(0.05)
        mc.compose(f"""
component:
  type: http-client
  base_url: http://127.0.0.1:{port}
  path: /api/generate
  body: {{prompt: "${{input.prompt}}"}}
  stream_format: text
  output: ${{response[]}}
""", registry=registry)
        sink = Collect()
        out = mc.run(inputs={"prompt": "a b"}, stream=sink, registry=registry).output
        lines = [json.loads(line) for line in out.splitlines()]
        assert "".join(line["response"] for line in lines) == "You said: a b" and lines[-1]["done"] is True
        assert "".join(sink.chunks) == out
    finally:
        server.terminate()
        server.wait(5)


def test_a_secret_a_server_prints_is_masked_in_its_log_and_errors(registry, monkeypatch):
    monkeypatch.setenv("MCJ_SERVER_TOKEN", "tok_SECRET_marker_456")
    code = "import os; print('token is ' + os.environ['API_TOKEN']); raise SystemExit(1)"
    text = f"""
component:
  type: http-server
  manage:
    start: [{sys.executable}, -c, "{code}"]
    env: {{API_TOKEN: "${{env.MCJ_SERVER_TOKEN}}"}}
  port: {free_port()}
"""
    from mc_jupyter.binding import Scope, parse_template, render
    render(parse_template("${env.MCJ_SERVER_TOKEN}"), Scope())   # the value is now a known secret
    with pytest.raises(UserError) as info:
        mc.compose(text, registry=registry)
    assert "token is ***" in str(info.value) and "tok_SECRET_marker_456" not in str(info.value)


def test_the_port_can_come_from_the_environment(registry, monkeypatch):
    port = free_port()
    monkeypatch.setenv("MCJ_TEST_PORT", str(port))
    text = server_yaml(port).replace(f"  port: {port}\n", "  port: ${env.MCJ_TEST_PORT as integer}\n")
    assert "${env.MCJ_TEST_PORT" in text
    plan = mc.compose(text, registry=registry)
    assert "http-server · start" in repr(plan)
    assert mc.run(inputs={"prompt": "via env"}, stream=Collect(), registry=registry).output == "You said: via env"
