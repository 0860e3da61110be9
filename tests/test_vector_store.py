"""``type: vector-store`` and ``type: text-splitter`` through the YAML: compose, run, show, free.

The store is the real faiss (tests/test_vector_faiss.py checks the engine itself against numpy); the
embeddings are the real all-MiniLM-L6-v2, so "the right passage ranks first" is a real retrieval check.
"""

from __future__ import annotations

import numpy as np
import pytest

import mc_jupyter as mc
from mc_jupyter.display.renderers import render
from mc_jupyter.display.result import StatusTable
from mc_jupyter.errors import ConfigError, InputError
from tests import reference
from tests.test_spec_blocks import BLOCKS

DOCS = [
    "The Eiffel Tower stands in Paris and was finished in 1889.",
    "Bananas are a yellow fruit rich in potassium.",
    "Python is a programming language loved for its readability.",
    "The Great Wall of China is thousands of kilometres long.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "The Pacific is the largest and deepest ocean on Earth.",
]

STORE = """
components:
  - id: embedder
    type: model
    task: text-embedding
    model: sentence-transformers/all-MiniLM-L6-v2
    text: ${input.text}
  - id: vector-store
    type: vector-store
    driver: faiss
    dimension: 384
    metric: cosine
    actions:
      - id: insert
        method: insert
        vector: ${input.vectors}
        vector_id: ${input.ids}
        metadata: ${input.metadata}
        batch_size: ${input.batch_size as integer | 1000}
workflows:
  - id: index
    jobs:
      - id: embed
        component: embedder
        input:
          text: ${input.texts}
      - id: store
        component: vector-store
        action: insert
        input:
          vectors: ${jobs.embed.output}
          ids: ${input.ids}
          metadata: ${input.metadata}
          batch_size: ${input.batch_size | 1000}
"""


def index(registry, store_yaml: str = STORE, batch_size: int = 1000):
    mc.compose(store_yaml, registry=registry)
    ids = [f"doc{i}" for i in range(len(DOCS))]
    meta = [{"text": d, "n": i, "lang": "en" if i % 2 == 0 else "fr"} for i, d in enumerate(DOCS)]
    out = mc.run("index", {"texts": DOCS, "ids": ids, "metadata": meta, "batch_size": batch_size},
                 registry=registry).output
    assert out == {"affected_rows": len(DOCS), "status": "completed", "ids": ids}
    return ids


def cosine_ranking(query: str) -> list:
    q = np.array(reference.minilm_embedding(query))
    docs = np.array([reference.minilm_embedding(d) for d in DOCS])
    scores = docs @ q / (np.linalg.norm(docs, axis=1) * np.linalg.norm(q))
    order = np.argsort(-scores)
    return [(f"doc{i}", float(scores[i])) for i in order]


def test_the_spec_rag_workflow_runs_verbatim_and_the_right_passage_ranks_first(registry):
    index(registry)
    mc.compose(BLOCKS["8.3.4#2"], registry=registry)          # verbatim: `action: search`, input {vector, top_k}
    for query, best in [("Which city has the Eiffel Tower?", "doc0"), ("What is the biggest ocean?", "doc5"),
                        ("How do plants make sugar from light?", "doc4")]:
        hits = mc.run(inputs={"query": query}, registry=registry).output
        assert len(hits) == 5 and hits[0]["id"] == best
        expected = cosine_ranking(query)[:5]
        assert [h["id"] for h in hits] == [i for i, _ in expected]
        assert [h["score"] for h in hits] == pytest.approx([s for _, s in expected], abs=1e-5)
        assert hits[0]["metadata"]["text"] == DOCS[int(best[3:])]


