"""The README's test command is the one CI runs, in a brand-new venv, followed by the slow tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = 'pip install -c constraints.txt -e ".[test]" && python -m pytest -q'


def test_ci_runs_the_readme_test_command():
    assert COMMAND in (ROOT / "README.md").read_text()
    assert COMMAND in (ROOT / ".ci" / "run").read_text()


def test_ci_runs_it_in_a_fresh_venv_then_every_slow_test():
    ci = (ROOT / ".ci" / "run").read_text()
    venv, readme, slow = ci.index("-m venv"), ci.index(COMMAND), ci.index("pytest -q -m slow")
    assert venv < readme < slow
    assert "export CI=true" in ci


def test_the_default_run_leaves_out_the_slow_and_the_networked_tests():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '-m "not slow and not network"' in pyproject
