"""http-server and http-client in model-compose 0.4.120's own shapes (issue #17): YAML written here in
that shape, composed and run against real local servers, values asserted."""

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

import mc_jupyter as mc
from mc_jupyter.config.http_schema import parse_duration
from mc_jupyter.config.loader import load_yaml
from mc_jupyter.config.schema import parse_compose
from mc_jupyter.errors import ConfigError, UserError
from mc_jupyter.servers.limits import RateLimiter

SERVER = str(Path(__file__).resolve().parent / "model_server.py")
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def install_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


class Recorder:
    """A local server in a thread: records each request (method, path, query, headers, body) and
    answers from ``routes`` (path -> a function of the request giving (status, JSON))."""

    def __init__(self, routes):
        self.requests, self.routes = [], routes
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                req = {"method": self.command, "path": path, "query": query, "time": time.monotonic(),
                       "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body": json.loads(raw) if raw else None}
                outer.requests.append(req)
                route = outer.routes.get(path)
                status, data = route(req) if route else (404, {"error": f"no route {path}"})
                out = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    made = []

    def make(routes):
        made.append(Recorder(routes))
        return made[-1]
    yield make
    for r in made:
        r.close()


def gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def load_compose(text: str):
    return parse_compose(*load_yaml(text))


def compose_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_compose(text)
    return info.value


# -- http-server: model-compose's echo-server shape --------------------------------------------------
@pytest.mark.slow
def test_echo_server_shape_start_directly_on_the_component_runs_and_stops_whole(registry, tmp_path):
    port = free_port()
    text = f"""
component:
  type: http-server
  runtime: process
  start: [ {PY}, {SERVER}, --port, "{port}" ]
  port: {port}
  action:
    method: POST
    path: /echo
    headers:
      Content-Type: application/json
    body:
      text: ${{input.text}}
    output:
      text: ${{response.body.text}}
"""
    plan = mc.compose(text, registry=registry)
    assert "`runtime: process` of `default`: model-compose would run it in a separate process" in repr(plan)
    entry = registry.entries["default"]
    assert entry.spec.config.manage.start[0] == PY           # moved under manage:
    pid = entry.driver.process.pid
    assert psutil.Process(pid).is_running()
    assert mc.run(inputs={"text": "hello there"}, registry=registry).output == {"text": "hello there"}
    registry.unload("default")
    assert gone(pid)
    assert not [p for p in psutil.process_iter(["cmdline"]) if f"{port}" in " ".join(p.info["cmdline"] or [])
                and SERVER in " ".join(p.info["cmdline"] or [])]


@pytest.mark.slow
def test_install_as_a_list_of_lists_build_and_clean_under_manage_scripts(registry, tmp_path, capsys):
    port = free_port()
    work = tmp_path / "srv"
    work.mkdir()
    text = f"""
component:
  id: srv
  type: http-server
  manage:
    scripts:
      install:
        - [{PY}, -c, "open('one.txt', 'w').write('1')"]
        - [{PY}, -c, "open('two.txt', 'w').write(open('one.txt').read() + '2')"]
      build: [{PY}, -c, "open('built.txt', 'w').write('b')"]
      clean: [[{PY}, -c, "import os; os.remove('built.txt')"]]
      start: [{PY}, {SERVER}, --port, "{port}"]
    working_dir: {work}
    env: {{GREETING: hi}}
  port: {port}
  base_path: /echo
  headers: {{X-Api-Version: "2"}}
  actions:
    - id: first
      path: /a
      headers: {{X-Trace: one}}
      body: {{n: 1}}
    - id: second
      body: {{n: 2}}
"""
    mc.compose(text, registry=registry)
    out = capsys.readouterr().out
    assert "srv: install finished" in out and "srv: build finished" in out
    assert (work / "two.txt").read_text() == "12" and (work / "built.txt").read_text() == "b"
    first = mc.run("component:srv", registry=registry).output
    assert first["body"] == {"n": 1}
    assert first["headers"]["x-api-version"] == "2" and first["headers"]["x-trace"] == "one"
    # base_path joined: /echo/a and /echo reach the test server's echo route (which answers /echo...)
    entry = registry.entries["srv"]
    assert entry.spec.actions["first"].fields["path"] == "/echo/a"
    assert entry.spec.actions["second"].fields["path"] == "/echo"
    assert "default" not in entry.spec.actions and entry.spec.default_action == "first"
    pid = entry.driver.process.pid
    registry.unload("srv")
    assert gone(pid)
    assert not (work / "built.txt").exists()          # clean ran after the stop
    mc.compose(text, registry=registry)                # clean forgot the markers: install and build again
    out = capsys.readouterr().out
    assert "srv: install finished" in out and (work / "built.txt").exists()
    registry.unload("srv")


