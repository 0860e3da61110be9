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


def test_model_compose_files_compose_unchanged_with_notes_inputs_choices_and_a_form(models):
    nb = execute("model_compose_files.ipynb")
    composed = text_of(outputs_of(nb, "controller:"))
    assert "`controller:` is accepted and ignored" in composed
    assert "model-compose's `on_demand`, `architecture: sbert` have no effect here" in composed
    inputs = text_of(outputs_of(nb, "%mc inputs")).splitlines()
    assert inputs[2].split()[:2] == ["sentences", "text[]"] and "The sentences to embed" in inputs[2]
    assert "mean, cls, max" in inputs[3] and "How token vectors become one" in inputs[3]
    ran = text_of(outputs_of(nb, "vectors = np.array")).splitlines()
    assert ran[0].startswith("run ") and len(ran[0].split()[1]) == 32 and ran[0].endswith("384 dimensions")
    cat_kitten, cat_markets = (float(x.split()[-1]) for x in ran[1].split(","))
    assert cat_kitten > cat_markets + 0.2
    error = outputs_of(nb, "pooling: average")
    assert "`'average'` is not one of the choices `mean`, `cls`, `max`" in text_of(error) + \
        "".join(o.get("evalue", "") for o in error)
    form = outputs_of(nb, "form = mc.form()")
    assert text_of(form).startswith("384 dimensions, run ")
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) and "text/html" in o.get("data", {})
               for o in form)
    body = text_of(outputs_of(nb, "print(form.as_run_body())"))
    assert "pooling: cls" in body and "- A dog sleeps on the sofa." in body


def test_rag_chunks_embeds_inserts_and_the_right_passage_ranks_first(models, hub_cache, tmp_path_factory):
    from tests import test_examples_text2text, tiny_seq2seq
    rerankers = tiny_seq2seq.build_all(tmp_path_factory.mktemp("rerankers"), hub_cache, ("cross-encoder",))
    nb = execute("rag.ipynb")
    indexed = text_of(outputs_of(nb, "for document, topic in zip")).splitlines()
    assert indexed == [f"{t} → 2 chunks" for t in ("landmarks", "food", "computing", "biology", "geography")]
    assert "10 vectors · 384-d · cosine · in memory" in text_of(outputs_of(nb, "%mc status"))
    found = text_of(outputs_of(nb, "%%run -o found")).splitlines()
    assert found[0].split()[0] == "1." and "The Eiffel Tower is a wrought-iron tower in Paris." in found[0]
    assert "330 metres tall" in found[1] and len([line for line in found if line[:2].rstrip(".").isdigit()]) == 5
    best = text_of(outputs_of(nb, 'best = found.output[0]'))
    assert best.startswith("best: The Eiffel Tower is a wrought-iron tower in Paris. (score 0.")
    sources = text_of(outputs_of(nb, 'print("answer:"')).split("sources:\n")[1].splitlines()
    assert "[biology]  Leaves turn sunlight" in sources[0] and "[biology]  Photosynthesis" in sources[1]
    assert len(sources) == 3
    assert text_of(outputs_of(nb, 'in_topic.output]')).strip() == "['geography', 'geography']"
    assert "reuse `vector-store`" in text_of(outputs_of(nb, "id: in-topic"))
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded chunker, embedder, vector-store, chat"
    test_examples_text2text.check_the_rerank_section(nb, rerankers["cross-encoder"])   # its last section