def test_actions_with_bindings_filters_output_fields_update_and_delete(registry):
    index(registry)
    mc.compose("""
components:
  - id: vector-store
    type: vector-store
    dimension: 384
    metric: cosine
    actions:
      - id: find
        method: search
        query: ${input.vector}
        top_k: ${input.k as integer}
        filter: {lang: en, n: {gte: 1}}
        output_fields: [text]
      - id: relabel
        method: update
        vector_id: ${input.id}
        metadata: ${input.metadata}
        insert_if_not_exist: false
      - id: drop
        method: delete
        filter: ${input.filter}
workflows:
  - id: find
    jobs: [{component: vector-store, action: find}]
  - id: relabel
    jobs: [{component: vector-store, action: relabel}]
  - id: drop
    jobs: [{component: vector-store, action: drop}]
""", registry=registry)
    assert registry.entries["vector-store"].load_count == 1       # unchanged settings: the same store, kept
    vector = reference.minilm_embedding("the tallest tower in Paris")
    hits = mc.run("find", {"vector": vector, "k": "10"}, registry=registry).output
    assert [h["id"] for h in hits] == [i for i, _ in cosine_ranking("the tallest tower in Paris")
                                       if int(i[3:]) % 2 == 0 and int(i[3:]) >= 1]   # doc2, doc4 (not doc0)
    assert all(set(h["metadata"]) == {"text"} for h in hits)

    mc.run("relabel", {"id": "doc2", "metadata": {"text": DOCS[2], "n": 2, "lang": "fr"}}, registry=registry)
    hits = mc.run("find", {"vector": vector, "k": 10}, registry=registry).output
    assert [h["id"] for h in hits] == ["doc4"]
    with pytest.raises(InputError, match="`vector_id`: 'nope' not in the store"):
        mc.run("relabel", {"id": "nope", "metadata": {"n": 9}}, registry=registry)

    out = mc.run("drop", {"filter": [{"field": "lang", "operator": "eq", "value": "fr"}]}, registry=registry).output
    assert sorted(out["ids"]) == ["doc1", "doc2", "doc3", "doc5"] and out["affected_rows"] == 4
    row = next(r for r in registry.snapshot() if r["id"] == "vector-store")
    assert row["store"] == "2 vectors · 384-d · cosine · in memory" and row["driver"] == "faiss"


def test_the_status_table_and_sidebar_rows_name_the_store(registry):
    from mc_jupyter import sidebar
    index(registry)
    row = next(r for r in sidebar.component_rows(registry) if r["id"] == "vector-store")
    assert row["type"] == "vector-store" and row["driver"] == "faiss" and row["device"] == "cpu"
    assert row["store"] == "6 vectors · 384-d · cosine · in memory"
    assert 6 * 384 * 4 <= row["memory_bytes"] < 6 * 384 * 4 + 64 * 1024
    table = repr(StatusTable(registry.snapshot()))
    assert "6 vectors · 384-d · cosine · in memory" in table
    registry.unload("vector-store")
    assert "vector-store" not in registry.entries


def test_storage_dir_keeps_the_vectors_across_an_unload(registry, tmp_path):
    folder = tmp_path / "store"
    store_yaml = STORE.replace("    metric: cosine\n", f"    metric: cosine\n    storage_dir: {folder}\n", 1)
    index(registry, store_yaml)
    registry.unload("vector-store")
    mc.compose(store_yaml, registry=registry)                 # a fresh load reads the folder
    mc.compose(BLOCKS["8.3.4#2"], registry=registry)
    hits = mc.run(inputs={"query": "Which city has the Eiffel Tower?"}, registry=registry).output
    assert hits[0]["id"] == "doc0" and len(hits) == 5
    row = next(r for r in registry.snapshot() if r["id"] == "vector-store")
    assert row["store"] == f"6 vectors · 384-d · cosine · {folder}"


def test_inserting_in_batches_moves_a_progress_bar(registry):
    from mc_jupyter import progress
    seen = []
    unwatch = progress.watch(lambda event, bar: seen.append((event, bar.title, bar.done_count
                                                              if hasattr(bar, "done_count") else None)))
    try:
        index(registry, batch_size=2)
    finally:
        unwatch()
    titles = [t for _, t, _ in seen]
    assert "inserting into vector-store" in titles
    assert sum(1 for e, t, _ in seen if t == "inserting into vector-store" and e == "step") >= 3


PROBES = """
workflows:
  - id: add
    jobs:
      - component: vector-store
        action: insert
        input:
          vectors: ${input.vectors}
          ids: ${input.ids}
          metadata: ${input.metadata}
  - id: probe
    jobs:
      - component: vector-store
        action: search
        input:
          vector: ${input.vector}
          top_k: ${input.k}
  - id: typo
    jobs:
      - component: vector-store
        action: search
        input:
          vector: ${input.vector}
          topk: 3
"""


def store_line(registry) -> str:
    return next(r for r in registry.snapshot() if r["id"] == "vector-store")["store"]