# -- http-client: component-wide keys, rate limit, completion ----------------------------------------
def test_client_component_headers_merge_under_each_actions_and_base_url_is_component_wide(registry, recorder):
    server = recorder({"/v1/a": lambda r: (200, {"got": r["body"]}), "/v1/b": lambda r: (200, {"q": r["query"]})})
    text = f"""
component:
  id: api
  type: http-client
  base_url: {server.url}/v1
  headers:
    Authorization: Bearer abc
    X-Shared: component
  actions:
    - id: a
      path: /a
      headers: {{X-Shared: action}}
      body: {{text: "${{input.text}}"}}
      output: ${{response.got.text}}
    - id: b
      path: b
      method: GET
      params: {{k: "${{input.k | 3}}"}}
"""
    mc.compose(text, registry=registry)
    spec = registry.entries["api"].spec
    assert list(spec.actions) == ["a", "b"]             # no separate default action of the top keys
    workflow = """
workflow:
  jobs:
    - {id: one, component: api, action: a}
    - {id: two, component: api, action: b, depends_on: [one]}
"""
    mc.compose(workflow, registry=registry)
    out = mc.run(inputs={"text": "hi"}, registry=registry)
    assert out.jobs["one"] == "hi" and out.output == {"q": "k=3"}
    first, second = server.requests
    assert first["headers"]["authorization"] == "Bearer abc" and first["headers"]["x-shared"] == "action"
    assert second["headers"]["x-shared"] == "component" and second["method"] == "GET" and second["path"] == "/v1/b"


def test_polling_completion_pending_twice_then_done(registry, recorder):
    polls = []

    def status(req):
        polls.append(req)
        return 200, {"id": "job-7", "state": "pending" if len(polls) < 3 else "done", "text": "ready!"}
    server = recorder({"/jobs": lambda r: (202, {"id": "job-7"}), "/jobs/job-7": status})
    mc.compose(f"""
component:
  type: http-client
  base_url: {server.url}
  action:
    path: /jobs
    body: {{prompt: "${{input.prompt}}"}}
    completion:
      type: polling
      path: /jobs/${{response.id}}
      headers: {{X-Poll: "${{input.tag | p}}"}}
      status: ${{result.state}}
      success_when: done
      fail_when: [failed, error]
      interval: 50ms
      timeout: 10s
    output: ${{result.text}}
""", registry=registry)
    started = time.monotonic()
    assert mc.run(inputs={"prompt": "go"}, registry=registry).output == "ready!"
    assert time.monotonic() - started >= 0.15 - 0.02      # three waits of 50 ms
    assert len(polls) == 3 and registry.entries["default"].driver.polls == 3
    assert [r["method"] for r in polls] == ["GET"] * 3 and polls[0]["headers"]["x-poll"] == "p"
    assert server.requests[0]["body"] == {"prompt": "go"}


def test_polling_fail_when_is_a_clear_error(registry, recorder):
    n = []
    server = recorder({"/start": lambda r: (200, {"id": 1}),
                       "/status": lambda r: (n.append(1), (200, {"status": "running" if len(n) < 2 else "failed",
                                                                "detail": "out of credits"}))[1]})
    mc.compose(f"""
component:
  type: http-client
  endpoint: {server.url}/start
  completion:
    type: polling
    endpoint: {server.url}/status
    status: ${{result.status}}
    success_when: [completed]
    fail_when: [failed]
    interval: 0.02
""", registry=registry)
    with pytest.raises(UserError) as info:
        mc.run(registry=registry)
    message = str(info.value)
    assert f"polling {server.url}/status reported the status `failed`, which `fail_when` lists as a failure " \
           f"(poll 2)" in message
    assert "out of credits" in message


