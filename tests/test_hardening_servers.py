"""Issue #15, Hardening II, for managed servers and HTTP clients (real processes on 127.0.0.1):

1. a server that daemonizes (a double fork with ``setsid``, ``setsid(1)``, an emptied environment)
   leaves no process behind after a failed compose, an unload, a down, or a SIGKILLed kernel: every
   process of its tree, identified by pid and create time, is gone;
2. ``port``, ``manage.ready_timeout`` and ``timeout`` from ``${env.*}`` that are not numbers are user
   errors naming the field and the variable, with the value nowhere (not in any link of the chain);
3. blank or unsplittable commands, dates, objects JSON cannot carry, non-ASCII headers and malformed
   URLs are messages naming the field and the fix, checked before anything starts;
4. Server-Sent Events are read as the spec says (one leading space, multi-line data, ``event: error``).
"""

from __future__ import annotations

import io
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import psutil
import pytest

import mc_jupyter as mc
from mc_jupyter.errors import ConfigError, UserError
from mc_jupyter.servers.process import ServerError
from tests.test_servers import SERVER, Collect, free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "SeCrEt-123-abc-hardening"
ENV = "MCJ_HARDENING_SECRET"


# -- 1. no orphans from servers that daemonize -----------------------------------------------------
DAEMONS = {   # name: (extra server arguments, how many processes the tree records, start through setsid(1))
    "double-fork-first-exits": (["--daemonize=exit"], 3, False),
    "double-fork-first-stays": (["--daemonize=stay"], 3, False),
    "double-fork-empty-environment": (["--daemonize=exit", "--clear-env"], 3, False),
    "setsid": ([], 1, True),
}
ENDINGS = ["failed-compose", "unload", "down", "killed-kernel"]


def daemon_yaml(port: int, daemon: str, pid_file: Path, health: str = "/health", ready_timeout: float = 20,
                extra: tuple = ()) -> str:
    args, _, setsid = DAEMONS[daemon]
    argv = (["setsid"] if setsid else []) + [sys.executable, SERVER, "--port", str(port), f"--pid-file={pid_file}",
                                             *args, *extra]
    return textwrap.dedent(f"""
        component:
          id: llm
          type: http-server
          manage:
            start: [{", ".join(argv)}]
            ready_timeout: {ready_timeout}
            health_path: {health}
          port: {port}
          path: /api/generate
          body: {{prompt: "${{input.prompt}}", stream: false}}
          output: ${{response.response}}
        """)


def tree(pid_file: Path, expected: int) -> list:
    """``(pid, create_time)`` of every process the server's tree recorded (all of them, or fail)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = {(int(p), float(t)) for p, t in (line.split() for line in pid_file.read_text().splitlines())}
        if len(records) >= expected:
            return sorted(records)
        time.sleep(0.05)
    raise AssertionError(f"the server recorded {pid_file.read_text()!r}, not {expected} processes")


def left(records: list, within: float = 15.0) -> list:
    """The recorded processes still there after ``within`` seconds: the same pid and create time,
    zombies included (everything must have been reaped too)."""
    deadline = time.monotonic() + within
    while True:
        found = []
        for pid, created in records:
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - created) < 0.05:
                    found.append(f"{pid} {p.status()} {' '.join(p.cmdline()) if p.status() != 'zombie' else ''}")
            except psutil.NoSuchProcess:
                pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


KERNEL = """
import sys, time
import mc_jupyter as mc
mc.compose(sys.stdin.read())
process = mc.REGISTRY.entries["llm"].driver.process
print(process.proc.pid, mc.run(inputs={"prompt": "up"}).output, flush=True)
time.sleep(600)
"""


def killed_kernel(text: str) -> int:
    """Compose ``text`` in a separate Python process (the kernel), then SIGKILL its whole process group,
    as a forced kernel shutdown does: no atexit, no shutdown. The watchdog's pid."""
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=ROOT, text=True, start_new_session=True)
    kernel.stdin.write(text)
    kernel.stdin.close()
    line = ""
    for _ in range(5):     # the compose's own line (`loaded llm: ...`) may come first
        ready, _, _ = select.select([kernel.stdout], [], [], 60)
        line = kernel.stdout.readline() if ready else ""
        if not line or line.endswith("You said: up\n"):
            break
    try:
        assert line.endswith("You said: up\n"), kernel.stderr.read() if kernel.poll() is not None else line
    finally:
        if kernel.poll() is None:
            os.killpg(kernel.pid, signal.SIGKILL)
        kernel.wait(10)
    return int(line.split()[0])


