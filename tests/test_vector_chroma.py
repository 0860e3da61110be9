"""``driver: chroma`` through the YAML, on a real ``chromadb.PersistentClient`` in ``tmp_path``.

chromadb is an optional extra (it upgrades pydantic), so this module is skipped where it is not installed.
Run it in a venv that has it (see ``tests/benchmarks/bench_vector_chroma.py``'s docstring):

    /tmp/chromavenv/bin/python -m pytest -q tests/test_vector_chroma.py

Rankings are checked against a numpy brute force on seeded random vectors (few enough that chroma's HNSW
is exact), scores as model-compose's chroma driver computes them; the spec's RAG block runs verbatim on the
real all-MiniLM-L6-v2.
"""

from __future__ import annotations

import numpy as np
import pytest

chromadb = pytest.importorskip("chromadb")

import mc_jupyter as mc  # noqa: E402
from mc_jupyter.errors import BindingError, ConfigError, InputError  # noqa: E402
from tests import reference  # noqa: E402
from tests.test_spec_blocks import BLOCKS  # noqa: E402

DIM = 8
N = 40


def data(seed: int = 7):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    ids = [f"v{i}" for i in range(N)]
    meta = [{"cat": "abc"[i % 3], "n": i, "even": i % 2 == 0} for i in range(N)]
    docs = [f"document {i}" for i in range(N)]
    return vectors, ids, meta, docs


def store_yaml(folder, metric: str = "l2", extra: str = "") -> str:
    metric_line = f"    metric: {metric}\n" if metric else ""
    return f"""
components:
  - id: store
    type: vector-store
    driver: chroma
    mode: local
    storage_dir: {folder}
{metric_line}{extra}    actions:
      - id: add
        method: insert
        collection: ${{input.collection | items}}
        vector: ${{input.vectors | null}}
        vector_id: ${{input.ids | null}}
        metadata: ${{input.metadata | null}}
        document: ${{input.documents | null}}
        batch_size: ${{input.batch_size as integer | 1000}}
      - id: find
        method: search
        collection: items
        query: ${{input.query}}
        top_k: ${{input.k as integer | 10}}
        filter: ${{input.filter | null}}
        output_fields: ${{input.fields | null}}
      - id: change
        method: update
        collection: items
        vector_id: ${{input.ids | null}}
        vector: ${{input.vectors | null}}
        metadata: ${{input.metadata | null}}
        insert_if_not_exist: ${{input.insert as boolean | true}}
      - id: drop
        method: delete
        collection: items
        vector_id: ${{input.ids | null}}
        filter: ${{input.filter | null}}
workflows:
""" + "".join(f"""  - id: {w}
    jobs: [{{component: store, action: {w}}}]
""" for w in ("add", "find", "change", "drop"))


def compose(registry, folder, metric="l2", with_data=True, **kw):
    mc.compose(store_yaml(folder, metric, **kw), registry=registry)
    if with_data:
        vectors, ids, meta, docs = data()
        out = mc.run("add", {"vectors": vectors.tolist(), "ids": ids, "metadata": meta, "documents": docs},
                     registry=registry).output
        assert out == {"affected_rows": N, "status": "completed", "ids": ids}


def find(registry, query, **inputs):
    return mc.run("find", {"query": query, **inputs}, registry=registry).output


def brute(metric: str, vectors: np.ndarray, q: np.ndarray):
    """(distances as chroma defines them, order best first)."""
    if metric == "l2":
        dist = ((vectors - q) ** 2).sum(axis=1)
    elif metric == "ip":
        dist = 1.0 - vectors @ q
    else:
        dist = 1.0 - vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    return dist, np.argsort(dist, kind="stable")


def store_line(registry) -> str:
    return next(r for r in registry.snapshot() if r["id"] == "store")["store"]


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_search_ranks_as_numpy_with_model_composes_scores(registry, tmp_path, metric):
    compose(registry, tmp_path / "db", metric)
    vectors, ids, meta, docs = data()
    rng = np.random.default_rng(99)
    for q in rng.standard_normal((5, DIM)).astype(np.float32):
        hits = find(registry, q.tolist(), k=7)
        dist, order = brute(metric, vectors.astype(np.float64), q.astype(np.float64))
        assert [h["id"] for h in hits] == [ids[i] for i in order[:7]]
        assert [h["distance"] for h in hits] == pytest.approx(dist[order[:7]].tolist(), abs=1e-4)
        want = (1.0 - dist[order[:7]]) if metric == "ip" else 1.0 / (1.0 + dist[order[:7]])
        assert [h["score"] for h in hits] == pytest.approx(want.tolist(), abs=1e-4)
        best = int(order[0])
        assert hits[0]["metadata"] == meta[best] and hits[0]["document"] == docs[best]
    # a list of queries gives a list of hit lists, in order
    two = find(registry, [vectors[3].tolist(), vectors[11].tolist()], k=2)
    assert [[h["id"] for h in hits] for hits in two] == [
        [ids[i] for i in brute(metric, vectors.astype(np.float64), vectors[j].astype(np.float64))[1][:2]]
        for j in (3, 11)]
    assert store_line(registry) == f"{N} vectors · {DIM}-d · {metric} · 1 collection · {tmp_path / 'db'}"