def test_polling_by_status_code_and_its_timeout(registry, recorder):
    server = recorder({"/go": lambda r: (200, {}), "/wait": lambda r: (202, {"still": "working"})})
    mc.compose(f"""
component:
  type: http-client
  base_url: {server.url}
  path: /go
  completion: {{type: polling, path: /wait, success_when: [200], fail_when: ["5xx"], interval: 20ms, timeout: 0.2}}
""", registry=registry)
    with pytest.raises(UserError) as info:
        mc.run(registry=registry)
    assert "did not reach a `success_when` status within 0.2 s" in str(info.value)
    assert "the last status was `202`" in str(info.value) and "Raise `completion.timeout`" in str(info.value)


def test_rate_limit_spaces_requests_across_actions(registry, recorder):
    server = recorder({"/x": lambda r: (200, {"ok": 1}), "/y": lambda r: (200, {"ok": 2})})
    mc.compose(f"""
component:
  id: limited
  type: http-client
  base_url: {server.url}
  rate_limit: 4/1s
  actions:
    - {{id: x, path: /x}}
    - {{id: y, path: /y}}
""", registry=registry)
    started = time.monotonic()
    for i in range(6):
        mc.run("component:limited", registry=registry) if i % 2 == 0 else \
            registry.entries["limited"].driver.run({"base_url": server.url, "path": "/y", "method": "POST"})
    elapsed = time.monotonic() - started
    # 4 at once (the bucket's burst), then one every 0.25 s: the 6th goes at about 0.5 s
    assert 0.4 <= elapsed <= 2.5, elapsed
    times = [r["time"] - server.requests[0]["time"] for r in server.requests]
    # at most 4 + 4·t requests by t seconds after the first: the 5th at 0.25 s or later, the 6th at 0.5 s
    assert times[4] >= 0.2 and times[5] >= 0.45
    assert {r["path"] for r in server.requests} == {"/x", "/y"}