def test_bad_input_names_the_field_and_writes_nothing(registry):
    index(registry)
    mc.compose(PROBES, registry=registry)
    before = store_line(registry)
    with pytest.raises(InputError, match="dimension") as failure:          # a 3-d vector into a 384-d store
        mc.run("add", {"vectors": [[0.1, 0.2, 0.3]], "ids": ["x"], "metadata": [{}]}, registry=registry)
    assert "384" in str(failure.value) and "3" in str(failure.value)
    with pytest.raises(InputError, match="already"):                        # doc0 is stored
        mc.run("index", {"texts": DOCS[:2], "ids": ["new", "doc0"], "metadata": [{}, {}]}, registry=registry)
    with pytest.raises(InputError, match="`vector_id` names 1 ids for 2 vectors"):
        mc.run("add", {"vectors": [[0.0] * 384] * 2, "ids": ["a"], "metadata": None}, registry=registry)
    with pytest.raises(InputError, match="`top_k` must be a whole number"):
        mc.run("probe", {"vector": [0.0] * 384, "k": "many"}, registry=registry)
    with pytest.raises(InputError, match="`topk`.*which a search does not read"):
        mc.run("typo", {"vector": [0.0] * 384}, registry=registry)
    with pytest.raises(InputError, match="`query` must be a vector"):
        mc.run("probe", {"vector": "not a vector", "k": 3}, registry=registry)
    assert store_line(registry) == before == "6 vectors · 384-d · cosine · in memory"


@pytest.mark.parametrize("change, message", [
    (("driver: faiss", "driver: milvus"), "`milvus` is not built here"),
    (("    dimension: 384\n", ""), "needs `dimension:`"),
    (("        method: insert\n", "        method: insrt\n"), "did you mean `insert`"),
    (("        metadata: ${input.metadata}\n", "        metadata: ${input.metadata}\n        top_k: 3\n"),
     "`top_k:` is not a key of a `insert` action"),
])
def test_compose_errors_say_where_and_keep_the_registry(registry, change, message):
    index(registry)
    before = [(r["id"], r["state"], r["store"]) for r in registry.snapshot()]
    with pytest.raises(ConfigError, match=message.replace("`", ".").replace("(", r"\(")) as failure:
        mc.compose(STORE.replace(*change, 1), registry=registry)
    assert failure.value.line is not None
    assert [(r["id"], r["state"], r["store"]) for r in registry.snapshot()] == before


def test_hits_render_as_a_ranked_table(registry):
    index(registry)
    mc.compose(BLOCKS["8.3.4#2"], registry=registry)
    result = mc.run(inputs={"query": "Which city has the Eiffel Tower?"}, registry=registry)
    bundle = render(result.output)
    assert "<th>passage</th>" in bundle["text/html"] and DOCS[0] in bundle["text/html"]
    first = bundle["text/plain"].splitlines()[0]
    assert first.startswith("1. doc0  ") and "Eiffel" in first


def test_a_text_splitter_chunks_documents_inside_the_workflow(registry):
    from mc_jupyter.drivers.text_splitter import split_text
    mc.compose(STORE, registry=registry)
    mc.compose("""
components:
  - id: chunker
    type: text-splitter
    text: ${input.text}
    chunk_size: 80
    chunk_overlap: 0
workflow:
  id: chunk-and-index
  jobs:
    - id: chunk
      component: chunker
      input:
        text: ${input.document}
    - id: embed
      component: embedder
      input:
        text: ${jobs.chunk.output}
    - id: store
      component: vector-store
      action: insert
      input:
        vectors: ${jobs.embed.output}
        ids: null
        metadata:
          "*": ${jobs.chunk.output}
          text: ${item}
""", registry=registry)
    document = "\n\n".join(DOCS)
    assert split_text(document, chunk_size=80, chunk_overlap=0) == DOCS   # one paragraph each fits in 80
    out = mc.run("chunk-and-index", {"document": document}, registry=registry).output
    assert out["affected_rows"] == len(DOCS) and len(set(out["ids"])) == len(DOCS)   # generated ids
    mc.compose(BLOCKS["8.3.4#2"], registry=registry)
    hits = mc.run(inputs={"query": "Which city has the Eiffel Tower?"}, registry=registry).output
    assert hits[0]["metadata"] == {"text": DOCS[0]}
