"""A driver's missing package: the exact %pip command, or a real install when auto_install is on.

The package installed here is a real wheel built by the test (pip reads it from a local folder
through PIP_NO_INDEX/PIP_FIND_LINKS), so the whole path runs: detection, pip in a subprocess with
its output shown, import, then the load.
"""

import subprocess
import sys

import pytest
from IPython.core.error import UsageError

import mc_jupyter as mc
from mc_jupyter import catalog as table
from tests.conftest import run_cell

PROBE = "mcj_probe_pkg"


@pytest.fixture
def probe_wheel(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / PROBE).mkdir(parents=True)
    (src / PROBE / "__init__.py").write_text("VALUE = 42\n")
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        f'[project]\nname = "mcj-probe-pkg"\nversion = "1.0"\n'
        f'[tool.hatch.build.targets.wheel]\npackages = ["{PROBE}"]\n')
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(src)], check=True)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    key = ("huggingface", "text-embedding")
    original = table.DRIVERS[key]
    monkeypatch.setitem(table.DRIVERS, key, table.DriverImpl(original.target,
                                                             original.requires + ((PROBE, "mcj-probe-pkg"),)))
    yield
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "mcj-probe-pkg"], check=False)


CELL = """%%compose
component:
  id: embedder
  type: model
  task: text-embedding
  text: ${input.text}
"""


@pytest.mark.slow
def test_a_missing_package_names_the_exact_install_command_and_loads_nothing(ip, probe_wheel):
    with pytest.raises(UsageError) as info:
        run_cell(ip, CELL)
    assert "the `huggingface` driver for text-embedding needs the Python package(s) mcj-probe-pkg" in str(info.value)
    assert "%pip install mcj-probe-pkg" in str(info.value)
    assert "%config McJupyter.auto_install = True" in str(info.value)
    assert mc.REGISTRY.snapshot() == []


@pytest.mark.slow
def test_auto_install_installs_it_says_so_and_then_loads(ip, probe_wheel, capsys):
    run_cell(ip, "%config McJupyter.auto_install = True")
    try:
        run_cell(ip, CELL)
    finally:
        run_cell(ip, "%config McJupyter.auto_install = False")
    said = capsys.readouterr().out
    assert "mc_jupyter auto-install: installing mcj-probe-pkg into this kernel's environment" in said
    assert "mc_jupyter auto-install: installed mcj-probe-pkg" in said
    import importlib
    assert importlib.import_module(PROBE).VALUE == 42
    assert [r["state"] for r in mc.REGISTRY.snapshot()] == ["ready"]