def expected_ids(vectors, ids, q, keep, k=N):
    dist, order = brute("l2", vectors.astype(np.float64), np.asarray(q, dtype=np.float64))
    return [ids[i] for i in order if keep(i)][:k]


@pytest.mark.parametrize("filter, keep", [
    ({"cat": "a"}, lambda i: i % 3 == 0),                                              # shorthand eq
    ({"n": {"gte": 30}}, lambda i: i >= 30),
    ({"n": {"gt": 30, "lte": 35}}, lambda i: 30 < i <= 35),                            # two on one field
    ({"n": {"lt": 5}}, lambda i: i < 5),
    ({"cat": {"neq": "a"}, "even": True}, lambda i: i % 3 != 0 and i % 2 == 0),        # two fields: $and
    ([{"field": "cat", "operator": "in", "value": ["a", "c"]}], lambda i: i % 3 != 1),
    ([{"field": "cat", "operator": "not-in", "value": ["a", "c"]}], lambda i: i % 3 == 1),
    ([{"field": "n", "operator": "eq", "value": 12}], lambda i: i == 12),
    ([{"field": "cat", "operator": "neq", "value": "b"},
      {"field": "n", "operator": "lte", "value": 10}], lambda i: i % 3 != 1 and i <= 10),
])
def test_filters_shorthand_and_list_form_each_operator(registry, tmp_path, filter, keep):
    compose(registry, tmp_path / "db")
    vectors, ids, _, _ = data()
    q = np.random.default_rng(5).standard_normal(DIM).tolist()
    hits = find(registry, q, k=N, filter=filter)
    assert [h["id"] for h in hits] == expected_ids(vectors, ids, q, keep)
    assert hits   # every filter above matches something


def test_neq_and_not_in_match_vectors_without_the_field_and_output_fields_trim(registry, tmp_path):
    compose(registry, tmp_path / "db", with_data=False)
    mc.run("add", {"vectors": [[1.0] + [0.0] * (DIM - 1), [0.0, 1.0] + [0.0] * (DIM - 2)], "ids": ["with", "bare"],
                   "metadata": [{"cat": "a", "n": 1}, {}]}, registry=registry)
    q = [1.0] + [0.0] * (DIM - 1)
    assert [h["id"] for h in find(registry, q, filter={"cat": {"neq": "a"}})] == ["bare"]
    assert [h["id"] for h in find(registry, q, filter=[{"field": "cat", "operator": "not-in", "value": ["a"]}])] \
        == ["bare"]
    hits = find(registry, q, fields=["n", "absent"])
    assert hits[0]["metadata"] == {"n": 1} and hits[1]["metadata"] == {}
    assert "document" not in hits[0]      # none was given


