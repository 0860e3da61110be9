"""Renderers: each kind of output as a person wants it, with a static fallback for saved notebooks."""

import base64
import io
import re

import numpy as np
from PIL import Image

from mc_jupyter.display import renderers
from mc_jupyter.display.result import RunResult, StatusTable
from mc_jupyter.engine import JobRecord, RunOutcome


def test_text_is_escaped_html_with_a_plain_fallback():
    bundle = renderers.render("a <b> & c")
    assert bundle["text/plain"] == "a <b> & c"
    assert "a &lt;b&gt; &amp; c" in bundle["text/html"]


def test_classification_shows_one_bar_per_label_sized_by_score_best_first():
    result = {"label": "POSITIVE", "score": 0.75, "label_id": 1, "scores": {"NEGATIVE": 0.25, "POSITIVE": 0.75}}
    bundle = renderers.render(result, ["great film"])
    html = bundle["text/html"]
    assert bundle["text/plain"] == "POSITIVE (0.750)"
    assert re.findall(r"width:(\d+\.\d)%", html) == ["75.0", "25.0"]
    assert html.index("POSITIVE") < html.index("NEGATIVE") and "great film" in html


def test_several_classifications_are_labelled_by_their_texts():
    results = [{"label": "A", "score": 0.9, "scores": {"A": 0.9, "B": 0.1}},
               {"label": "B", "score": 0.6, "scores": {"A": 0.4, "B": 0.6}}]
    bundle = renderers.render(results, ["first text", "second text"])
    assert bundle["text/plain"] == "first text: A (0.900)\nsecond text: B (0.600)"


def test_one_embedding_is_a_compact_summary():
    vector = [0.6, 0.8] + [0.0] * 30
    bundle = renderers.render({"embedding": vector, "dimensions": 32})
    assert bundle["text/plain"].startswith("embedding: 32 dimensions, L2 norm 1.0000, [+0.6000, +0.8000")


def test_several_embeddings_plot_a_labelled_scatter_and_a_similarity_heatmap():
    rng = np.random.default_rng(0)
    vectors = [{"embedding": list(rng.normal(size=16)), "dimensions": 16} for _ in range(4)]
    vectors[1] = dict(vectors[0])   # identical texts: similarity exactly 1
    bundle = renderers.render(vectors, ["cat", "cat again", "car", "dog"])
    image = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert image.size == (1100, 460)
    assert "<img src=\"data:image/png;base64," in bundle["text/html"]
    rows = bundle["text/plain"].splitlines()
    assert rows[0] == "4 embeddings of 16 dimensions; cosine similarity:"
    assert rows[1].split()[-4:][:2] == ["+1.00", "+1.00"]


def test_a_run_result_displays_its_output_and_holds_the_plain_value():
    record = JobRecord("job", "c", "text-classification", {}, {"label": "X", "score": 1.0}, 0.01)
    result = RunResult(RunOutcome("w", {"label": "X", "score": 1.0}, [record], 0.01))
    assert result.output == {"label": "X", "score": 1.0}
    assert "X" in result._repr_mimebundle_()["text/html"]
    assert repr(result).startswith("RunResult(workflow='w'")


def test_status_table_lists_components_with_memory_and_an_empty_state_with_the_remedy():
    row = {"id": "m", "type": "model", "task": "text-generation", "driver": "huggingface", "model": "gpt2",
           "device": "cpu", "dtype": "float32", "parameters": 124_000_000, "memory_bytes": 500 * 2**20,
           "state": "ready", "load_seconds": 1.5, "quantization": "none", "error": ""}
    table = StatusTable([row], {"process_rss": 2**30, "host": {"total": 8 * 2**30, "available": 6 * 2**30},
                                "gpus": [{"index": 0, "total": 80 * 2**30, "used": 2**30}]})
    text = repr(table)
    assert "124.00 M" in text and "500.0 MiB" in text and "1.50 s" in text
    assert "kernel RSS 1.0 GiB · host RAM 2.0 GiB / 8.0 GiB · GPU0 1.0 GiB / 80.0 GiB" in text
    assert "Run a %%compose cell" in repr(StatusTable([]))


def test_a_model_split_by_a_device_map_shows_each_part_in_the_status_table():
    row = {"id": "big", "type": "model", "task": "text-generation", "driver": "huggingface", "model": "m",
           "device": "cpu,cuda:0", "dtype": "bfloat16", "parameters": 10, "memory_bytes": 3 * 2**30,
           "placement": {"cuda:0": 2**30, "cpu": 2 * 2**30}, "state": "ready", "load_seconds": 1.0}
    assert "cuda:0 1.0 GiB, cpu 2.0 GiB" in repr(StatusTable([row]))
