"""Issue #15, Hardening II: failing commands change nothing; deep, odd or long YAML is a clear message.

A. Every magic and API call checks all its arguments before it acts (``%mc unload A B`` with an
   unknown ``B`` keeps ``A``).
B. Deep nesting (``"[" * 5000``), files that cannot be read, a mapping given from Python.
C. Valid YAML read as YAML says (merge keys), odd keys and tags named as written, long values cut,
   and ``%%run`` without an id refusing to guess between several workflows.

Everything runs through the real loader, schema, registry and IPython shell.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

import mc_jupyter as mc
from mc_jupyter import api
from mc_jupyter.config.loader import MAX_DEPTH
from mc_jupyter.errors import ConfigError, UserError
from tests.conftest import run_cell

SERVER = str(Path(__file__).resolve().parent / "model_server.py")


def error_of(text, **kw) -> str:
    with pytest.raises(UserError) as info:
        mc.read_config(text, **kw)
    return str(info.value)


def usage_error(ip, cell: str) -> str:
    with pytest.raises(UsageError) as info:
        run_cell(ip, cell)
    message = str(info.value)
    assert "Traceback" not in message
    return message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def classifier(models, cid: str = "clf") -> str:
    return f"""
  - id: {cid}
    type: model
    task: text-classification
    model: {models['classifier']}
    text: ${{input.text}}