def test_update_merges_metadata_and_insert_if_not_exist(registry, tmp_path):
    compose(registry, tmp_path / "db")
    vectors, ids, meta, _ = data()
    out = mc.run("change", {"ids": "v5", "metadata": {"cat": "z"}}, registry=registry).output
    assert out == {"affected_rows": 1, "status": "completed", "ids": ["v5"]}
    hit = find(registry, vectors[5].tolist(), k=1)[0]
    assert hit["id"] == "v5" and hit["metadata"] == {"cat": "z", "n": 5, "even": False}   # chroma merges
    assert hit["document"] == "document 5"                                                # kept
    # a new vector moves the id: the old place no longer finds it first
    new = np.full(DIM, 9.0).tolist()
    mc.run("change", {"ids": ["v6"], "vectors": [new]}, registry=registry)
    assert find(registry, new, k=1)[0]["id"] == "v6"
    assert find(registry, vectors[6].tolist(), k=1)[0]["id"] != "v6"
    # insert_if_not_exist true (the default): an unknown id is inserted
    mc.run("change", {"ids": ["fresh"], "vectors": [np.full(DIM, -9.0).tolist()], "metadata": [{"cat": "new"}]},
           registry=registry)
    assert find(registry, np.full(DIM, -9.0).tolist(), k=1)[0]["metadata"] == {"cat": "new"}
    assert store_line(registry).startswith(f"{N + 1} vectors")
    # false: refused, naming the id; nothing written (the known id in the same call is untouched)
    with pytest.raises(InputError, match="`vector_id` `ghost` not in the chroma collection `items`.*"
                                         "insert_if_not_exist: false"):
        mc.run("change", {"ids": ["v7", "ghost"], "metadata": [{"cat": "q"}, {"cat": "q"}], "insert": False},
               registry=registry)
    assert find(registry, vectors[7].tolist(), k=1)[0]["metadata"] == meta[7]
    with pytest.raises(InputError, match="would be inserted, which needs their vectors"):
        mc.run("change", {"ids": ["ghost"], "metadata": {"cat": "q"}}, registry=registry)
    assert store_line(registry).startswith(f"{N + 1} vectors")


def test_delete_by_ids_and_by_filter(registry, tmp_path):
    compose(registry, tmp_path / "db")
    out = mc.run("drop", {"ids": ["v0", "v1"]}, registry=registry).output
    assert out == {"affected_rows": 2, "status": "completed", "ids": ["v0", "v1"]}
    out = mc.run("drop", {"filter": {"n": {"gte": 30}}}, registry=registry).output
    assert sorted(out["ids"]) == sorted(f"v{i}" for i in range(30, N)) and out["affected_rows"] == N - 30
    # ids and a filter: those of the ids that match
    out = mc.run("drop", {"ids": ["v2", "v3"], "filter": {"cat": "c"}}, registry=registry).output
    assert out["ids"] == ["v2"]
    with pytest.raises(InputError, match="`vector_id` `v0` not in the chroma collection `items`. Nothing was deleted"):
        mc.run("drop", {"ids": ["v0", "v4"]}, registry=registry)
    with pytest.raises(InputError, match="needs `vector_id`.*or `filter`"):
        mc.run("drop", {}, registry=registry)
    remaining = sorted(int(h["id"][1:]) for h in find(registry, [0.0] * DIM, k=N))
    assert remaining == [i for i in range(3, 30)]
    assert store_line(registry).startswith("27 vectors · ")


def test_storage_dir_keeps_the_collections_across_unload_and_recompose(registry, tmp_path):
    folder = tmp_path / "db"
    compose(registry, folder, "cosine")
    vectors, _, _, _ = data()
    before = find(registry, vectors[9].tolist(), k=5)
    registry.unload("store")
    assert "store" not in registry.entries
    compose(registry, folder, "cosine", with_data=False)
    assert store_line(registry) == f"{N} vectors · {DIM}-d · cosine · 1 collection · {folder}"
    assert find(registry, vectors[9].tolist(), k=5) == before
    # a second collection in the same store
    mc.run("add", {"collection": "others", "vectors": [[1.0] * DIM], "ids": ["o1"]}, registry=registry)
    assert store_line(registry) == f"{N + 1} vectors · {DIM}-d · cosine · 2 collections · {folder}"
    # a collection keeps its distance: another `metric:` (l2 when left out) is refused, naming both
    for metric in ("l2", ""):
        mc.compose(store_yaml(folder, metric), registry=registry)
        with pytest.raises(InputError, match="made with the distance `cosine`, but the component says `metric: l2`"):
            find(registry, vectors[9].tolist())
    mc.compose(store_yaml(folder, "cosine"), registry=registry)
    assert find(registry, vectors[9].tolist(), k=5) == before


def test_insert_in_batches_moves_a_progress_bar_and_generates_ids(registry, tmp_path):
    from mc_jupyter import progress
    compose(registry, tmp_path / "db", with_data=False)
    vectors, _, meta, _ = data()
    seen = []
    unwatch = progress.watch(lambda event, bar: seen.append((event, bar.title)))
    try:
        out = mc.run("add", {"vectors": vectors.tolist(), "ids": None, "metadata": meta, "batch_size": 7},
                     registry=registry).output
    finally:
        unwatch()
    assert out["affected_rows"] == N and len(set(out["ids"])) == N
    assert sum(1 for e, t in seen if t == "inserting into store" and e == "step") >= 5
    assert find(registry, vectors[4].tolist(), k=1)[0]["id"] == out["ids"][4]


