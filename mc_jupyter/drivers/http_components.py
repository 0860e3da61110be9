"""``http-client`` (a server that already runs) and ``http-server`` (one the kernel manages).

``${response}`` is the parsed reply; with ``stream_format`` and an output that reads
``${response[]...}``, each event of the stream is bound in turn and the text grows in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shlex
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from ..binding import env_fields, resolve_settings
from ..secrets import scrub
from ..errors import ConfigError
from ..servers import http
from ..errors import ServerError
from ..servers.process import ManagedProcess, ServerState, as_argv, port_in_use
from .base import Driver

DEFAULT_READY_TIMEOUT = 120.0
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


class HttpClient(Driver):
    streams = True
    result_name = "response"

    def load(self) -> None:
        self.device = self.base_url() or "—"

    def base_url(self) -> Optional[str]:
        return self.settings.get("base_url")

    def url(self, fields: Dict[str, Any]) -> str:
        endpoint = fields.get("endpoint") or self.settings.get("endpoint")
        if endpoint:
            return http.check_url(str(endpoint), "endpoint")
        base = fields.get("base_url") or self.base_url()
        if not base:
            raise ConfigError(f"component `{self.component_id}` has no `endpoint:` (or `base_url:` and `path:`)",
                              hint="Add `endpoint: http://host:port/path`.")
        field = "base_url" if (fields.get("base_url") or self.settings.get("base_url")) else "path"
        return http.check_url(str(base).rstrip("/") + "/" + str(fields.get("path") or "").lstrip("/"), field)

    def wants_stream(self, fields: Dict[str, Any], per_chunk_output: bool) -> bool:
        return bool(fields.get("stream_format")) and per_chunk_output

    def timeout(self, fields: Dict[str, Any]) -> float:
        value = fields.get("timeout")
        return http.DEFAULT_TIMEOUT if value in (None, "") else number(self.component_id, "timeout", value)

    def run(self, fields: Dict[str, Any]) -> Any:
        url, timeout = self.url(fields), self.timeout(fields)
        return http.request(fields.get("method", "POST"), url, fields.get("headers") or {},
                            fields.get("body"), fields.get("params"), timeout)

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[Any]:
        url, timeout = self.url(fields), self.timeout(fields)   # checked before the first chunk is asked for
        return http.stream(fields.get("method", "POST"), url, fields.get("headers") or {},
                           fields.get("body"), fields.get("params"), fields.get("stream_format") or "json", stop,
                           timeout)


class HttpServer(HttpClient):
    """Installs (once per distinct command), starts, waits for, and stops a server process."""

    def __init__(self, component_id: str, settings: Dict[str, Any]):
        super().__init__(component_id, settings)
        self.process: Optional[ManagedProcess] = None
        self.stop_argv: Optional[list] = None
        self.address: Optional[str] = None   # host:port, once checked

    def base_url(self) -> Optional[str]:
        address = self.address or (f"{resolve_settings(self.settings.get('host')) or '127.0.0.1'}:"
                                   f"{resolve_settings(self.settings.get('port'))}")
        return f"http://{address}"

    def load(self) -> None:
        """Every field is checked before anything runs: a bad one starts nothing."""
        cid, raw = self.component_id, self.settings.get("manage") or {}
        manage = resolve_settings(raw)
        port = resolve_settings(self.settings.get("port"))
        host = resolve_settings(self.settings.get("host")) or "127.0.0.1"
        if manage.get("start") is None:
            raise ConfigError(f"http-server `{cid}` has no `manage.start` command",
                              hint="Give the command that starts the server, e.g. `start: [ollama, serve]`, or "
                                   "use `type: http-client` for a server that already runs.")
        if port in (None, ""):
            raise ConfigError(f"http-server `{cid}` has no `port:`",
                              hint="Give the port the server listens on, e.g. `port: 8000`.")
        port = number(cid, "port", port, self.settings.get("port"), integer=True, bounds=PORTS)
        ready_timeout = DEFAULT_READY_TIMEOUT if manage.get("ready_timeout") in (None, "") else \
            number(cid, "manage.ready_timeout", manage["ready_timeout"], raw.get("ready_timeout"))
        install = as_argv(manage["install"], "manage.install", cid) if manage.get("install") is not None else None
        self.stop_argv = as_argv(manage["stop"], "manage.stop", cid) if manage.get("stop") is not None else None
        process = ManagedProcess(cid, manage["start"], manage.get("env"), manage.get("working_dir"))
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
        if install:
            run_install(cid, install, manage.get("env"), manage.get("working_dir"))
        self.process = process
        self.process.start()
        try:
            wait_ready(self.process, host, port, manage.get("health_path"), ready_timeout)
        except BaseException:
            self.process.stop()
            raise
        self.process.state = ServerState.RUNNING
        self.address = f"{host}:{port}"
        self.device = f"pid {self.process.pid} · {self.address}"

    def unload(self) -> None:
        if self.process is None:
            return
        manage = resolve_settings(self.settings.get("manage") or {})
        if self.stop_argv and self.process.alive():   # the server's own way down first, then the signals
            try:
                subprocess.run(self.stop_argv, capture_output=True, timeout=30, cwd=manage.get("working_dir"),
                               env=dict(os.environ, **{k: str(v) for k, v in (manage.get("env") or {}).items()}))
            except (OSError, subprocess.TimeoutExpired) as e:
                self.process.log.append(f"[mc_jupyter] manage.stop failed: {scrub(str(e))}")
        self.process.stop()

    def info(self) -> Dict[str, Any]:
        out = super().info()
        if self.process is not None:
            alive = self.process.alive()
            out["server_state"] = "running" if alive else "stopped"
            out["pid"] = self.process.pid
        return out

    def logs(self, n: int = 50) -> list:
        return self.process.tail(n) if self.process else []

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
        except http.HttpError as e:
            time.sleep(0.2)   # let the process finish exiting and the log reader catch its last lines
            if self.process is None or self.process.alive():
                raise
            code = self.process.returncode
            self.process.state = ServerState.STOPPED
            raise ServerError(f"{str(e).splitlines()[0]}\n  The server `{self.component_id}` exited (code {code}). "
                              f"Its last log lines:\n    " + "\n    ".join(self.process.tail(15) or ["(no output)"])
                              + "\n  Compose it again to restart it.") from None


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


def _install_marker(argv: list) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mc_jupyter" / "installs"
    return root / hashlib.sha256(shlex.join(argv).encode()).hexdigest()[:24]


def run_install(name: str, command: Any, env: Optional[Dict[str, Any]], working_dir: Optional[str]) -> bool:
    """Run ``manage.install`` once per distinct command (a marker file remembers); True if it ran."""
    argv = as_argv(command, "manage.install", name)
    marker = _install_marker(argv)
    if marker.exists():
        return False
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=working_dir or None,
                          env=dict(os.environ, **{k: str(v) for k, v in (env or {}).items()}))
    output = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode != 0:
        raise ServerError(f"server `{name}`: the install command failed (exit {proc.returncode}). Its last lines:\n    "
                          + "\n    ".join(output[-15:] or ["(no output)"]))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(shlex.join(argv))
    _show_collapsed(f"{name}: install finished in {time.monotonic() - started:.1f} s ({len(output)} lines of output)",
                    output)
    return True


def _show_collapsed(summary: str, lines: list) -> None:
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