@pytest.mark.slow
@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("daemon", sorted(DAEMONS))
def test_a_server_that_daemonizes_leaves_no_process_behind(registry, tmp_path, daemon, ending):
    port, pid_file = free_port(), tmp_path / "pids"
    pid_file.touch()
    expected = DAEMONS[daemon][1]
    if ending == "failed-compose":   # it runs, but its health check never passes
        with pytest.raises(ServerError, match=f"was not ready on 127.0.0.1:{port} within 3 s"):
            mc.compose(daemon_yaml(port, daemon, pid_file, health="/broken", ready_timeout=3), registry=registry)
        assert registry.snapshot() == []
        records = tree(pid_file, expected)
    elif ending == "killed-kernel":
        watchdog = killed_kernel(daemon_yaml(port, daemon, pid_file))
        records = tree(pid_file, expected) + [(watchdog, psutil.Process(watchdog).create_time())]
    else:
        mc.compose(daemon_yaml(port, daemon, pid_file), registry=registry)
        process = registry.entries["llm"].driver.process
        assert mc.run(inputs={"prompt": "hi"}, registry=registry).output == "You said: hi"   # the daemon serves
        assert registry.snapshot()[0]["state"] == "running"
        records = tree(pid_file, expected)
        watchdog = psutil.Process(process.proc.pid)
        assert " ".join(watchdog.cmdline()).endswith(f"mc_jupyter.servers.watchdog {os.getpid()} {process.pid}")
        assert {p.pid for p in watchdog.children(recursive=True)} >= {records[-1][0]}   # the daemon is held
        registry.unload("llm") if ending == "unload" else registry.down()
        assert not process.alive()
        records.append((watchdog.pid, watchdog.create_time()))
    assert left(records) == []


@pytest.mark.slow
def test_a_daemon_that_ignores_sigterm_is_killed_after_the_grace_period(registry, tmp_path):
    port, pid_file = free_port(), tmp_path / "pids"
    pid_file.touch()
    mc.compose(daemon_yaml(port, "double-fork-first-exits", pid_file, extra=("--ignore-term",)), registry=registry)
    records = tree(pid_file, 3)
    started = time.monotonic()
    registry.down()
    assert left(records, within=1) == [] and 4 < time.monotonic() - started < 12


@pytest.mark.slow
def test_a_daemon_outlives_a_killed_watchdog_only_until_the_stop(registry, tmp_path):
    """Should the watchdog itself be SIGKILLed, the daemon it held is found by its environment's tag."""
    port, pid_file = free_port(), tmp_path / "pids"
    pid_file.touch()
    mc.compose(daemon_yaml(port, "double-fork-first-exits", pid_file), registry=registry)
    records = tree(pid_file, 3)
    process = registry.entries["llm"].driver.process
    os.kill(process.proc.pid, signal.SIGKILL)
    process.proc.wait(5)
    assert left(records[-1:], within=0.5) != []     # the daemon is on its own now
    registry.unload("llm")
    assert left(records) == []


@pytest.mark.slow
def test_a_server_that_fails_takes_what_it_started_with_it(registry, tmp_path):
    """A launcher that starts a server in a new session and then fails: the compose says so at once
    and the server it left is stopped too."""
    port, pid_file = free_port(), tmp_path / "pids"
    pid_file.touch()
    line = f"setsid {sys.executable} {SERVER} --port {port} --pid-file={pid_file} --start-after=60 & sleep 1; exit 3"
    text = daemon_yaml(port, "setsid", pid_file).replace(
        next(l for l in daemon_yaml(port, "setsid", pid_file).splitlines() if "start:" in l),
        f"    start: [bash, -c, '{line}']")
    with pytest.raises(ServerError, match=r"exited \(code 3\) before it was ready"):
        mc.compose(text, registry=registry)
    assert left(tree(pid_file, 1)) == []