def test_bad_input_names_the_field_and_writes_nothing(registry, tmp_path):
    compose(registry, tmp_path / "db")
    before = store_line(registry)
    vectors, _, _, _ = data()
    ok = [0.0] * DIM
    cases = [
        ({"vectors": [[0.1, 0.2, 0.3]], "ids": ["x"]}, "`vector`: a vector of dimension 3 for the chroma collection "
                                                        "`items`, whose vectors have dimension 8"),
        ({"vectors": [ok, ok], "ids": ["new", "v0"]}, "`vector_id` `v0` already in the chroma collection `items`"),
        ({"vectors": [ok, ok], "ids": ["d", "d"]}, "`vector_id`: `d` given more than once"),
        ({"vectors": [ok, ok], "ids": ["a"]}, "`vector_id` names 1 ids for 2 vectors"),
        ({"vectors": [ok, ok], "ids": ["p", "q"], "metadata": [{"k": 1}, {"k": {"nested": 1}}]},
         r"`metadata\[1\]`: Expected metadata value to be a str"),
        ({"vectors": [ok, ok + [1.0]], "ids": ["p", "q"]}, "the vectors have different lengths"),
        ({"vectors": [ok], "ids": ["p"], "documents": [3]}, r"`document\[0\]` must be a text"),
        ({"vectors": [ok], "ids": ["p"], "collection": "x"}, "`collection`: 'x' is not a name chroma accepts"),
        ({"vectors": "nope", "ids": ["p"]}, "`vector` must be a vector"),
    ]
    for inputs, message in cases:
        with pytest.raises(InputError, match=message):
            mc.run("add", inputs, registry=registry)
    # a batch that chroma refuses half way: the batches before it are removed again
    with pytest.raises(InputError, match="already in"):
        mc.run("add", {"vectors": [ok] * 5, "ids": ["b1", "b2", "b3", "b4", "v1"], "batch_size": 2},
               registry=registry)
    for inputs, message in [
        ({"query": [0.1, 0.2]}, "`query`: .*dimension"),
        ({"query": ok, "filter": {"n": {"gte": "ten"}}}, r"`filter\[0\]` \(`n gte`\) needs a number"),
        ({"query": ok, "filter": [{"field": "cat", "operator": "in", "value": "a"}]},
         r"`filter\[0\]` \(`cat in`\) needs a non-empty list"),
        ({"query": ok, "filter": {"cat": {"like": "a"}}}, "unknown operator `like`"),
        ({"query": ok, "fields": "n"}, "`output_fields` must be a list"),
    ]:
        with pytest.raises(InputError, match=message):
            find(registry, **inputs)
    with pytest.raises(BindingError, match=r"actions\[1\]\.top_k`: .*cannot convert `'many'` to `integer`"):
        find(registry, ok, k="many")
    with pytest.raises(InputError, match=r"`filter\[0\]` \(`n lt`\) needs a number"):
        mc.run("drop", {"filter": {"n": {"lt": None}}}, registry=registry)
    assert store_line(registry) == before == f"{N} vectors · {DIM}-d · l2 · 1 collection · {tmp_path / 'db'}"
    assert len(find(registry, ok, k=N)) == N


def test_a_search_on_a_collection_that_does_not_exist_names_the_ones_there(registry, tmp_path):
    compose(registry, tmp_path / "db")
    mc.compose("""
workflow:
  id: elsewhere
  jobs: [{component: store, action: look}]
components:
  - id: store
    type: vector-store
    driver: chroma
    storage_dir: %s
    actions:
      - {id: look, method: search, collection: missing-one, query: "${input.query}"}
""" % (tmp_path / "db"), registry=registry)
    with pytest.raises(InputError, match="`collection`: `missing-one` does not exist .* it has `items`"):
        mc.run("elsewhere", {"query": [0.0] * DIM}, registry=registry)
    assert store_line(registry).startswith(f"{N} vectors · {DIM}-d · l2 · 1 collection")   # nothing created


def test_a_chroma_action_without_collection_is_a_compose_error_that_keeps_the_registry(registry, tmp_path):
    compose(registry, tmp_path / "db")
    before = [(r["id"], r["state"], r["store"]) for r in registry.snapshot()]
    text = store_yaml(tmp_path / "db").replace("        collection: items\n        query:", "        query:", 1)
    with pytest.raises(ConfigError, match="a chroma `search` action needs `collection:`") as failure:
        mc.compose(text, registry=registry)
    assert failure.value.line == text.splitlines().index("      - id: find") + 1
    assert "collection: docs" in str(failure.value)     # the hint
    assert [(r["id"], r["state"], r["store"]) for r in registry.snapshot()] == before


