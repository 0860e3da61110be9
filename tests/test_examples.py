"""Every example notebook runs top to bottom in a real kernel, and its key outputs are right."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow   # real kernels and notebooks: CI runs these (pytest -m slow)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def execute(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    return nb


def outputs_of(nb, marker: str) -> list:
    cell = next(c for c in nb.cells if c.cell_type == "code" and marker in c.source)
    return cell.outputs


def text_of(outputs) -> str:
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)


def test_the_committed_notebooks_carry_no_stale_outputs():
    for path in EXAMPLES.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


def test_quickstart_semantic_search_ranks_the_photosynthesis_document_first(models):
    nb = execute("quickstart.ipynb")
    corpus = outputs_of(nb, "%%run -o corpus")
    assert any("image/png" in o.get("data", {}) for o in corpus)          # the scatter and heatmap
    assert text_of(corpus).startswith("6 embeddings of 384 dimensions")
    ranking = text_of(outputs_of(nb, "ranking = sorted")).splitlines()
    assert ranking[0].endswith("by photosynthesis.") and ranking[1].endswith("red and blue light.")
    assert float(ranking[0].split()[0]) > float(ranking[2].split()[0]) + 0.2
    assert "embedder" in text_of(outputs_of(nb, "%mc status")) and "ready" in text_of(outputs_of(nb, "%mc status"))
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded embedder"