# -- 2. number fields from ${env.*} that are not numbers ---------------------------------------------
@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv(ENV, TOKEN)
    return ENV


def every_text(e: BaseException) -> str:
    """What a traceback shows of ``e`` (every cause and context), and each link's args and attributes."""
    parts, seen, link = ["".join(traceback.format_exception(e)), repr(e)], set(), e
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        parts += [repr(link.args), repr(vars(link))]
        link = link.__cause__ or link.__context__
    return "\n".join(parts)


def masked(e: BaseException, *fragments: str) -> str:
    assert isinstance(e, ConfigError), f"{type(e).__name__}: {e}"
    assert TOKEN not in every_text(e) and e.__cause__ is None and e.__context__ is None
    assert "invalid literal" not in str(e) and "could not convert" not in str(e)
    for fragment in fragments:
        assert fragment in str(e), (fragment, str(e))
    return str(e)


def sleeper(port: str, ready_timeout: str = "5") -> str:
    return textwrap.dedent(f"""
        component:
          id: srv
          type: http-server
          manage:
            start: [{sys.executable}, -c, "import time; time.sleep(30)"]
            ready_timeout: {ready_timeout}
          port: {port}
        """)


def children() -> set:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.slow
@pytest.mark.parametrize("value", ["${env.%s}" % ENV, "${env.%s | 8000}" % ENV, "'80${env.%s}'" % ENV])
def test_a_port_from_env_that_is_not_a_number_names_the_field_and_hides_the_value(registry, secret, value):
    before = children()
    with pytest.raises(UserError) as info:
        mc.compose(sleeper(value), registry=registry)
    message = masked(info.value, "`port`", f"${{env.{ENV}}}", "whole number from 1 to 65535", "not shown")
    assert "Set the environment variable" in message
    assert registry.snapshot() == [] and children() == before     # nothing started


def test_a_port_from_env_out_of_range(registry, monkeypatch):
    monkeypatch.setenv(ENV, "99999")
    with pytest.raises(UserError) as info:
        mc.compose(sleeper("${env.%s}" % ENV), registry=registry)
    masked(info.value, "`port`", "from 1 to 65535")


def test_a_ready_timeout_from_env_that_is_not_a_number(registry, secret):
    before = children()
    with pytest.raises(UserError) as info:
        mc.compose(sleeper(str(free_port()), "${env.%s}" % ENV), registry=registry)
    masked(info.value, "`manage.ready_timeout`", f"${{env.{ENV}}}", "number of seconds")
    assert registry.snapshot() == [] and children() == before


def test_a_client_timeout_from_env_that_is_not_a_number(registry, secret):
    mc.compose(f"component:\n  id: c\n  type: http-client\n  endpoint: http://127.0.0.1:{free_port()}/x\n"
               f"  timeout: ${{env.{ENV}}}\n", registry=registry)
    with pytest.raises(UserError) as info:
        mc.run("c", {}, registry=registry)
    masked(info.value, "`timeout`", f"${{env.{ENV}}}", "number of seconds")


def test_a_timeout_from_the_input_shows_what_it_got(registry):
    mc.compose(f"component:\n  id: c\n  type: http-client\n  endpoint: http://127.0.0.1:{free_port()}/x\n"
               f"  timeout: ${{input.t}}\n", registry=registry)
    with pytest.raises(UserError) as info:
        mc.run("c", {"t": "soon"}, registry=registry)
    masked(info.value, "`timeout`", "got 'soon'")


def test_the_shell_shows_the_port_error_without_the_value(secret):
    from IPython.testing.globalipapp import get_ipython
    shell = get_ipython()
    shell.run_line_magic("load_ext", "mc_jupyter")
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            result = shell.run_cell("%%compose\n" + sleeper("${env.%s}" % ENV).lstrip())
    finally:
        mc.down()
    shown = out.getvalue() + err.getvalue()
    assert "`port`" in shown and "whole number from 1 to 65535" in shown, shown
    assert "Traceback" not in shown and TOKEN not in shown, shown
    assert TOKEN not in every_text(result.error_in_exec or result.error_before_exec)


