"""Test set-up: a temporary, offline Hugging Face cache holding tiny models under real repo ids.

HF_HOME must point at the temporary cache before huggingface_hub is imported (it reads the
variable once), so it is set here at import time; a user's own cache is never touched.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

from tests import tiny_models   # imports neither transformers nor huggingface_hub

_ROOT = Path(tempfile.mkdtemp(prefix="mc_jupyter-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
tiny_models.use_offline_cache(_ROOT)


@pytest.fixture(scope="session")
def models() -> dict:
    """Local folders of the tiny models; the hub cache holds them under real repo ids too."""
    return tiny_models.build_all(_ROOT)


@pytest.fixture(scope="session")
def hub_cache(models) -> Path:
    return _ROOT / "hf" / "hub"


@pytest.fixture
def registry():
    from mc_jupyter.registry import Registry
    reg = Registry()
    yield reg
    reg.down()


@pytest.fixture
def ip(models):
    """A real IPython shell with the extension loaded; run_cell raises what a cell raises."""
    from IPython.testing.globalipapp import get_ipython
    shell = get_ipython()   # one shell per test process, as in a kernel
    shell.run_line_magic("load_ext", "mc_jupyter")
    yield shell
    import mc_jupyter
    mc_jupyter.down()
    shell.user_ns.pop("_", None)


def run_cell(shell, text: str):
    """Run a cell; re-raise its error (IPython would only print it)."""
    result = shell.run_cell(text)
    if result.error_before_exec:
        raise result.error_before_exec
    if result.error_in_exec:
        raise result.error_in_exec
    return result.result