def test_rate_limit_interval_form_and_the_limiter_itself():
    clock = [0.0]
    limiter = RateLimiter(interval=0.5, clock=lambda: clock[0], sleep=lambda s: None)
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.5, 1.0]
    bucket = RateLimiter(requests=2, period=1.0, burst=3, clock=lambda: clock[0], sleep=lambda s: None)
    assert [round(bucket.reserve(), 3) for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert parse_duration("300ms") == 0.3 and parse_duration("2m") == 120 and parse_duration("1:30") == 90
    config = load_compose("component: {type: http-client, endpoint: 'http://h/x', "
                          "rate_limit: {requests: 5, period: 2m, burst: 10, interval: 100ms}}")
    limit = config.components["default"].config.rate_limit
    assert (limit.requests, limit.period, limit.burst, limit.interval) == (5, "2m", 10, "100ms")
    assert load_compose("component: {type: http-client, endpoint: 'http://h/x', rate_limit: 5/m}") \
        .components["default"].config.rate_limit.period == "1m"


def test_max_concurrent_count_is_a_real_limit(registry, recorder):
    live, peak = [0], [0]
    lock = threading.Lock()

    def slow(req):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.15)
        with lock:
            live[0] -= 1
        return 200, {}
    server = recorder({"/slow": slow})
    mc.compose(f"component: {{id: c, type: http-client, endpoint: {server.url}/slow, max_concurrent_count: 2}}",
               registry=registry)
    driver = registry.entries["c"].driver
    threads = [threading.Thread(target=driver.run, args=({"endpoint": f"{server.url}/slow"},)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(server.requests) == 5 and peak[0] == 2


def test_stream_fragmented_false_keeps_the_events_a_list(registry):
    import subprocess
    port = free_port()
    proc = subprocess.Popen([PY, SERVER, "--port", str(port)])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            time.sleep(0.05)
        mc.compose(f"""
component:
  type: http-client
  base_url: http://127.0.0.1:{port}
  actions:
    - id: pieces
      path: /api/generate
      body: {{prompt: a b}}
      stream_format: json
      stream_fragmented: false
""", registry=registry)
        events = mc.run(registry=registry).output
        assert [e["response"] for e in events] == ["You", " said:", " a", " b", ""] and events[-1]["done"] is True
    finally:
        proc.terminate()
        proc.wait(5)


# -- compose-time errors --------------------------------------------------------------------------
def test_path_without_base_url_is_a_compose_time_error():
    e = compose_error("""
component:
  type: http-client
  actions:
    - id: ask
      path: /v1/ask
""")
    assert e.line == 6 and e.path == "component.actions[0].path"
    assert "action `ask` uses `path:` but the component has no `base_url:`" in str(e)
    assert "Add `base_url: http://host:port`" in e.hint


def test_endpoint_and_path_together_and_a_completion_without_either():
    e = compose_error("component: {type: http-client, base_url: 'http://h', endpoint: 'http://h/x', path: /x}")
    assert "both `endpoint:` and `path:`" in str(e)
    e = compose_error("""
component:
  type: http-client
  endpoint: http://h/x
  completion:
    type: polling
    status: ${result.s}
""")
    assert "needs `endpoint:` or `path:`" in str(e) and e.line == 5


def test_callback_completion_is_refused_at_compose_time():
    e = compose_error("""
component:
  type: http-server
  start: [python, app.py]
  port: 8000
  action:
    path: /run
    completion:
      type: callback
      wait_for: ${response.task_id}
""")
    assert "needs a public address a notebook does not have (gateway/tunnel); out of scope" in str(e)
    assert e.path == "component.action.completion.type" and e.line == 9
    assert "type: polling" in e.hint


def test_unknown_keys_keep_did_you_mean_and_valid_keys():
    e = compose_error("component: {type: http-client, endpoint: 'http://h/x', rate_limit: {requets: 3}}")
    assert "unknown key `requets` (did you mean `requests`?)" in str(e) and "`interval`" in e.hint
    e = compose_error("""
component:
  type: http-server
  manage:
    scripts:
      instal: [pip, install, x]
      start: [python, app.py]
  port: 8000
""")
    assert "unknown key `instal` (did you mean `install`?)" in str(e) and e.line == 6
    e = compose_error("component: {type: http-client, endpoint: 'http://h/x', completion: "
                      "{type: polling, endpoint: 'http://h/s', sucess_when: [done]}}")
    assert "(did you mean `success_when`?)" in str(e)
    e = compose_error("component: {type: http-client, endpoint: 'http://h/x', base_pth: /a}")
    assert "(did you mean `base_path`?)" in str(e)


def test_bad_durations_and_rates_and_keys_of_the_other_type():
    e = compose_error("component: {type: http-client, endpoint: 'http://h/x', completion: "
                      "{type: polling, endpoint: 'http://h/s', interval: soon}}")
    assert "`interval: soon` is not a duration above 0" in str(e) and "`300ms`" in e.hint
    e = compose_error("component: {type: http-client, endpoint: 'http://h/x', rate_limit: ten per second}")
    assert "is not a rate" in str(e) and "`10/1s`" in e.hint
    e = compose_error("component: {type: http-client, endpoint: 'http://h/x', rate_limit: {burst: 3}}")
    assert "needs `requests:`" in str(e)
    e = compose_error("component: {type: http-client, endpoint: 'http://h/x', start: [python, x.py]}")
    assert "`start:` is a key of an http-server, not of an http-client" in str(e)
    e = compose_error("component: {type: http-server, start: [a], port: 1, manage: {start: [b]}}")
    assert "`start:` is given on the component and `manage:` too" in str(e)


def test_a_moved_start_keeps_its_line_for_errors():
    e = compose_error("""
component:
  type: http-server
  port: 8000
  start: {cmd: serve}
""")
    assert e.line == 5 and e.path == "component.manage.start"


def test_default_component_key_is_accepted():
    config = load_compose("""
components:
  - {id: a, type: http-client, endpoint: 'http://h/a'}
  - {id: b, type: http-client, endpoint: 'http://h/b', default: true}
""")
    assert config.components["b"].config.default is True and config.components["a"].config.default is False