# -- 3. clear messages for commands, bodies, headers and URLs -----------------------------------------
@pytest.mark.parametrize("field, value, says", [
    ("start", '""', "is blank"), ("start", '"   "', "is blank"), ("start", "[]", "is blank"),
    ("start", '[" "]', "is blank"),
    ("start", "\"python -c 'print(1)\"", "No closing quotation"),
    ("stop", "\"kill 'this\"", "No closing quotation"), ("stop", '" "', "is blank"),
    ("install", "\"pip install 'x\"", "No closing quotation"),
])
@pytest.mark.slow
def test_a_blank_or_unsplittable_command_is_named_before_anything_runs(registry, tmp_path, field, value, says):
    marker = tmp_path / "started"
    good = f'[{sys.executable}, -c, "open({str(marker)!r}, \'w\')"]'
    manage = {"start": good, field: value}
    text = (f"component:\n  id: srv\n  type: http-server\n  port: {free_port()}\n  manage:\n"
            + "".join(f"    {k}: {v}\n" for k, v in manage.items()))
    with pytest.raises(ServerError) as info:
        mc.compose(text, registry=registry)
    message = str(info.value)
    assert f"`manage.{field}`" in message and says in message and f"{field}: [program, arg, ...]" in message
    assert "Traceback" not in message and info.value.__cause__ is None
    assert registry.snapshot() == [] and not marker.exists()


