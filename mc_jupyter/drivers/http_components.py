"""``http-client`` (a server that already runs) and ``http-server`` (one the kernel manages).

``${response}`` is the parsed reply; with ``stream_format`` and an output that reads
``${response[]...}``, each event of the stream is bound in turn and the text grows in place.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..binding import env_fields, resolve_settings
from ..config.http_schema import ManageConfig, commands, parse_duration, render_late
from ..config.positions import clip
from ..errors import ConfigError, HttpError, ServerError
from ..secrets import scrub
from ..servers import http
from ..servers.limits import ConcurrencyLimit, RateLimiter
from ..servers.managed import DEFAULT_READY_TIMEOUT, ManagedServer
from ..servers.process import as_argv, port_in_use
from .base import Driver

PORTS = (1, 65535)
SECONDS = (0.0, math.inf)   # more than 0


def number(component_id: str, field: str, value: Any, raw: Any = None, integer: bool = False,
           bounds: Tuple[float, float] = SECONDS) -> Any:
    """A numeric field (``port``, ``manage.ready_timeout``, ``timeout``) as a number, or a ConfigError
    naming the field. Python's own ``int('<value>')`` error would quote the value, and a value read
    from ``${env.*}`` is a secret: it is never shown, nor chained (the error is raised outside any
    ``except``), only the variable it came from."""
    n: Any = None
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        n = float(value)
        if integer:
            n = int(n) if n.is_integer() else None
    low, high = bounds
    if n is not None and (low <= n if integer else low < n) and n <= high:
        return n
    names = [name for _, name in env_fields(raw)] or [
        k for k, v in os.environ.items() if len(v) >= 4 and v in str(value) and scrub(v) != v]
    secret = bool(names) or scrub(str(value)) != str(value)
    source = f" (read from {', '.join(f'`${{env.{v}}}`' for v in names)})" if names else ""
    shown = "the value is a secret, so it is not shown" if secret else f"got {scrub(repr(value))[:80]}"
    kind = (f"a whole number from {bounds[0]} to {bounds[1]}" if integer else "a number of seconds above 0")
    fix = ("Set the environment variable to a number, or write the number in the YAML." if names else
           f"Write a number, e.g. `{field.rsplit('.', 1)[-1]}: {8000 if integer else 30}`.")
    raise ConfigError(f"component `{component_id}`: `{field}`{source} must be {kind}; {shown}", hint=fix)


#: An http-server's port when the YAML gives none: model-compose's default.
DEFAULT_PORT = 8000


class HttpClient(Driver):
    """A server that already runs: each action's ``endpoint`` (or ``base_url`` and ``path``).

    Every run of the component passes its gates first: at most ``max_concurrent_count`` at once, then
    ``rate_limit`` (a token bucket and/or a minimum interval, across all its actions; the polls of a
    completion are not counted, as in model-compose). An action with ``completion: {type: polling}``
    sends its request, then polls until the status says done (:meth:`poll`); the run's result
    (``${result}`` and ``${response}`` in its ``output:``) is the last poll's reply.
    """

    streams = True
    result_name = "response"

    def __init__(self, component_id: str, config: Any):
        super().__init__(component_id, config)
        self._set_gates(config)
        self.polls = 0     # the polls of the latest completion

    def _set_gates(self, config: Any) -> None:
        rate = config.rate_limit
        self.limiter = None if rate is None else RateLimiter(
            rate.requests, parse_duration(rate.period) if rate.period is not None else 1.0, rate.burst,
            parse_duration(rate.interval) if rate.interval is not None else None)
        self.concurrency = ConcurrencyLimit(config.max_concurrent_count)

    def reconfigure(self, config: Any) -> None:
        super().reconfigure(config)
        self._set_gates(config)

    def load(self) -> None:
        self.device = self.base_url() or "—"

    def base_url(self) -> Optional[str]:
        return None

    def url(self, fields: Dict[str, Any]) -> str:
        endpoint = fields.get("endpoint")
        if endpoint:
            return http.check_url(str(endpoint), "endpoint")
        base = fields.get("base_url") or self.base_url()
        if not base:
            raise ConfigError(f"component `{self.component_id}` has no `endpoint:` (or `base_url:` and `path:`)",
                              hint="Add `endpoint: http://host:port/path`.")
        field = "base_url" if fields.get("base_url") else "path"
        return http.check_url(str(base).rstrip("/") + "/" + str(fields.get("path") or "").lstrip("/"), field)

    def wants_stream(self, fields: Dict[str, Any], per_chunk_output: bool) -> bool:
        return bool(fields.get("stream_format")) and per_chunk_output and not fields.get("completion")

    def timeout(self, fields: Dict[str, Any]) -> float:
        value = fields.get("timeout")
        return http.DEFAULT_TIMEOUT if value in (None, "") else number(self.component_id, "timeout", value)

    def run(self, fields: Dict[str, Any]) -> Any:
        url, timeout = self.url(fields), self.timeout(fields)
        with self.concurrency.slot():
            if self.limiter is not None:
                self.limiter.acquire()
            response = http.request(fields.get("method", "POST"), url, fields.get("headers") or {},
                                    fields.get("body"), fields.get("params"), timeout,
                                    merge=fields.get("stream_fragmented") is not False)
            if fields.get("completion"):
                return self.poll(fields["completion"], response, fields)
            return response

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[Any]:
        url, timeout = self.url(fields), self.timeout(fields)   # checked before the first chunk is asked for
        return self._gated_stream(fields, url, timeout, stop)

    def _gated_stream(self, fields: Dict[str, Any], url: str, timeout: float, stop: threading.Event) -> Iterator[Any]:
        with self.concurrency.slot():
            if self.limiter is not None:
                self.limiter.acquire()
            yield from http.stream(fields.get("method", "POST"), url, fields.get("headers") or {},
                                   fields.get("body"), fields.get("params"), fields.get("stream_format") or "json",
                                   stop, timeout)

    # -- completion: polling -------------------------------------------------------------------
    def poll(self, completion: Dict[str, Any], response: Any, fields: Dict[str, Any]) -> Any:
        """Wait ``interval``, ask the status endpoint, until its ``status`` (or its HTTP code, without
        ``status:``) is in ``success_when`` (return that reply) or ``fail_when`` (an HttpError), or
        ``timeout`` has passed (an HttpError). ``${response}`` in the completion is the first reply,
        ``${result}`` (in ``status:``) the poll's."""
        cid = self.component_id
        interval = parse_duration(completion.get("interval") if completion.get("interval") is not None else 5.0)
        limit = parse_duration(completion.get("timeout") if completion.get("timeout") is not None else 300.0)
        success = [str(v) for v in completion.get("success_when") or []]
        failure = [str(v) for v in completion.get("fail_when") or []]
        deadline = time.monotonic() + limit
        self.polls, status, result, url = 0, None, None, ""
        time.sleep(interval)
        while True:
            ask = render_late({k: v for k, v in completion.items() if k != "status"}, {"response": response})
            url = http.check_url(str(ask["endpoint"]), "completion.endpoint") if ask.get("endpoint") else \
                self.url({"base_url": fields.get("base_url"), "path": ask.get("path")})
            result, code = http.request_status(ask.get("method") or "GET", url, ask.get("headers") or {},
                                               ask.get("body"), ask.get("params"), self.timeout(fields))
            self.polls += 1
            if completion.get("status") is not None:
                status = render_late(completion["status"], {"response": response, "result": result})
                if str(status) in success:
                    return result
                if str(status) in failure:
                    raise HttpError(f"component `{cid}`: polling {url} reported the status `{clip(status)}`, which "
                                    f"`fail_when` lists as a failure (poll {self.polls}).\n  The reply: "
                                    f"{clip(scrub(_text(result)), 300)}")
            else:
                status = code
                if status_matches(code, success):
                    return result
                if status_matches(code, failure):
                    raise HttpError(f"component `{cid}`: polling {url} answered HTTP {code}, which `fail_when` "
                                    f"lists as a failure (poll {self.polls}).\n  The reply: "
                                    f"{clip(scrub(_text(result)), 300)}")
            if time.monotonic() + interval > deadline:
                raise HttpError(f"component `{cid}`: polling {url} did not reach a `success_when` status within "
                                f"{limit:g} s ({self.polls} polls; the last status was `{clip(status)}`).\n  Raise "
                                f"`completion.timeout`, or check `status:` and `success_when:` against the reply: "
                                f"{clip(scrub(_text(result)), 200)}")
            time.sleep(interval)