# ------------------------------------------------------------------------------------------------
# The spec's RAG block (8.3.4#2) verbatim, on a chroma store named `vector-store` and the real MiniLM

from tests.test_vector_store import DOCS  # noqa: E402  (the same passages as the faiss tests)


def rag_store(folder, actions: str) -> str:
    return f"""
components:
  - id: embedder
    type: model
    task: text-embedding
    model: sentence-transformers/all-MiniLM-L6-v2
    text: ${{input.text}}
  - id: vector-store
    type: vector-store
    driver: chroma
    storage_dir: {folder}
    metric: cosine
    actions:
{actions}workflows:
  - id: index
    jobs:
      - id: embed
        component: embedder
        input:
          text: ${{input.texts}}
      - id: store
        component: vector-store
        action: insert
        input:
          vectors: ${{jobs.embed.output}}
          ids: ${{input.ids | null}}
          metadata: ${{input.metadata | null}}
          documents: ${{input.texts}}
"""


INSERT = """      - id: insert
        method: insert
        collection: docs
        vector: ${input.vectors}
        vector_id: ${input.ids}
        metadata: ${input.metadata}
        document: ${input.documents}
"""


def cosine_ranking(query: str) -> list:
    q = np.array(reference.minilm_embedding(query))
    docs = np.array([reference.minilm_embedding(d) for d in DOCS])
    cos = docs @ q / (np.linalg.norm(docs, axis=1) * np.linalg.norm(q))
    return [(f"doc{i}", 1.0 / (1.0 + (1.0 - float(cos[i])))) for i in np.argsort(-cos)]


@pytest.mark.slow
def test_the_spec_rag_block_runs_verbatim_on_chroma(registry, tmp_path):
    """The block's `action: search` names no action of the store, so it has no `collection:`.
    model-compose refuses such a job ("Action not found: search"); here it searches the one collection
    the store's actions name (`docs`)."""
    mc.compose(rag_store(tmp_path / "db", INSERT), registry=registry)
    ids = [f"doc{i}" for i in range(len(DOCS))]
    meta = [{"text": d, "n": i} for i, d in enumerate(DOCS)]
    mc.run("index", {"texts": DOCS, "ids": ids, "metadata": meta}, registry=registry)
    mc.compose(BLOCKS["8.3.4#2"], registry=registry)            # verbatim
    for query, best in [("Which city has the Eiffel Tower?", "doc0"), ("What is the biggest ocean?", "doc5"),
                        ("How do plants make sugar from light?", "doc4")]:
        hits = mc.run(inputs={"query": query}, registry=registry).output
        expected = cosine_ranking(query)[:5]
        assert len(hits) == 5 and hits[0]["id"] == best
        assert [h["id"] for h in hits] == [i for i, _ in expected]
        assert [h["score"] for h in hits] == pytest.approx([s for _, s in expected], abs=1e-4)
        assert hits[0]["document"] == DOCS[int(best[3:])] and hits[0]["metadata"]["text"] == DOCS[int(best[3:])]


@pytest.mark.slow
def test_the_spec_rag_block_on_a_store_of_two_collections_says_how_to_name_one(registry, tmp_path):
    two = INSERT + INSERT.replace("id: insert", "id: insert-notes").replace("collection: docs", "collection: notes")
    mc.compose(rag_store(tmp_path / "db", two), registry=registry)
    mc.compose(BLOCKS["8.3.4#2"], registry=registry)
    with pytest.raises(InputError, match="(?s)this `search` has no `collection:`.*name `docs`, `notes`.*"
                                         "`id: search` with `method: search` and `collection: <name>`"):
        mc.run(inputs={"query": "Which city has the Eiffel Tower?"}, registry=registry)
    # the fix the message gives: an action named `search` with its collection
    fixed = two + """      - id: search
        method: search
        collection: docs
        query: ${input.vector}
        top_k: ${input.top_k}
"""
    mc.compose(rag_store(tmp_path / "db", fixed), registry=registry)
    mc.run("index", {"texts": DOCS, "ids": [f"doc{i}" for i in range(6)],
                     "metadata": [{"text": d} for d in DOCS]}, registry=registry)
    mc.compose(BLOCKS["8.3.4#2"], registry=registry)
    hits = mc.run(inputs={"query": "Which city has the Eiffel Tower?"}, registry=registry).output
    assert hits[0]["id"] == "doc0" and len(hits) == 5
