"""The magics in a real IPython shell: %%compose, %%run, %mc, help, errors without tracebacks."""

import subprocess
import sys
import textwrap

import pytest
from IPython.core.error import UsageError

import mc_jupyter as mc
from mc_jupyter.display.result import RunResult
from tests.conftest import run_cell

EMBED = """%%compose
component:
  id: embedder
  type: model
  task: text-embedding
  model: sentence-transformers/all-MiniLM-L6-v2
  text: ${input.text}
"""


def test_loading_the_extension_imports_neither_torch_nor_transformers():
    code = textwrap.dedent("""
        import sys
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_line_magic("load_ext", "mc_jupyter")
        assert ip.find_cell_magic("compose") and ip.find_cell_magic("run") and ip.find_line_magic("mc")
        print(sorted(m for m in ("torch", "transformers", "accelerate") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_compose_then_run_returns_a_run_result_held_in_underscore_and_dash_o(ip):
    run_cell(ip, EMBED)
    result = run_cell(ip, "%%run -o vec\ntext: a cat on a mat")
    assert isinstance(result, RunResult) and ip.user_ns["vec"] is result and ip.user_ns["_"] is result
    assert result.output["dimensions"] == 384 and len(result.output["embedding"]) == 384


def test_run_takes_values_from_python_variables_with_a_dollar(ip):
    run_cell(ip, EMBED)
    ip.user_ns["docs"] = ["cat", "kitten", "car"]
    out = run_cell(ip, "%%run\ntext: $docs").output
    assert len(out) == 3
    with pytest.raises(UsageError) as info:
        run_cell(ip, "%%run\ntext: $nothing_here")
    assert "input `text`: the Python variable `nothing_here` is not defined" in str(info.value)
    assert run_cell(ip, "%%run\ntext: $$docs").output["dimensions"] == 384


def test_ipython_line_magic_run_keeps_working(ip, tmp_path):
    script = tmp_path / "script.py"
    script.write_text("answer = 6 * 7\n")
    run_cell(ip, f"%run {script}")
    assert ip.user_ns["answer"] == 42


def test_a_bad_cell_is_a_usage_error_with_the_cell_line_and_the_registry_is_unchanged(ip):
    run_cell(ip, EMBED)
    before = mc.REGISTRY.snapshot()
    with pytest.raises(UsageError) as info:
        run_cell(ip, "%%compose\ncomponent:\n  type: model\n  task: text-embeding\n")
    assert str(info.value).startswith("line 4, at `component.task`: unknown task `text-embeding` "
                                      "(did you mean `text-embedding`?)")
    assert mc.REGISTRY.snapshot() == before


def test_a_run_body_that_is_not_a_mapping_is_explained(ip):
    run_cell(ip, EMBED)
    with pytest.raises(UsageError) as info:
        run_cell(ip, "%%run\n- just\n- a list\n")
    assert "the %%run body must be a YAML mapping of inputs" in str(info.value)


def test_dry_run_loads_nothing_and_shows_the_plan(ip):
    plan = run_cell(ip, EMBED.replace("%%compose", "%%compose --dry-run"))
    assert mc.REGISTRY.snapshot() == []
    assert "would load `embedder`: text-embedding · huggingface · sentence-transformers/all-MiniLM-L6-v2" in repr(plan)


def test_compose_from_a_file(ip, tmp_path):
    path = tmp_path / "compose.yaml"
    path.write_text(EMBED.split("\n", 1)[1])
    run_cell(ip, f"%compose -f {path}")
    assert [r["id"] for r in mc.REGISTRY.snapshot()] == ["embedder"]
    with pytest.raises(UsageError) as info:
        run_cell(ip, f"%compose -f {tmp_path}/missing.yaml")
    assert "the compose file" in str(info.value) and "does not exist" in str(info.value)


def test_the_mc_line_magic_shows_status_unloads_and_goes_down(ip, capsys):
    run_cell(ip, EMBED)
    status = run_cell(ip, "%mc status")
    assert "embedder" in repr(status) and "text-embedding" in repr(status)
    run_cell(ip, "%mc unload embedder")
    assert mc.REGISTRY.snapshot() == []
    run_cell(ip, EMBED)
    run_cell(ip, "%mc down")
    assert mc.REGISTRY.snapshot() == []
    with pytest.raises(UsageError) as info:
        run_cell(ip, "%mc explode")
    assert "unknown %mc command `explode`" in str(info.value)


def test_run_without_anything_composed_says_what_to_do(ip):
    with pytest.raises(UsageError) as info:
        run_cell(ip, "%%run\ntext: hi\n")
    assert "there is nothing to run yet" in str(info.value)


def test_the_help_of_every_magic_is_complete(ip):
    compose_doc = ip.find_cell_magic("compose").__doc__
    assert ip.find_line_magic("compose").__doc__ == compose_doc
    run_doc = ip.find_cell_magic("run").__doc__
    mc_doc = ip.find_line_magic("mc").__doc__
    for flag in ("--dry-run", "-f FILE", "Re-running an unchanged cell reuses"):
        assert flag in compose_doc
    for flag in ("-o OUTPUT", "WORKFLOW", "$name", "RunResult"):
        assert flag in run_doc
    for word in ("status", "unload ID", "down"):
        assert word in mc_doc


def test_auto_install_is_a_config_option_off_by_default(ip):
    magics = next(c for c in ip.configurables if type(c).__name__ == "McJupyter")
    assert magics.auto_install is False
    run_cell(ip, "%config McJupyter.auto_install = True")
    assert magics.auto_install is True
    run_cell(ip, "%config McJupyter.auto_install = False")