"""


def state() -> dict:
    reg = mc.REGISTRY
    with reg.lock:
        return {"snapshot": reg.snapshot(), "entries": {k: id(v) for k, v in reg.entries.items()},
                "drivers": {k: id(v.driver) for k, v in reg.entries.items()},
                "workflows": {k: id(v) for k, v in reg.workflows.items()}, "target": reg.default_target}


# ------------------------------------------------------------------------------------------------
# A. a failing command changes nothing


def compose_three(shell, models) -> dict:
    """A classifier, an http-client and a managed server (tests/model_server.py)."""
    port = free_port()
    run_cell(shell, "%%compose\ncomponents:" + classifier(models) + textwrap.dedent(f"""
        - id: web
          type: http-client
          endpoint: http://127.0.0.1:{free_port()}/v1/completions
        - id: srv
          type: http-server
          manage:
            start: [{sys.executable}, {SERVER}, --port, "{port}"]
            ready_timeout: 30
            health_path: /health
          port: {port}
          path: /api/generate
        """).replace("\n", "\n  "))
    return {"shell": shell, "clf": mc.REGISTRY.get("clf").driver.model,
            "pid": mc.REGISTRY.get("srv").driver.process.pid}


@pytest.fixture(scope="module")
def kept_once(models):
    from IPython.testing.globalipapp import get_ipython
    shell = get_ipython()
    shell.run_line_magic("load_ext", "mc_jupyter")
    mc.down()
    yield compose_three(shell, models)
    mc.down()


@pytest.fixture
def kept(kept_once, models):
    """The three, composed once for the tests that must change nothing (placed first in this file);
    composed again after a test that changed them, so that one failure does not fail the next."""
    yield kept_once
    entry = mc.REGISTRY.entries.get("clf")
    if entry is None or entry.driver is None or entry.driver.model is not kept_once["clf"] \
            or "srv" not in mc.REGISTRY.entries or "web" not in mc.REGISTRY.entries:
        mc.down()
        kept_once.update(compose_three(kept_once["shell"], models))


@pytest.fixture
def loaded(ip, models):
    """The three, for a test that unloads or stops them."""
    return compose_three(ip, models)


def unchanged(kept, before) -> None:
    assert state() == before
    assert mc.REGISTRY.get("clf").driver.model is kept["clf"]
    assert mc.REGISTRY.get("srv").driver.process.pid == kept["pid"]


@pytest.mark.parametrize("line, fragments", [
    ("%mc unload clf nope", ["no component `nope` is loaded", "Nothing was unloaded"]),
    ("%mc unload clf web srv clff", ["no component `clff` is loaded", "(did you mean `clf`?)"]),
    ("%mc stop srv clf", ["component `clf` is a model, not a managed server", "%mc unload clf"]),
    ("%mc stop web", ["component `web` is an http-client, not a managed server"]),
    ("%mc stop srv nope", ["no component `nope` is loaded"]),
    ("%mc unload clf " + "x" * 5000, ["no component `xxxx", "…(5,000 characters)"]),
    ("%mc logs srv ٣", ["is not a number of lines"]),
])
def test_a_magic_that_fails_on_any_argument_acts_on_none(kept, line, fragments):
    before = state()
    message = usage_error(kept["shell"], line)
    assert all(f in message for f in fragments), message
    assert len(message) < 600
    unchanged(kept, before)


@pytest.mark.parametrize("call, fragments", [
    (lambda: mc.unload(["clf", "nope"]), ["no component `nope` is loaded"]),
    (lambda: mc.unload(["clf", 5]), ["mc.unload takes a component id (a str) or a list of them, not an int"]),
    (lambda: mc.unload(5), ["not an int"]),
    (lambda: mc.unload(None), ["not a NoneType"]),
    (lambda: mc.unload([]), ["not an empty list"]),
    (lambda: mc.unload({"clf": 1}), ["not a dict"]),
    (lambda: api.stop(["srv", "clf"]), ["component `clf` is a model, not a managed server"]),
    (lambda: mc.logs(3), ["mc.logs takes a component id (a str), not an int"]),
    (lambda: mc.logs("srv", -1), ["`lines` is a number of lines (0 or more), not -1"]),
    (lambda: mc.logs("srv", "10"), ["not '10'"]),
    (lambda: mc.logs("srv", True), ["not True"]),
    (lambda: mc.run(5), ["mc.run takes the id of a workflow or component (a str) as `target`, not an int"]),
    (lambda: mc.run("clf", ["a great film"]), ["mc.run takes its inputs as a mapping", "not a list"]),
    (lambda: mc.run("clf", "a great film"), ["not a str"]),
    (lambda: mc.compose("component: {id: x, task: text-classification}", file="f.yaml"),
     ["give either YAML text or `file=`, not both"]),
])
def test_an_api_call_with_a_bad_argument_is_a_user_error_and_changes_nothing(kept, call, fragments):
    before = state()
    with pytest.raises(UserError) as info:
        call()
    assert all(f in str(info.value) for f in fragments), str(info.value)
    unchanged(kept, before)


def test_a_long_unload_id_is_cut(kept):
    with pytest.raises(UserError) as info:
        mc.unload("y" * 21000)
    assert len(str(info.value)) < 400 and "…(21,000 characters)" in str(info.value)


@pytest.mark.slow
def test_a_component_running_a_job_keeps_the_others_of_the_same_unload(ip, loaded):
    before = state()
    with mc.REGISTRY.use("web"):       # marked in use, as a run does
        message = usage_error(ip, "%mc unload clf web")
    assert "component `web` is running a job right now" in message
    assert state() == before and mc.REGISTRY.get("clf").driver.model is loaded["clf"]
    run_cell(ip, "%mc unload clf web clf")          # a repeated id is one id
    assert sorted(state()["entries"]) == ["srv"]


def test_stop_and_logs_of_a_managed_server(ip, loaded, capsys):
    run_cell(ip, "%mc logs srv 0")
    assert capsys.readouterr().out.strip() == ""     # 0 lines is none, not all of them
    assert mc.logs("srv", 0) == [] and len(mc.logs("srv", 1)) <= 1
    run_cell(ip, "%mc stop srv")
    assert "stopped srv" in capsys.readouterr().out
    assert sorted(state()["entries"]) == ["clf", "web"]


def test_run_dash_o_with_a_name_that_is_not_a_variable_runs_nothing(ip, models):
    run_cell(ip, "%%compose\ncomponents:" + classifier(models))
    ip.user_ns.pop("_", None)
    for name in ("1st", "a.b", "class"):
        message = usage_error(ip, f"%%run clf -o {name}\ntext: a great film\n")
        assert f"-o takes the name of a Python variable, not `{name}`" in message
        assert name not in ip.user_ns and "_" not in ip.user_ns


# ------------------------------------------------------------------------------------------------
# B. deep nesting, unreadable files, a mapping from Python


DEEP = {
    "flow-lists": "component: " + "[" * 5000 + "]" * 5000 + "\n",
    "unclosed-flow-lists": "component: " + "[" * 5000 + "\n",
    "flow-mappings": "component: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "block-mappings": "".join("  " * i + "a:\n" for i in range(1000)),
    "block-lists": "component:\n  options:\n" + "".join("  " * (i + 2) + "-\n" for i in range(1000)),
    "complex-keys": "? " * 3000 + "a\n",
}


@pytest.mark.parametrize("name", DEEP)
def test_yaml_nested_thousands_deep_is_a_located_error_not_a_recursion_error(name):
    message = error_of(DEEP[name])
    assert f"the YAML is nested deeper than {MAX_DEPTH} levels" in message
    assert message.startswith("line ") and "check for an unclosed `[`" in message and len(message) < 400


def test_the_nesting_limit_is_the_one_the_message_names(ip):
    def body(depth):   # `body:` of an http-client, nested `depth` levels below the top
        return ("component:\n  id: deep\n  type: http-client\n  endpoint: http://127.0.0.1:9/\n  body: "
                + "[" * (depth - 2) + "x" + "]" * (depth - 2) + "\n")
    run_cell(ip, "%%compose --dry-run\n" + body(MAX_DEPTH))   # compiled, fingerprinted, planned: no recursion error
    run_cell(ip, "%%compose\n" + body(MAX_DEPTH))
    assert [r["id"] for r in mc.REGISTRY.snapshot()] == ["deep"]
    deep_input = "x: " + "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1) + "\n"
    assert "cannot connect to http://127.0.0.1:9/" in usage_error(ip, "%%run deep\n" + deep_input)   # rendered, sent
    assert f"nested deeper than {MAX_DEPTH} levels" in usage_error(ip, "%%compose\n" + body(MAX_DEPTH + 1))
    assert "line 6, at `component.body[0][0][0][0]…`" in usage_error(ip, "%%compose\n" + body(MAX_DEPTH + 1))


def test_aliases_that_nest_or_repeat_past_the_limits_are_refused():
    inner = "[" * 60 + "x" + "]" * 60
    deep = f"component:\n  options:\n    a: &deep {inner}\n    b: {'[' * 60}*deep{']' * 60}\n"
    assert f"nested deeper than {MAX_DEPTH} levels" in error_of(deep)
    laughs = "component:\n  options:\n    l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 7))
    started = time.perf_counter()
    assert "the `*aliases` repeat their `&anchors` into more than 100,000 values" in error_of(laughs)
    assert time.perf_counter() - started < 10


def test_a_deep_or_looping_run_body_is_a_clear_error(ip, models):
    run_cell(ip, "%%compose\ncomponents:" + classifier(models))
    message = usage_error(ip, "%%run clf\ntext: " + "[" * 5000 + "\n")
    assert message.startswith("line 2") and f"nested deeper than {MAX_DEPTH} levels" in message
    message = usage_error(ip, "%%run clf\ntext: &a\n  b: *a\n")
    assert "loop" in message


@pytest.fixture
def files(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("component:\n  id: probe\n  title: caf\xe9\n".encode("latin-1"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "big.yaml").write_bytes(b"#" * (11 * 2**20))
    (tmp_path / "bom.yaml").write_bytes("component: {id: bom, type: http-client, endpoint: http://127.0.0.1:9/}\n"
                                        .encode("utf-8-sig"))
    return tmp_path


def test_a_compose_file_that_is_not_utf8_names_the_byte_and_the_line(ip, files):
    message = usage_error(ip, f"%compose -f {files / 'latin1.yaml'}")
    assert message.startswith("line 3: the compose file") and "is not UTF-8 text: the byte 0xe9 at offset 35" in message
    assert "Save the file as UTF-8" in message
    run_cell(ip, f"%compose -f {files / 'bom.yaml'}")            # a UTF-8 byte-order mark is fine
    assert [r["id"] for r in mc.REGISTRY.snapshot()] == ["bom"]


def test_a_compose_file_that_is_a_folder_a_device_or_huge_is_a_clear_error(ip, files):
    before = state()
    for path, fragment in ((files / "folder", "is a folder, not a YAML file"), ("/dev/null", "is not a regular file"),
                           (files / "big.yaml", "is larger than 10 MiB"),
                           (files / "missing.yaml", "does not exist (looked at")):
        message = usage_error(ip, f"%compose -f {path}")
        assert f"the compose file `{path}` {fragment}" in message, message
    with pytest.raises(UserError, match="takes the path of a YAML file"):
        mc.compose(file=42)
    assert state() == before


def test_a_compose_file_that_cannot_be_read_says_permission_denied(ip, files):
    path = files / "secret.yaml"
    path.write_text("component: {id: probe, task: text-classification}\n")
    path.chmod(0)
    try:
        open(path).close()
        path = Path("/proc/sys/vm/drop_caches")   # root reads any mode-0 file: a file even root may not read
        try:
            open(path).close()
            pytest.skip("no file here that this user cannot read")
        except PermissionError:
            pass
    except PermissionError:
        pass
    finally:
        (files / "secret.yaml").chmod(stat.S_IRUSR | stat.S_IWUSR)
    message = usage_error(ip, f"%compose -f {path}")
    assert f"the compose file `{path}` cannot be read: permission denied" in message and "ls -l" in message


def test_compose_takes_a_mapping_from_python(ip, models):
    data = {"components": ({"id": "clf", "task": "text-classification", "model": str(models["classifier"]),
                            "text": "${input.text}", "labels": {0: "bad", 1: "good"}},),
            "workflow": {"id": "w", "jobs": [{"component": "clf"}]}}
    mc.compose(data)
    data["components"][0]["model"] = "/changed/after/compose"       # the registry keeps its own copy
    assert mc.REGISTRY.get("clf").spec.settings["model"] == str(models["classifier"])
    assert mc.run(inputs={"text": "a great film"}).output["label"] in ("bad", "good")

    before = state()
    for bad, fragment in (({"component": {"task": "text-gen"}}, "at `component.task`: unknown task `text-gen`"),
                          ({"component": {"task": "text-classification", "temprature": 1}},
                           "at `component.temprature`: unknown key `temprature`"),
                          ({"component": {"task": "text-classification", True: 1}},
                           "a mapping key must be text, not True"),
                          ({"component": {"task": "text-classification", "options": {1: "a"}}},
                           "at `component.options.1`: the key `1` must be text here")):
        with pytest.raises(ConfigError) as info:
            mc.compose(bad)
        assert str(info.value).startswith("at `") and fragment in str(info.value), info.value   # no line: none known
    looped = {"component": {"task": "text-classification"}}
    looped["component"]["options"] = looped
    assert "a mapping or list contains itself (a loop)" in str(pytest.raises(ConfigError, mc.compose, looped).value)
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["a"] = node = {}
    assert f"nested deeper than {MAX_DEPTH} levels" in str(pytest.raises(ConfigError, mc.compose, deep).value)
    assert state() == before


@pytest.mark.parametrize("value, fragments", [
    (5, ["mc.compose takes YAML text (a str) or a mapping (a dict) of the same shape, not an int"]),
    (b"component: {}", ["not a bytes", "Decode it first"]),
    (Path("compose.yaml"), ["not a PosixPath" if os.name != "nt" else "not a WindowsPath", "mc.compose(file=...)"]),
    (["component"], ["not a list"]),
])
def test_compose_of_something_that_is_neither_text_nor_a_mapping_says_what_it_takes(value, fragments):
    with pytest.raises(UserError) as info:
        mc.compose(value)
    assert all(f in str(info.value) for f in fragments), str(info.value)


# ------------------------------------------------------------------------------------------------
# C. valid YAML read as YAML says; odd keys, tags and long values told clearly


def test_merge_keys_are_read_as_yaml_says_the_written_key_winning():
    config = mc.read_config("""
