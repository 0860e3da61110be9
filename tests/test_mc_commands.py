"""``%mc``'s subcommands (mc_jupyter/commands/) and ``$name`` inputs resolved by the API.

Through a real IPython shell with the extension loaded: the texts said, which component went, that
nothing changed on a bad argument, that the usage text is one text (the help and every error show
the same lines), and that no secret is echoed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from IPython.core.error import UsageError

import mc_jupyter as mc
from mc_jupyter import api, commands
from mc_jupyter.drivers.custom import CustomModel
from mc_jupyter.errors import InputError
from mc_jupyter.secrets import read_env
from tests.conftest import run_cell


class Echo(CustomModel):
    """A model that loads nothing and answers with what its ``text`` field was given."""

    def load(self):
        pass

    def run(self, fields):
        return {"echo": fields["text"]}

    def info(self):
        return {"device": "cpu", "parameters": 0}


def echo(cid: str) -> str:
    return textwrap.indent(textwrap.dedent(f"""
        - id: {cid}
          type: model
          task: text-classification
          driver: custom
          class: tests.test_mc_commands:Echo
          text: ${{input.text}}
        """), "  ")


@pytest.fixture
def three(ip):
    """Two echo models and an http-client (nothing to load: the test is about the commands)."""
    run_cell(ip, "%%compose\ncomponents:" + echo("alpha") + echo("beta") + textwrap.indent(textwrap.dedent("""
        - id: web
          type: http-client
          endpoint: http://127.0.0.1:9/v1/completions
        """), "  "))
    return ip


def ids() -> list:
    return [row["id"] for row in mc.REGISTRY.snapshot()]


def drivers() -> dict:
    with mc.REGISTRY.lock:
        return {k: id(v.driver) for k, v in mc.REGISTRY.entries.items()}


def refused(ip, line: str) -> str:
    """The UsageError text of ``line``, which must change nothing."""
    before, held = mc.REGISTRY.snapshot(), drivers()
    with pytest.raises(UsageError) as info:
        run_cell(ip, line)
    assert mc.REGISTRY.snapshot() == before and drivers() == held
    return str(info.value)


# -- the usage text, written once -------------------------------------------------------------
USAGE_LINES = ["%mc status", "%mc unload ID [ID ...]", "%mc stop ID [ID ...]", "%mc logs ID [N]", "%mc down",
               "%mc chat [--system TEXT] ID [ID ...]", "%mc compare [--prompt TEXT] ID [ID ...]", "%mc inputs [TARGET]",
               "%mc form [TARGET]"]


def test_the_usage_lines_are_generated_from_each_subcommands_parser():
    assert list(commands.SUBCOMMANDS) == ["status", "unload", "stop", "logs", "down", "chat", "compare", "inputs",
                                          "form"]
    assert [commands.parser(name).usage_line for name in commands.SUBCOMMANDS] == USAGE_LINES
    assert commands.usage().splitlines() == [
        "%mc status                               the loaded components, their device, memory and state",
        "%mc unload ID [ID ...]                   free components' models (or stop their servers)",
        "%mc stop ID [ID ...]                     stop managed servers (type: http-server)",
        "%mc logs ID [N]                          the last N (50) lines a managed server printed",
        "%mc down                                 free everything and stop every server",
        "%mc chat [--system TEXT] ID [ID ...]     a chat widget: multi-turn, streaming, Stop (several IDs: a pane each)",
        "%mc compare [--prompt TEXT] ID [ID ...]  one prompt to several components, replies streaming side by side",
        "%mc inputs [TARGET]                      the inputs a workflow reads: type, choices, default, description",
        "%mc form [TARGET]                        a form on a workflow's inputs, a Run button and the output below"]


def test_the_help_and_the_unknown_command_error_show_the_same_usage(ip):
    doc = ip.find_line_magic("mc").__doc__
    assert doc == commands.HELP and commands.usage() in doc
    assert "``%mc`` alone is ``%mc status``" in doc
    message = refused(ip, "%mc explode")
    assert message == ("unknown %mc command `explode`.\n  Usage:\n" + commands.usage(indent="    ")
                       + "\n  (`%mc?` shows the help)")
    for line in USAGE_LINES:
        assert line in doc and line in message


@pytest.mark.parametrize("line, meant", [("%mc statsu", "status"), ("%mc unlod alpha", "unload"),
                                         ("%mc log web", "logs"), ("%mc dwon", "down")])
def test_an_unknown_subcommand_says_which_was_meant_and_changes_nothing(three, line, meant):
    word = line.split()[1]
    message = refused(three, line)
    assert message.startswith(f"unknown %mc command `{word}` (did you mean `{meant}`?).\n  Usage:\n")
    assert ids() == ["alpha", "beta", "web"]


@pytest.mark.parametrize("line, message", [
    ("%mc status now", "%mc status: unrecognized arguments: now.\n  Usage: %mc status  (`%mc?` shows the help)"),
    ("%mc down alpha", "%mc down: unrecognized arguments: alpha.\n  Usage: %mc down  (`%mc?` shows the help)"),
    ("%mc unload", "%mc unload: the following arguments are required: ID.\n"
                   "  Usage: %mc unload ID [ID ...]  (`%mc?` shows the help)"),
    ("%mc stop", "%mc stop: the following arguments are required: ID.\n"
                 "  Usage: %mc stop ID [ID ...]  (`%mc?` shows the help)"),
    ("%mc logs", "%mc logs: the following arguments are required: ID.\n  Usage: %mc logs ID [N]  (`%mc?` shows the help)"),
    ("%mc logs web 5 6", "%mc logs: unrecognized arguments: 6.\n  Usage: %mc logs ID [N]  (`%mc?` shows the help)"),
])
def test_wrong_arguments_are_refused_with_the_subcommands_usage(three, line, message):
    assert refused(three, line) == message


# -- what each subcommand does -------------------------------------------------------------------
def test_status_is_the_default_and_lists_what_is_loaded(three):
    for line in ("%mc", "%mc status", "%mc   status  "):
        table = run_cell(three, line)
        assert type(table).__name__ == "StatusTable"
        assert [row["id"] for row in table.rows] == ["alpha", "beta", "web"]


def test_unload_frees_exactly_the_ids_given_and_says_so(three, capsys):
    kept = drivers()["beta"]
    run_cell(three, "%mc unload alpha web alpha")
    assert capsys.readouterr().out == "unloaded alpha, web\n"
    assert ids() == ["beta"] and drivers()["beta"] == kept


@pytest.mark.parametrize("line, fragments", [
    ("%mc unload alpha nope", ["no component `nope` is loaded", "Nothing was unloaded"]),
    ("%mc unload alpha bta", ["no component `bta` is loaded (did you mean `beta`?)"]),
    ("%mc stop alpha", ["component `alpha` is a model, not a managed server: there is no server to stop",
                        "To free it, use %mc unload alpha (mc.unload(\"alpha\"))"]),
    ("%mc stop web", ["component `web` is an http-client, not a managed server", "use %mc unload web"]),
    ("%mc logs alpha", ["component `alpha` is a model, not a managed server: it has no log (only "
                        "`type: http-server` components have one)."]),
    ("%mc logs nope", ["no component `nope` is loaded"]),
])
def test_a_bad_id_anywhere_changes_nothing(three, capsys, line, fragments):
    message = refused(three, line)
    assert all(f in message for f in fragments), message
    assert "Usage:" not in message and capsys.readouterr().out == ""
    assert ids() == ["alpha", "beta", "web"]


@pytest.mark.parametrize("n", ["x", "-1", "1.5", "٣", "1e3", "+2"])
def test_logs_takes_a_whole_number_of_lines(three, n):
    assert refused(three, f"%mc logs web {n}") == (
        f"%mc logs: `{n}` is not a number of lines.\n  Usage: %mc logs ID [N]  (`%mc?` shows the help)")


def test_down_frees_everything_and_says_what(three, capsys):
    run_cell(three, "%mc down")
    assert capsys.readouterr().out == "unloaded alpha, beta, web\n"
    assert ids() == []
    run_cell(three, "%mc down")
    assert capsys.readouterr().out == "nothing was loaded\n"


def test_a_secret_typed_on_the_line_is_never_echoed(three, monkeypatch):
    monkeypatch.setenv("MC_COMMANDS_TOKEN", "sk-commands-secret-42")
    read_env("MC_COMMANDS_TOKEN")     # read through ${env.*}: a secret from then on
    for line in ("%mc sk-commands-secret-42", "%mc unload sk-commands-secret-42", "%mc logs web sk-commands-secret-42",
                 "%mc status sk-commands-secret-42"):
        message = refused(three, line)
        assert "sk-commands-secret" not in message and "***" in message, message


# -- $name inputs, resolved by the API -------------------------------------------------------------
def test_resolve_inputs_takes_names_from_the_namespace_at_any_depth():
    image, docs = object(), ["a", "b"]
    namespace = {"image": image, "docs": docs}
    out = api.resolve_inputs({"a": "$image", "b": ["$docs", "$$docs", "$5", "plain"], "c": {"d": "$docs"},
                              "e": 3, "f": "$$"}, namespace)
    assert out["a"] is image and out["b"] == [docs, "$docs", "$5", "plain"] and out["c"]["d"] is docs
    assert out["e"] == 3 and out["f"] == "$"
    assert api.resolve_inputs({"a": "$image", "b": "$$x"}, None) == {"a": "$image", "b": "$$x"}   # no namespace
    with pytest.raises(InputError) as info:
        api.resolve_inputs({"outer": {"inner": ["$missing"]}}, namespace)
    assert str(info.value) == ("input `inner`: the Python variable `missing` is not defined.\n"
                               "  Define it in an earlier cell, or write `$$missing` for the literal text.")


def test_mc_run_resolves_dollar_names_from_a_namespace_or_the_notebook(three):
    assert mc.run("alpha", {"text": "$words"}, namespace={"words": ["x", "y"]}).output == {"echo": ["x", "y"]}
    assert mc.run("alpha", text="$$words", namespace={}).output == {"echo": "$words"}
    three.user_ns["greeting"] = "hello"      # in IPython, the default namespace is the notebook's
    try:
        assert mc.run("alpha", {"text": "$greeting"}).output == {"echo": "hello"}
        assert run_cell(three, "%%run alpha\ntext: $greeting").output == {"echo": "hello"}
    finally:
        del three.user_ns["greeting"]
    with pytest.raises(InputError) as info:
        mc.run("alpha", {"text": "$greeting"})
    assert "input `text`: the Python variable `greeting` is not defined" in str(info.value)
    with pytest.raises(InputError) as info:
        mc.run("alpha", {"text": "$x"}, namespace=["x"])
    assert "mc.run takes `namespace` as a mapping of variable names to values (e.g. globals()), not a list" in str(
        info.value)


def test_the_run_magic_and_the_api_say_the_same_for_an_undefined_name(three):
    with pytest.raises(InputError) as api_error:
        mc.run("alpha", {"text": "$nowhere"}, namespace=three.user_ns)
    with pytest.raises(UsageError) as magic_error:
        run_cell(three, "%%run alpha\ntext: $nowhere")
    assert str(magic_error.value) == str(api_error.value)


def test_a_script_without_ipython_has_no_namespace_and_takes_strings_as_written():
    code = ("import sys, mc_jupyter.api as api; print(api.user_namespace(), 'IPython' in sys.modules, "
            "api.resolve_inputs({'t': '$x'}, api.user_namespace()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None False {'t': '$x'}"


def test_the_run_help_documents_dollar_names(ip):
    doc = ip.find_cell_magic("run").__doc__
    assert "``$name``" in doc and "``$$``" in doc and "mc.run(inputs=" in doc
    assert "``$name``" in api.run.__doc__ and "namespace" in api.run.__doc__