def status_matches(code: int, conditions: List[str]) -> bool:
    """model-compose's ``is_status_code_matched``: ``200`` exactly, ``2xx`` a range."""
    for condition in conditions:
        if condition.isdigit():
            if code == int(condition):
                return True
        elif condition.endswith("x") and condition.rstrip("x").isdigit():
            prefix = condition.rstrip("x")
            factor = 10 ** (len(condition) - len(prefix))
            if int(prefix) * factor <= code < (int(prefix) + 1) * factor:
                return True
    return False


def _text(value: Any) -> str:
    import json
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


class HttpServer(HttpClient):
    """A server the kernel manages (:class:`mc_jupyter.servers.managed.ManagedServer`): every field is
    checked here before anything runs; the lifecycle is the managed server's."""

    def __init__(self, component_id: str, config: Any):
        super().__init__(component_id, config)
        self.server: Optional[ManagedServer] = None

    @property
    def process(self):
        """The server's process tree (its ``pid``, its watchdog ``proc``), once started."""
        return self.server.process if self.server is not None else None

    def base_url(self) -> Optional[str]:
        if self.server is not None:
            return f"http://{self.server.address}"
        return f"http://{resolve_settings(self.config.host) or '127.0.0.1'}:{resolve_settings(self.config.port)}"

    def load(self) -> None:
        """Every field is checked before anything runs: a bad one starts nothing. ``${env.*}`` in the
        load fields is read now."""
        cid, config = self.component_id, self.config
        manage = config.manage or ManageConfig()
        start, install, build, clean, stop, env, working_dir, health_path, ready_timeout = (
            resolve_settings(value) for value in (manage.start, manage.install, manage.build, manage.clean,
                                                  manage.stop, manage.env, manage.working_dir, manage.health_path,
                                                  manage.ready_timeout))
        port, host = resolve_settings(config.port), resolve_settings(config.host) or "127.0.0.1"
        if start is None:
            raise ConfigError(f"http-server `{cid}` has no `manage.start` command",
                              hint="Give the command that starts the server, e.g. `start: [ollama, serve]` on the "
                                   "component or under `manage:`, or use `type: http-client` for a server that "
                                   "already runs.")
        if port in (None, ""):
            port = DEFAULT_PORT      # model-compose's default (the plan says so)
        port = number(cid, "port", port, config.port, integer=True, bounds=PORTS)
        ready_timeout = DEFAULT_READY_TIMEOUT if ready_timeout in (None, "") else \
            number(cid, "manage.ready_timeout", ready_timeout, manage.ready_timeout)
        stop = as_argv(stop, "manage.stop", cid) if stop is not None else None
        server = ManagedServer(cid, start, host, port, install=commands(install), build=commands(build),
                               clean=commands(clean), stop=stop, env=env, working_dir=working_dir,
                               health_path=health_path, ready_timeout=ready_timeout)
        try:
            socket.getaddrinfo(host, port)
        except (OSError, UnicodeError):
            raise ConfigError(f"http-server `{cid}`: `host` {scrub(str(host))!r} is not a host name or address "
                              f"this machine can resolve", hint="Leave `host:` out (127.0.0.1), or give a name "
                                                                "such as `localhost` or an address.") from None
        if port_in_use(host, port):
            raise ServerError(f"server `{cid}`: port {port} on {host} is already in use, so its "
                              f"server cannot start there.\n  Stop what listens on it (another kernel's server?), "
                              f"or change `port:` and the start command's port together.")
        self.server = server           # held before it starts, so the registry's unload always reaches it
        server.start()
        self.device = f"pid {server.process.pid} · {server.address}"

    def unload(self) -> None:
        if self.server is not None:
            self.server.stop()

    def info(self) -> Dict[str, Any]:
        out = super().info()
        if self.server is not None:
            out.update(self.server.info())
        return out

    def logs(self, n: int = 50) -> list:
        return self.server.process.tail(n) if self.server is not None else []

    def run(self, fields: Dict[str, Any]) -> Any:
        with self._explained():
            return super().run(fields)

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[Any]:
        with self._explained():
            yield from super().stream(fields, stop)

    @contextlib.contextmanager
    def _explained(self):
        """A request that fails because the server died says so, with the server's last log lines."""
        try:
            yield
        except HttpError as e:
            time.sleep(0.2)   # let the process finish exiting and the log reader catch its last lines
            if self.server is None or not self.server.died():
                raise
            process = self.server.process
            raise ServerError(f"{str(e).splitlines()[0]}\n  The server `{self.component_id}` exited (code "
                              f"{process.returncode}). Its last log lines:\n    "
                              + "\n    ".join(process.tail(15) or ["(no output)"])
                              + "\n  Compose it again to restart it.") from None