components:
  - &base {id: a, type: http-client, endpoint: "http://127.0.0.1:9/a", timeout: 5}
  - <<: *base
    id: b
  - &other {id: c, type: http-client, endpoint: "http://127.0.0.1:9/c", method: GET}
  - <<: [*other, *base]
    id: d
  - <<: {<<: *base, timeout: 7}
    id: e
  - id: f
    <<: *base
    headers: {<<: {Accept: text/plain, X-A: "1"}, X-A: "2"}
  - id: g
    <<: *base
    headers: *h
""".replace("    headers: *h\n", "    headers: &h {A: b}\n"))
    c = config.components
    assert list(c) == ["a", "b", "c", "d", "e", "f", "g"]
    assert c["b"].actions["default"].fields["endpoint"] == "http://127.0.0.1:9/a" and c["b"].settings["type"] == \
        "http-client"
    assert c["d"].actions["default"].fields["endpoint"] == "http://127.0.0.1:9/c"      # the first merge wins
    assert c["d"].actions["default"].fields["method"] == "GET" and c["d"].actions["default"].fields["timeout"] == 5
    assert c["e"].actions["default"].fields["timeout"] == 7                              # nested merges
    assert c["f"].actions["default"].fields["headers"] == {"Accept": "text/plain", "X-A": "2"}
    # an anchor whose mapping has a merge, used again through an alias
    again = mc.read_config("components:\n  - &x {<<: {id: p, type: http-client}, id: q}\n  - <<: *x\n    id: r\n")
    assert list(again.components) == ["q", "r"]
    # a key written twice beside a merge is still two keys
    assert "line 4, at `component.id`: the key `id` appears twice" in error_of(
        "component:\n  id: a\n  <<: {task: text-classification}\n  id: b\n")


@pytest.mark.parametrize("text, fragments", [
    ("components:\n  - &b {id: a, task: text-classification}\n  - <<: *b\n    id: x\n    id: y\n",
     ["line 5, at `components[1].id`: the key `id` appears twice"]),
    ("component:\n  <<: 5\n  task: text-classification\n", ["line 2", "`<<:` merges mappings", "<<: *anchor"]),
    ("component:\n  <<: [{a: 1}, x]\n", ["line 2", "`<<:` merges mappings"]),
    ("component: &a\n  <<: *a\n  task: text-classification\n", ["a `<<:` merge refers to a mapping that contains it"]),
])
def test_merges_that_cannot_be_read_are_refused_with_their_line(text, fragments):
    message = error_of(text)
    assert all(f in message for f in fragments), message


@pytest.mark.parametrize("key, value", [("on", "true"), ("off", "false"), ("yes", "true"), ("No", "false"),
                                        ("TRUE", "true")])
def test_a_yaml_boolean_key_is_named_as_written_with_how_to_quote_it(key, value):
    message = error_of(f"component:\n  task: text-classification\n  options:\n    {key}: 1\n")
    assert message.startswith(f"line 4, at `component.options.{key}`: the key `{key}` is read by YAML as the "
                              f"boolean {value}, not as the word `{key}`")
    assert f'Quote it: `"{key}":`.' in message
    assert mc.read_config(f"component:\n  task: text-classification\n  options:\n    \"{key}\": 1\n")


@pytest.mark.parametrize("key, fragments", [
    ("12", ["line 3, at `component.12`: unknown key `12` (a number, not a word)", "Valid keys here"]),
    ("1.5", ["line 3, at `component.1.5`: unknown key `1.5`"]),
    ("0x1F", ["line 3, at `component.0x1F`: unknown key `0x1F`"]),
    ("~", ["line 3, at `component.~`: the key `~` is read by YAML as null", 'Quote it: `"~":`']),
    ("null", ["line 3, at `component.null`: the key `null` is read by YAML as null"]),
    ("[a, b]", ["line 3, at `component`: a mapping key must be a plain word, not the list `[a, b]`"]),
])
def test_a_key_that_is_not_text_is_named_as_written(key, fragments):
    message = error_of(f"component:\n  task: text-classification\n  {key}: 1\n" if not key.startswith("[")
                       else f"component:\n  task: text-classification\n  ? {key}\n  : 1\n")
    assert all(f in message for f in fragments), message
    assert "True" not in message and "[1]" not in message and "[12]" not in message


def test_number_keys_where_numbers_belong_stay_numbers_and_elsewhere_are_named():
    config = mc.read_config("component:\n  task: text-generation\n  device_mode: auto\n  max_memory: {0: 20GiB, "
                            "cpu: 64GiB}\n  labels: {0: bad, 1: good}\n")
    assert config.components["default"].settings["max_memory"] == {0: "20GiB", "cpu": "64GiB"}
    message = error_of("component:\n  task: text-classification\n  options:\n    7: x\n")
    assert message.startswith("line 4, at `component.options.7`: the key `7` must be text here, not a number")
    message = error_of("component:\n  task: text-classification\n  params:\n    3: x\n")
    assert message.startswith("line 4, at `component.params.3`: task `text-classification` takes no parameter `3`")


def test_a_yaml_boolean_key_in_a_run_body_is_refused(ip, models):
    run_cell(ip, "%%compose\ncomponents:" + classifier(models))
    message = usage_error(ip, "%%run clf\non: a great film\n")
    assert "line 2, at `on`: the key `on` is read by YAML as the boolean true" in message


@pytest.mark.parametrize("value, tag", [
    ("!!python/name:os.system x", "!!python/name:os.system"),
    ("!foo x", "!foo"),
    ("!!python/object/apply:os.system [ls]", "!!python/object/apply:os.system"),
    ("!foo {a: 1}", "!foo"),
    ("!!set {a, b}", "!!set"),
    ("!<tag:example.com,2024:x> y", "tag:example.com,2024:x"),
])
def test_an_unknown_tag_gives_our_line_and_the_tag_and_nothing_of_pyyaml(value, tag):
    message = error_of(f"component:\n  task: text-classification\n  options: {value}\n", first_line=2)
    assert message.startswith(f"line 4, at `component.options`: unknown tag `{tag}`"), message
    for pyyaml in ("<unicode string>", "column", "constructor", "^", "2024-02-30"):
        assert pyyaml not in message, pyyaml


def test_an_unknown_tag_on_a_key_and_the_plain_tags_that_are_read():
    assert "line 3, at `component`: unknown tag `!foo`" in error_of("component:\n  task: text-classification\n"
                                                                   "  !foo a: 1\n")
    config = mc.read_config("component:\n  task: text-classification\n  options: {a: !!str 5, b: !!int '7'}\n")
    assert config.components["default"].settings["options"] == {"a": "5", "b": 7}


LONG = "x" * 21000


@pytest.mark.parametrize("text", [
    f"component:\n  task: {LONG}\n",
    f"component:\n  task: text-classification\n  precision: {LONG}\n",
    f"component:\n  type: http-client\n  timeout: {LONG}\n",
    f"component:\n  task: text-classification\n  device: [{LONG}]\n",
    f"component:\n  task: text-classification\n  batch_size: !!int {LONG}\n",
    f"component:\n  task: text-classification\n  model: {{provider: {LONG}}}\n",
    f"components:\n  - {{id: {LONG}, type: http-client}}\n  - {{id: {LONG}, type: http-client}}\n",
    f"component:\n  task: text-classification\n  {'k' * 1000}: 1\n",
    f"{'k' * 1000}: 1\n",
    f"component:\n  task: text-classification\n  params:\n    {'p' * 1000}: 1\n",
    f"component:\n  task: text-classification\n  options: !{'t' * 1000} x\n",
    f"component:\n  type: {LONG}\n",
    f"component:\n  task: image-to-text\n  architecture: {LONG}\n",
    f"component:\n  task: text-generation\n  peft_adapters:\n    - {{name: {LONG}, model: a}}\n"
    f"    - {{name: {LONG}, model: b}}\n",
])
def test_a_long_value_is_cut_in_the_message(text):
    message = error_of(text)
    assert len(message) < 800, message[:300]
    assert "characters)" in message, message


def two_workflows(models, marks=("", "")) -> str:
    return "%%compose\ncomponents:" + classifier(models) + (
        "workflows:\n"
        f"  - id: first{marks[0]}\n"
        "    job: {component: clf, output: \"first ${output.label}\"}\n"
        f"  - id: second{marks[1]}\n"
        "    job: {component: clf, output: \"second ${output.label}\"}\n")


def test_run_without_an_id_refuses_to_guess_between_two_workflows(ip, models):
    plan = run_cell(ip, two_workflows(models))
    assert "%%run without an id runs" not in repr(plan) and "none marked `default: true`" in repr(plan)
    before = state()
    message = usage_error(ip, "%%run\ntext: a great film\n")
    assert "the latest %%compose defines 2 workflows (`first`, `second`) and marks none `default: true`" in message
    assert "%%run first" in message
    with pytest.raises(UserError, match="marks none `default: true`"):
        mc.run(inputs={"text": "a great film"})
    assert state() == before
    assert run_cell(ip, "%%run second\ntext: a great film\n").output.startswith("second ")
    # a later cell with one workflow decides again
    run_cell(ip, "%%compose\nworkflow:\n  id: only\n  job: {component: clf}\n")
    assert run_cell(ip, "%%run\ntext: a great film\n").output["label"]


def test_a_workflow_marked_default_is_the_one_run_without_an_id(ip, models):
    plan = run_cell(ip, two_workflows(models, marks=("\n    default: true", "")))
    assert "%%run without an id runs: first" in repr(plan)
    assert run_cell(ip, "%%run\ntext: a great film\n").output.startswith("first ")
    run_cell(ip, two_workflows(models, marks=("", "\n    default: true")))
    assert run_cell(ip, "%%run\ntext: a great film\n").output.startswith("second ")
    message = usage_error(ip, two_workflows(models, marks=("\n    default: true", "\n    default: true")))
    assert "line 13, at `workflows[1].default`: 2 workflows are marked `default: true` (`first`, `second`)" in message