@pytest.fixture
def echo():
    """The test server as a plain process: a client's endpoint."""
    port = free_port()
    server = psutil.Popen([sys.executable, SERVER, "--port", str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _listening(port):
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(5)


def _listening(port: int) -> bool:
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def client(endpoint: str, fields: str) -> str:
    return f"component:\n  id: c\n  type: http-client\n  endpoint: {endpoint}\n" + textwrap.indent(
        textwrap.dedent(fields), "  ")


def test_yaml_dates_in_the_body_and_the_query_are_sent_as_iso_8601(registry, echo):
    mc.compose(client(f"{echo}/echo", """
        params: {since: 2024-01-01, at: 2024-01-01 10:30:00}
        body: {day: 2024-01-01, when: 2024-01-01T10:30:00Z, days: [2024-02-03], text: "${input.t}"}
        """), registry=registry)
    out = mc.run("c", {"t": "x"}, registry=registry).output
    assert out["body"] == {"day": "2024-01-01", "when": "2024-01-01T10:30:00+00:00", "days": ["2024-02-03"],
                           "text": "x"}
    assert out["query"] == "since=2024-01-01&at=2024-01-01T10%3A30%3A00"


@pytest.mark.slow
@pytest.mark.parametrize("value, kind", [({"a", "b"}, "set"), (object(), "object"), (b"raw", "bytes"),
                                         (float("nan"), "nan")])
def test_a_value_json_cannot_carry_is_named_with_its_type(registry, echo, value, kind):
    mc.compose(client(f"{echo}/echo", 'body: {x: {y: "${input.v}"}}\n'), registry=registry)
    with pytest.raises(UserError) as info:
        mc.run("c", {"v": value}, registry=registry)
    assert "`body.x.y`" in str(info.value) and kind in str(info.value) and info.value.__cause__ is None


def test_arrays_in_the_body_are_sent_as_lists(registry, echo):
    import numpy as np
    mc.compose(client(f"{echo}/echo", 'body: {v: "${input.v}"}\n'), registry=registry)
    assert mc.run("c", {"v": np.array([1.5, 2.0], dtype=np.float32)}, registry=registry).output["body"] == \
        {"v": [1.5, 2.0]}


@pytest.mark.parametrize("value, says", [("José", "non-ASCII character ('é' at position 3)"),
                                         ("a\\nb", "line break or control character")])
def test_a_header_value_that_http_cannot_carry_is_named(registry, echo, value, says):
    mc.compose(client(f"{echo}/echo", f'headers: {{X-Name: "{value}"}}\nbody: {{}}\n'), registry=registry)
    with pytest.raises(UserError) as info:
        mc.run("c", {}, registry=registry)
    assert "`headers.X-Name`" in str(info.value) and says in str(info.value) and "Percent-encode" in str(info.value)


def test_a_secret_header_value_is_not_quoted(registry, echo, secret, monkeypatch):
    monkeypatch.setenv(ENV, TOKEN + "é")
    mc.compose(client(f"{echo}/echo", f'headers: {{Authorization: "Bearer ${{env.{ENV}}}"}}\nbody: {{}}\n'),
               registry=registry)
    with pytest.raises(UserError) as info:
        mc.run("c", {}, registry=registry)
    assert "`headers.Authorization`" in str(info.value) and TOKEN not in every_text(info.value)
    assert "position" not in str(info.value)


@pytest.mark.parametrize("endpoint, says", [
    ("127.0.0.1:8000/generate", "has no scheme"), ("localhost:8000/generate", "only http:// and https://"),
    ("ftp://127.0.0.1/x", "has the scheme `ftp`"), ("'http://[::1/x'", "is not a valid URL"),
    ("http:///x", "no valid host"), ("http://127.0.0.1:99999/x", "no valid host"),
])
@pytest.mark.slow
def test_a_malformed_endpoint_is_named_with_how_to_write_it(registry, endpoint, says):
    mc.compose(client(endpoint, "body: {}\n"), registry=registry)
    with pytest.raises(UserError) as info:
        mc.run("c", {}, registry=registry)
    message = str(info.value)
    assert "`endpoint`" in message and says in message and "http://" in message, message
    assert info.value.__cause__ is None


def test_a_malformed_base_url_is_named(registry):
    mc.compose("component:\n  id: c\n  type: http-client\n  base_url: 127.0.0.1:8000\n  path: /x\n", registry=registry)
    with pytest.raises(UserError, match="`base_url` has no scheme"):
        mc.run("c", {}, registry=registry)


# -- 4. Server-Sent Events, as the spec reads them --------------------------------------------------
def sse(registry, endpoint: str, chunks: list, output: str = "${response[]}", stream: bool = True):
    body = {"content_type": "text/event-stream", "chunks": chunks}
    import json
    mc.compose(client(f"{endpoint}/raw", f"body: {json.dumps(body)}\nstream_format: json\noutput: {output}\n"),
               registry=registry)
    sink = Collect()
    return mc.run("c", {}, stream=sink if stream else None, registry=registry).output, sink.chunks


def test_sse_keeps_the_spaces_of_a_text_stream(registry, echo):
    out, chunks = sse(registry, echo, ["data: Hello\n\n", "data:  world\n\n", ": keep-alive\n\n",
                                       "id: 3\nretry: 100\ndata: !\n\n", "data: [DONE]\n\n", "data: after\n\n"])
    assert out == "Hello world!" and chunks == ["Hello", " world", "!"]


def test_sse_merged_whole_keeps_the_spaces_too(registry, echo):
    out, _ = sse(registry, echo, ["data: Hello\r\n\r\n", "data:  world\r\n\r\n", "data: [DONE]\r\n\r\n"],
                 output="${response}", stream=False)
    assert out == "Hello world"


def test_sse_joins_the_lines_of_one_event(registry, echo):
    out, chunks = sse(registry, echo, ["data: line one\ndata: line two\n\n", "data: [DONE]\n\n"])
    assert out == "line one\nline two" and chunks == ["line one\nline two"]


def test_sse_json_split_over_two_data_lines(registry, echo):
    out, _ = sse(registry, echo, ['data: {"text":\ndata: " hi"}\n\n', 'data: {"text": " there"}\n\n'],
                 output="${response[].text}")
    assert out == " hi there"


def test_sse_an_error_event_is_a_server_error_quoting_its_data(registry, echo, secret):
    with pytest.raises(ServerError) as info:
        sse(registry, echo, ["data: Hel\n\n", 'event: error\ndata: {"message": "model exploded", "key": "${env.%s}"}\n\n'
                             % ENV, "data: never\n\n"])
    message = str(info.value)
    assert "sent an error event" in message and "model exploded" in message and '"key": "***"' in message
    assert TOKEN not in every_text(info.value)
