"""Issue #15, class 1: a ``${env.*}`` value that a field converts (to a number, a port, a timeout)
fails as a user error naming the field and the variable, and no exception that reaches the user
carries the value: not its text, not its args, not a cause or context in its chain.

Each case puts a unique token into the environment, uses it where a number belongs, and searches the
whole formatted exception (``traceback.format_exception`` prints every cause and context), its args,
and what a real IPython shell prints for the cell.
"""

from __future__ import annotations

import io
import secrets
import socket
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

import mc_jupyter as mc
from mc_jupyter.binding import leaks_secret, secret_safe
from mc_jupyter.errors import UserError

TOKEN = f"tok{secrets.token_hex(10)}"
ENV = "MC_TEST_SECRET_NUMBER"


@pytest.fixture(autouse=True)
def secret_env(monkeypatch):
    monkeypatch.setenv(ENV, TOKEN)
    yield
    mc.down()


def every_text(e: BaseException) -> str:
    """Everything a traceback shows of ``e``, plus every link's args and attributes."""
    parts = ["".join(traceback.format_exception(e)), repr(e)]
    seen, link = set(), e
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        parts += [repr(link.args), repr(vars(link)) if hasattr(link, "__dict__") else ""]
        link = link.__cause__ or link.__context__
    return "\n".join(parts)


def assert_masked(e: BaseException, *named: str) -> str:
    assert isinstance(e, UserError), f"{type(e).__name__}: {e}"
    text = every_text(e)
    assert TOKEN not in text
    assert e.__cause__ is None and e.__context__ is None, "the chain must be cut"
    for fragment in named:
        assert fragment in str(e), (fragment, str(e))
    return str(e)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_writer_with(models, param: str) -> BaseException:
    """Compose a tiny writer whose ``params`` has ``param`` (a YAML line), run it, return the error."""
    mc.compose(f"""
component:
  id: writer
  type: model
  task: text-generation
  model: {models["causal"]}
  text: ${{input.prompt}}
  params:
    {param}
""")
    with pytest.raises(Exception) as info:
        mc.run("writer", {"prompt": "hello"})
    return info.value


def test_a_generation_parameter_from_env_that_is_not_a_number(models):
    message = assert_masked(run_writer_with(models, f"max_output_length: ${{env.{ENV}}}"), "max_output_length", ENV)
    assert "***" in message or "not shown" in message
    assert mc.status().rows[0]["state"] == "ready", "the model stays loaded"


def test_a_temperature_from_env_mixed_into_text(models):
    """The value is interpolated into a longer text, so the raw error quotes a string that holds it."""
    assert_masked(run_writer_with(models, f'temperature: "0.${{env.{ENV}}}"'), "temperature")


def test_a_port_from_env_that_is_not_a_number():
    with pytest.raises(Exception) as info:
        mc.compose(f"""
component:
  id: srv
  type: http-server
  manage:
    start: [{sys.executable!r}, -c, "import time; time.sleep(30)"]
    ready_timeout: 2
  port: ${{env.{ENV}}}
  path: /
""")
    assert_masked(info.value, "port")
    assert mc.status().rows == []


def test_a_ready_timeout_from_env_that_is_not_a_number():
    with pytest.raises(Exception) as info:
        mc.compose(f"""
component:
  id: srv
  type: http-server
  manage:
    start: [{sys.executable!r}, -m, http.server, "{free_port()}"]
    ready_timeout: ${{env.{ENV}}}
  port: 1
  path: /
""")
    assert_masked(info.value, "ready_timeout")


def test_an_http_client_timeout_from_env_that_is_not_a_number():
    mc.compose(f"""
component:
  id: client
  type: http-client
  endpoint: http://127.0.0.1:{free_port()}/x
  method: GET
  timeout: ${{env.{ENV}}}
""")
    with pytest.raises(Exception) as info:
        mc.run("client", {})
    assert_masked(info.value, "timeout")


CUSTOM = '''
class Model:
    def __init__(self, settings):
        self.settings = settings
    def load(self):
        pass
    def run(self, fields):
        try:
            float(fields["params"]["temperature"])
        except ValueError as e:
            raise RuntimeError("the scale could not be read") from e   # the value is in the cause only
        return "ok"
'''


def test_a_secret_only_in_the_cause_of_a_driver_error(tmp_path):
    (tmp_path / "leaky.py").write_text(CUSTOM)
    mc.compose(f"""
component:
  id: custom
  type: model
  task: text-generation
  driver: custom
  model: {tmp_path}
  class: {tmp_path / 'leaky.py'}:Model
  text: ${{input.prompt}}
  params: {{temperature: "${{env.{ENV}}}"}}
""")
    with pytest.raises(Exception) as info:
        mc.run("custom", {"prompt": "x"})
    assert_masked(info.value, "params.temperature")


def test_the_shell_shows_a_message_without_the_value(ip, models):
    from tests.conftest import run_cell
    run_cell(ip, f"""%%compose
component:
  id: writer
  type: model
  task: text-generation
  model: {models["causal"]}
  text: ${{input.prompt}}
  params:
    max_output_length: ${{env.{ENV}}}
""")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        result = ip.run_cell("%%run writer\nprompt: hi\n")
    assert result.error_in_exec is not None
    shown = out.getvalue() + err.getvalue() + every_text(result.error_in_exec)
    assert TOKEN not in shown
    assert "max_output_length" in shown


def test_errors_without_a_secret_keep_their_chain():
    """The guard only acts on chains that hold a secret: other errors keep their cause for debugging."""
    try:
        try:
            int("seven")
        except ValueError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as e:
        assert not leaks_secret(e)
        assert secret_safe(e, "job") is e
        assert isinstance(e.__cause__, ValueError)
