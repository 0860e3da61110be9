"""The embedding map: a real MiniLM run over several texts, queried from Python; its MIME bundle holds the
widget view beside a decodable PNG; the static picture labels nothing on top of anything; nbconvert
shows the PNG."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

import mc_jupyter as mc
from mc_jupyter.display import renderers
from mc_jupyter.display.result import WIDGET_VIEW, RunResult
from mc_jupyter.widgets import embedding_map

TEXTS = ["The cat sleeps on the warm windowsill.", "A kitten chases a ball of yarn across the floor.",
         "The stock market fell sharply after the announcement.", "Investors sold shares as prices dropped.",
         "Fresh bread is baked in the oven every morning.", "The bakery sells croissants and sourdough loaves."]

EMBEDDER = """
component:
  id: embedder
  type: model
  task: text-embedding
  model: sentence-transformers/all-MiniLM-L6-v2
  text: ${input.text}
"""


@pytest.fixture
def mapped(registry, models):
    mc.compose(EMBEDDER, registry=registry)
    embedding_map.install()   # what the extension does (with the kernel's registry) when it loads
    result = RunResult(mc.run("embedder", inputs={"text": TEXTS}, registry=registry).outcome, registry=registry)
    return result, result.widget


def vector(value) -> np.ndarray:
    return np.asarray(renderers.as_embedding(value))


def decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_a_query_finds_its_nearest_text_with_the_cosine_of_the_components_own_vectors(mapped, registry):
    result, m = mapped
    assert m.texts == TEXTS and m.vectors.shape == (6, 384)
    neighbours = m.query("Shares tumbled on Wall Street today.", k=3)
    assert {t for t, _ in neighbours[:2]} == {TEXTS[2], TEXTS[3]}     # the two texts about markets
    query = vector(mc.run("embedder", inputs={"text": "Shares tumbled on Wall Street today."},
                          registry=registry).output)
    vectors = np.asarray([vector(v) for v in result.output])
    cosines = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    assert neighbours[0][0] == TEXTS[int(np.argmax(cosines))]
    for text, score in neighbours:
        assert score == pytest.approx(float(cosines[TEXTS.index(text)]), abs=1e-5)
    assert [s for _, s in neighbours] == sorted((s for _, s in neighbours), reverse=True)
    state = m.widget.get_state()
    assert state["query_text"] == "Shares tumbled on Wall Street today."
    assert [n["index"] for n in state["neighbours"]] == [TEXTS.index(t) for t, _ in neighbours]
    assert len(state["query_point"]) == 2


def test_the_query_point_lies_where_the_projection_puts_its_vector(mapped, registry):
    _, m = mapped
    m.query("A puppy naps by the fire.")
    query = vector(mc.run("embedder", inputs={"text": "A puppy naps by the fire."}, registry=registry).output)
    vectors = m.vectors
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = (query - vectors.mean(axis=0)) @ vt[:2].T
    assert m.layout.method == "PCA"
    assert np.allclose(np.abs(m.widget.query_point), np.abs(expected), atol=1e-5)   # an axis' sign is free
    assert np.allclose(np.abs(np.asarray([[p["x"], p["y"]] for p in m.widget.points])), np.abs(centred @ vt[:2].T),
                       atol=1e-5)


def test_a_query_message_from_the_view_is_answered_in_the_widgets_state(mapped):
    _, m = mapped
    m._on_message(m.widget, {"type": "query", "text": "Croissants for breakfast"}, [])
    assert not m.widget.busy and m.widget.query_error == ""
    assert TEXTS[m.widget.neighbours[0]["index"]] in TEXTS[4:]


def test_the_bundle_holds_the_widget_view_a_png_of_the_notebooks_width_and_the_text(mapped):
    result, m = mapped
    bundle = result._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == m.widget.model_id
    png = decode(bundle["image/png"])
    assert png.size == (1100, 460)
    assert bundle["text/plain"].startswith("6 embeddings of 384 dimensions; cosine similarity:")
    assert 'src="data:image/png;base64,' in bundle["text/html"]
    state = m.widget.get_state()
    assert [p["text"] for p in state["points"]] == TEXTS      # hover shows each whole text
    assert len(state["sim"]) == 6 and state["sim"][2][2] == pytest.approx(1.0, abs=1e-4)
    assert state["can_query"] and state["method"] == "PCA"


def test_the_static_map_has_no_text_over_another():
    """Forty texts crowded around a few centres: every text drawn on the scatter sits clear of the others."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 32)) * 4
    vectors = np.vstack([centres[i % 3] + rng.normal(size=32) * 0.3 for i in range(40)])
    labels = [f"sentence {i} about topic {i % 3}" for i in range(40)]
    layout = renderers.EmbeddingLayout(vectors)
    fig = Figure(figsize=(11, 4.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(layout.xy[:, 0], layout.xy[:, 1])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderers._label_points(ax, layout.xy, labels, canvas.get_renderer())
    boxes = [t.get_window_extent(canvas.get_renderer()) for t in ax.texts]
    assert 3 <= len(boxes) < 80                                   # crowded: some texts are left out
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    png = decode(renderers.render_embeddings(vectors, labels)["image/png"])
    assert png.size == (1100, 460)


def test_an_embedding_without_a_text_field_gets_a_map_that_says_why_it_cannot_query():
    from mc_jupyter.engine import JobRecord, RunOutcome
    vectors = [list(v) for v in np.eye(8)[:3]]
    record = JobRecord("job", "c", "text-embedding", {}, vectors, 0.01, fields={"body": "x"})
    m = embedding_map.view(RunOutcome("w", vectors, [record], 0.01), None)
    assert not m.widget.can_query and "no registry" in m.widget.query_hint
    with pytest.raises(ValueError, match="cannot embed a query"):
        m.query("x")
    assert embedding_map.view(RunOutcome("w", "text", [record], 0.01), None) is None


@pytest.mark.slow
def test_nbconvert_html_of_an_executed_notebook_shows_the_png(tmp_path, models):
    """Saved without widget state (JupyterLab's default), nbconvert's HTML shows the PNG; with the state
    nbclient stores by default, it embeds the widget (drawn by the widgets' HTML manager) and the
    notebook file still holds the PNG in the same output."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import mc_jupyter\n%load_ext mc_jupyter\n"
                                          "from mc_jupyter.widgets import embedding_map\n"
                                          "embedding_map.install(mc_jupyter.REGISTRY)"),
                nbformat.v4.new_code_cell("%%compose" + EMBEDDER),
                nbformat.v4.new_code_cell("%%run embedder\ntext: " + json.dumps(TEXTS))]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    [output] = [o for o in nb.cells[2].outputs if o.output_type == "display_data"]
    assert WIDGET_VIEW in output.data and "image/png" in output.data
    assert decode(output.data["image/png"]).size == (1100, 460)
    with_state, _ = HTMLExporter().from_notebook_node(nb)
    assert output.data[WIDGET_VIEW]["model_id"] in with_state
    del nb.metadata["widgets"]
    body, _ = HTMLExporter().from_notebook_node(nb)
    assert f'src="data:image/png;base64,{output.data["image/png"]}"' in body
    assert 'type="application/vnd.jupyter.widget-view+json"' not in body
