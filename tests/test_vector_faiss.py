"""FaissStore (mc_jupyter.drivers.vector_faiss): real faiss, checked against numpy brute force."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mc_jupyter.drivers.vector_faiss import CACHE_FILE, FaissStore, normalize_filter
from mc_jupyter.errors import InputError

ROOT = pathlib.Path(__file__).resolve().parents[1]
D = 16


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, D)).astype(np.float32)
    metadata = [{"cat": "abc"[i % 3], "year": 2000 + (i * 7) % 30, "n": i} for i in range(n)]
    for i in range(0, n, 11):
        del metadata[i]["year"]  # some rows lack the field
    return vectors, metadata


def _brute(vectors, ids, query, metric, k):
    """(ids, scores) best first, as FaissStore documents its scores."""
    if metric == "l2":
        raw = ((vectors - query) ** 2).sum(axis=1)
        score = 1.0 / (1.0 + raw)
    elif metric == "ip":
        score = vectors @ query
    else:
        score = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    order = np.argsort(-score, kind="stable")[:k]
    return [ids[i] for i in order], score[order]


def _store(metric="l2", index="flat", n=400, **kw):
    vectors, metadata = _data(n)
    store = FaissStore(D, metric, index=index, **kw).open()
    store.insert(vectors, ids=list(range(n)), metadata=metadata)
    return store, vectors, metadata


def _assert_hits_equal(hits, ids, scores):
    assert [h["id"] for h in hits] == ids
    np.testing.assert_allclose([h["score"] for h in hits], scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_flat_search_equals_numpy_brute_force(metric):
    store, vectors, _ = _store(metric)
    queries = np.random.default_rng(1).standard_normal((5, D)).astype(np.float32)
    results = store.search(queries, top_k=10)
    assert len(results) == 5
    for query, hits in zip(queries, results):
        ids, scores = _brute(vectors, list(range(400)), query, metric, 10)
        _assert_hits_equal(hits, ids, scores)
        if metric == "l2":
            expected = ((vectors[ids] - query) ** 2).sum(axis=1)
            np.testing.assert_allclose([h["distance"] for h in hits], expected, rtol=1e-5)
        elif metric == "cosine":
            np.testing.assert_allclose([h["distance"] for h in hits], 1 - scores, atol=1e-5)
        else:
            assert "distance" not in hits[0]


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_hnsw_finds_the_exact_neighbours_of_a_small_store(metric):
    store, vectors, _ = _store(metric, index="hnsw", ef_search=200)
    queries = np.random.default_rng(2).standard_normal((20, D)).astype(np.float32)
    found = 0
    for query, hits in zip(queries, store.search(queries, top_k=10)):
        ids, _ = _brute(vectors, list(range(400)), query, metric, 10)
        found += len(set(ids) & {h["id"] for h in hits})
        for hit in hits:  # every score is the true score of that id
            own, score = _brute(vectors[[hit["id"]]], [hit["id"]], query, metric, 1)
            assert hit["score"] == pytest.approx(float(score[0]), abs=1e-5)
    assert found / 200 >= 0.95


CONDITIONS = [
    ("eq", "cat", "b"), ("neq", "cat", "b"), ("gt", "year", 2020), ("gte", "year", 2020),
    ("lt", "year", 2005), ("lte", "year", 2005), ("in", "cat", ["a", "c"]), ("not-in", "year", [2000, 2001, 2002]),
]


def _python_match(meta, field, op, value):
    if op == "eq":
        return field in meta and meta[field] == value
    if op == "neq":
        return meta.get(field) != value
    if op == "in":
        return field in meta and meta[field] in value
    if op == "not-in":
        return not (field in meta and meta[field] in value)
    if field not in meta:
        return False
    return {"gt": meta[field] > value, "gte": meta[field] >= value,
            "lt": meta[field] < value, "lte": meta[field] <= value}[op]


@pytest.mark.parametrize("index", ["flat", "hnsw"])
@pytest.mark.parametrize("op,field,value", CONDITIONS)
def test_each_filter_operator_equals_brute_force_over_the_matching_rows(op, field, value, index):
    store, vectors, metadata = _store("l2", index=index, ef_search=400)
    keep = [i for i, m in enumerate(metadata) if _python_match(m, field, op, value)]
    assert 10 < len(keep) < 400
    query = np.random.default_rng(3).standard_normal(D).astype(np.float32)
    hits = store.search(query, top_k=10, filter=[{"field": field, "operator": op, "value": value}])[0]
    ids, scores = _brute(vectors[keep], keep, query, "l2", 10)
    assert len(hits) == 10
    assert all(_python_match(h["metadata"], field, op, value) for h in hits)
    if index == "flat":
        _assert_hits_equal(hits, ids, scores)
    else:
        assert len(set(ids) & {h["id"] for h in hits}) >= 9


def test_a_selective_filter_still_returns_top_k_hits_inside_the_faiss_search():
    vectors, _ = _data(3000)
    metadata = [{"rare": i % 250 == 0} for i in range(3000)]  # 12 rows match
    for index in ("flat", "hnsw"):
        store = FaissStore(D, "l2", index=index, ef_search=16).open()
        store.insert(vectors, ids=list(range(3000)), metadata=metadata)
        query = vectors[7] + 0.01
        hits = store.search(query, top_k=10, filter={"rare": True})[0]
        keep = [i for i in range(3000) if i % 250 == 0]
        ids, scores = _brute(vectors[keep], keep, query, "l2", 10)
        _assert_hits_equal(hits, ids, scores)
        assert len(store.search(query, top_k=50, filter={"rare": True})[0]) == 12


def test_filters_over_mixed_and_missing_values_follow_the_row_rules():
    from mc_jupyter.drivers.vector_faiss import matches

    values = [3, 3.0, "3", None, True, [3], {"a": 1}, 2021, "zeta"]
    metadata = [{"v": v} for v in values] + [{}, {"other": 1}]
    vectors, _ = _data(len(metadata))
    store = FaissStore(D).open()
    store.insert(vectors, ids=list(range(len(metadata))), metadata=metadata)
    def matching(conditions):
        return [store._rows[i][0] for i in store._matching(conditions).tolist()]

    for value in (3, "3", None, True, [3], 2020, "b"):
        for operator in ("eq", "neq", "gt", "gte", "lt", "lte", "in", "not-in"):
            conditions = normalize_filter([{"field": "v", "operator": operator, "value": value}])
            expected = [i for i, m in enumerate(metadata) if matches(m, conditions)]
            assert matching(conditions) == expected, (operator, value)
    assert matching(normalize_filter({"v": 3})) == [0, 1]  # 3 == 3.0, as in Python
    assert matching(normalize_filter({"v": True})) == [4]
    assert matching(normalize_filter({"v": {"neq": None}})) == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert matching(normalize_filter({"v": {"gt": 2000}})) == [7]
    assert matching(normalize_filter({"v": {"in": [[3], "zeta"]}})) == [5, 8]


def test_the_shorthand_filter_means_the_same_as_the_condition_list():
    store, vectors, metadata = _store()
    query = vectors[5]
    short = store.search(query, top_k=20, filter={"cat": "a", "year": {"gte": 2010, "lt": 2020}})
    full = store.search(query, top_k=20, filter=[
        {"field": "cat", "operator": "eq", "value": "a"},
        {"field": "year", "operator": "gte", "value": 2010}, {"field": "year", "operator": "lt", "value": 2020}])
    assert short == full
    assert all(h["metadata"]["cat"] == "a" and 2010 <= h["metadata"]["year"] < 2020 for h in short[0])
    assert normalize_filter({"field": "cat", "operator": "not_in", "value": ["a"]}) == [("cat", "not-in", ["a"])]
    assert store.search(query, top_k=5, filter={"cat": "nothing"}) == [[]]


def test_output_fields_keep_only_those_metadata_keys_and_documents_come_back():
    store = FaissStore(D, "cosine").open()
    vectors, _ = _data(3)
    store.insert(vectors, ids=["x", "y", "z"], metadata={"source": "s.txt", "page": 1},
                 documents=["ex", "why", None])
    hits = store.search(vectors[1], top_k=3, output_fields=["page"], include_vector=True)[0]
    assert hits[0]["id"] == "y" and hits[0]["metadata"] == {"page": 1} and hits[0]["document"] == "why"
    np.testing.assert_allclose(hits[0]["vector"], vectors[1], rtol=1e-6)  # the raw vector, not normalized
    assert "document" not in [h for h in hits if h["id"] == "z"][0]


def test_ids_keep_their_type_generated_ids_are_ulids_and_one_id_is_the_same_as_its_string():
    store = FaissStore(D).open()
    vectors, _ = _data(4)
    assert store.insert(vectors[0], ids=7) == [7]
    assert store.search(vectors[0], top_k=1)[0][0]["id"] == 7
    generated = store.insert(vectors[1:3])
    assert len(set(generated)) == 2 and all(len(g) == 26 and g.isalnum() for g in generated)
    with pytest.raises(InputError, match=r"`vector_id`: '7' already in the store; nothing was inserted"):
        store.insert(vectors[3], ids="7")
    assert store.count == 3


def test_update_replaces_vectors_and_metadata_and_inserts_unknown_ids():
    for index in ("flat", "hnsw"):
        store, vectors, _ = _store(index=index, n=50)
        far = np.full(D, 50.0, np.float32)
        assert store.update([3], vectors=[far], metadata=[{"moved": True}]) == [3]
        hit = store.search(far, top_k=1)[0][0]
        assert hit["id"] == 3 and hit["metadata"] == {"moved": True} and hit["distance"] == pytest.approx(0)
        assert store.update(4, metadata={"only": "meta"}) == [4]
        assert store.search(vectors[4], top_k=1)[0][0] == {
            "id": 4, "score": pytest.approx(1.0), "distance": pytest.approx(0.0), "metadata": {"only": "meta"}}
        assert store.update(["new"], vectors=[far + 1]) == ["new"] and store.count == 51
        with pytest.raises(InputError, match=r"`vector_id`: 'nope', 'nada' not in the store \(insert_if_not_exist"):
            store.update(["nope", 5, "nada"], metadata={"a": 1}, insert_if_not_exist=False)
        assert store.get([5])[0]["metadata"]["n"] == 5 and store.count == 51
        with pytest.raises(InputError, match=r"`vector`: ids 'nope' are not in the store"):
            store.update(["nope"], metadata={"a": 1})
        assert len(store.search(far, top_k=100)[0]) == 51


def test_update_of_documents_keeps_them_across_reopen(tmp_path):
    vectors, _ = _data(3)
    with FaissStore(D, storage_dir=str(tmp_path)) as store:
        store.insert(vectors, ids=[1, 2, 3], documents=["a", "b", "c"], metadata={"k": 0})
        store.update([2], documents=["B"])
        store.update([3], vectors=vectors[:1] + 1, metadata={"k": 3})
    with FaissStore(D, storage_dir=str(tmp_path)) as store:
        rows = store.get([1, 2, 3, 4])
        assert [(r["document"], r["metadata"]) for r in rows[:3]] == [("a", {"k": 0}), ("B", {"k": 0}), ("c", {"k": 3})]
        assert rows[3] is None
        np.testing.assert_allclose(rows[2]["vector"], vectors[0] + 1, rtol=1e-6)


def test_delete_by_ids_by_filter_and_unknown_ids_delete_nothing():
    for index in ("flat", "hnsw"):
        store, vectors, metadata = _store(index=index, n=300)
        assert store.delete([0, 1]) == [0, 1] and store.count == 298
        with pytest.raises(InputError, match=r"`vector_id`: 999 not in the store; nothing was deleted"):
            store.delete([2, 999])
        assert store.count == 298
        deleted = store.delete(filter={"cat": "b"})
        assert sorted(deleted) == [i for i in range(2, 300) if i % 3 == 1] and store.count == 199
        hits = store.search(vectors[1], top_k=300)[0]
        assert len(hits) == 199 and {h["metadata"]["cat"] for h in hits} == {"a", "c"}
        assert 0 not in {h["id"] for h in hits}
        with pytest.raises(InputError, match="delete needs `vector_id` or `filter`"):
            store.delete()


def test_persistence_across_close_and_open_and_in_a_fresh_process(tmp_path):
    vectors, metadata = _data(200)
    with FaissStore(D, "cosine", storage_dir=str(tmp_path)) as store:
        store.insert(vectors, ids=[f"d{i}" for i in range(200)], metadata=metadata)
        store.delete(["d0"])
        store.update(["d1"], metadata={"edited": 1})
        before = store.search(vectors[:3], top_k=5)
    assert (tmp_path / CACHE_FILE).exists()
    with FaissStore(D, "cosine", storage_dir=str(tmp_path)) as store:
        assert store.count == 199 and store.search(vectors[:3], top_k=5) == before
    (tmp_path / CACHE_FILE).unlink()  # a missing cache is rebuilt from SQLite
    with FaissStore(D, "cosine", storage_dir=str(tmp_path), index="hnsw") as store:
        assert [h["id"] for h in store.search(vectors[5], top_k=1)[0]] == ["d5"]
        store.delete(["d7"])  # a tombstone, kept in the cache
    stamp = (tmp_path / CACHE_FILE).stat().st_mtime_ns
    with FaissStore(D, "cosine", storage_dir=str(tmp_path), index="hnsw", ef_search=300) as store:
        assert store._index.hnsw.efSearch == 300 and store._tombstones  # the hnsw cache, reused
        assert store.count == 198 and "d7" not in {h["id"] for h in store.search(vectors[7], top_k=5)[0]}
        store.insert(vectors[7], ids="d7")
    assert (tmp_path / CACHE_FILE).stat().st_mtime_ns != stamp
    (tmp_path / CACHE_FILE).write_bytes(b"MCFAISS1\nnot json\n")  # a broken one too
    code = f"""
        import numpy as np
        from mc_jupyter.drivers.vector_faiss import FaissStore
        store = FaissStore({D}, "cosine", storage_dir={str(tmp_path)!r}).open()
        hit = store.search(np.array({vectors[9].tolist()}, np.float32), top_k=1)[0][0]
        print(store.count, hit["id"], store.get(["d1"])[0]["metadata"])
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "199 d9 {'edited': 1}", out.stderr


def test_a_process_killed_mid_insert_leaves_exactly_the_earlier_batches(tmp_path):
    code = f"""
        import sys, time, numpy as np
        from mc_jupyter.drivers.vector_faiss import FaissStore
        store = FaissStore({D}, storage_dir={str(tmp_path)!r}).open()
        rng = np.random.default_rng(0)
        for batch in range(3):
            store.insert(rng.standard_normal((100, {D})), ids=list(range(batch * 100, batch * 100 + 100)))
        def stall(done, total):
            print("writing", done, total, flush=True)
            time.sleep(60)
        store.insert(rng.standard_normal((5000, {D})), ids=list(range(300, 5300)), on_progress=stall)
    """
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "writing 1000 5000", process.stderr.read()
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert not (tmp_path / CACHE_FILE).exists()
    with FaissStore(D, storage_dir=str(tmp_path)) as store:
        assert store.count == 300
        assert sorted(h["id"] for h in store.search(np.zeros(D), top_k=1000)[0]) == list(range(300))
        assert store.insert(np.ones(D), ids=300) == [300]  # the interrupted ids are free again


def test_a_second_store_on_the_same_folder_is_refused_naming_the_folder_and_holder(tmp_path):
    first = FaissStore(D, storage_dir=str(tmp_path)).open()
    with pytest.raises(InputError) as caught:
        FaissStore(D, storage_dir=str(tmp_path)).open()
    message = str(caught.value)
    assert f"`storage_dir` {tmp_path} is in use: its lock is held by process {os.getpid()}" in message
    assert "this same process" in message and "Close that store" in message
    code = f"""
        from mc_jupyter.drivers.vector_faiss import FaissStore
        try:
            FaissStore({D}, storage_dir={str(tmp_path)!r}).open()
        except Exception as error:
            print(type(error).__name__, error)
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.startswith(f"InputError `storage_dir` {tmp_path} is in use: its lock is held by "
                                 f"process {os.getpid()}"), out.stderr
    first.close()
    first.close()  # idempotent
    with FaissStore(D, storage_dir=str(tmp_path)) as again:
        assert again.count == 0


def test_reopening_with_another_dimension_or_metric_is_refused(tmp_path):
    FaissStore(D, "ip", storage_dir=str(tmp_path)).open().close()
    with pytest.raises(InputError, match=rf"`dimension`: {tmp_path} holds a store of dimension {D}, not 8; "
                                         rf"set dimension: {D}"):
        FaissStore(8, "ip", storage_dir=str(tmp_path)).open()
    with pytest.raises(InputError, match=r"`metric`: .* holds a store of metric ip, not l2; set metric: ip"):
        FaissStore(D, "l2", storage_dir=str(tmp_path)).open()
    FaissStore(D, "ip", storage_dir=str(tmp_path)).open().close()  # and the lock was released


BAD_CALLS = [
    (lambda s, v: s.insert(np.ones((2, 5))), r"`vector`: expected dimension 16, got 5"),
    (lambda s, v: s.insert([[1.0] * D, [1.0] * 3]), r"`vector`: expected 16 numbers .* rows of lengths \[3, 16\]"),
    (lambda s, v: s.insert([[np.nan] * D]), r"`vector`: row 0 holds NaN or infinity"),
    (lambda s, v: s.insert(v[:2], ids=[1]), r"`vector_id`: 1 ids for 2 vectors"),
    (lambda s, v: s.insert(v[:2], ids=["a", "a"]), r"`vector_id`: repeated in this call: 'a'"),
    (lambda s, v: s.insert(v[:2], ids=[5, 1000]), r"`vector_id`: '5' already in the store; nothing was inserted"),
    (lambda s, v: s.insert(v[:1], ids=[True]), r"`vector_id`: ids are integers or non-empty strings, got True"),
    (lambda s, v: s.insert(v[:2], ids=[1000, 1001], metadata=[{}]), r"`metadata`: 1 entries for 2 vectors"),
    (lambda s, v: s.insert(v[:1], ids=[1000], metadata=[{"x": object()}]), r"`metadata\[0\]`: values must be JSON"),
    (lambda s, v: s.insert(v[:1], ids=[1000], metadata="x"), r"`metadata`: expected a dict or a list of dicts"),
    (lambda s, v: s.search(np.ones(3)), r"`query`: expected dimension 16, got 3"),
    (lambda s, v: s.search(v[0], top_k=0), r"`top_k`: expected a positive integer, got 0"),
    (lambda s, v: s.search(v[0], filter=[{"field": "cat", "operator": "like", "value": "a"}]),
     r"`filter\[0\]\.operator`: unknown operator `like`; use one of eq, neq"),
    (lambda s, v: s.search(v[0], filter={"year": {"gtee": 1}}), r"unknown operator `gtee` \(did you mean `gte`\?\)"),
    (lambda s, v: s.search(v[0], filter="cat = a"), r"`filter`: expected a list of \{field, operator, value\}"),
    (lambda s, v: s.search(v[0], filter=[{"field": 3, "operator": "eq", "value": 1}]), r"`filter\[0\]`: expected"),
    (lambda s, v: s.update([1, 2], vectors=np.ones((2, 4))), r"`vector`: expected dimension 16, got 4"),
    (lambda s, v: s.update([1, 2], vectors=v[:1]), r"`vector`: 1 vectors for 2 ids"),
    (lambda s, v: s.update([1]), r"update needs `vector`, `metadata` or `documents`"),
    (lambda s, v: s.update([1, 2], documents=["one"]), r"`documents`: 1 texts for 2 vectors"),
    (lambda s, v: s.delete(filter={"cat": {"regex": "a"}}), r"`filter\[0\]\.operator`: unknown operator `regex`"),
]


@pytest.mark.parametrize("call,message", BAD_CALLS)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, call, message):
    vectors, metadata = _data(20)
    store = FaissStore(D, storage_dir=str(tmp_path)).open()
    store.insert(vectors, ids=list(range(20)), metadata=metadata)
    before = store.search(vectors[:2], top_k=20)
    with pytest.raises(InputError, match=message):
        call(store, vectors)
    assert store.count == 20 and store.search(vectors[:2], top_k=20) == before
    store.close()
    with FaissStore(D, storage_dir=str(tmp_path)) as reopened:
        assert reopened.count == 20 and reopened.search(vectors[:2], top_k=20) == before


def test_cosine_refuses_a_zero_vector_and_closed_stores_say_so():
    store = FaissStore(D, "cosine").open()
    with pytest.raises(InputError, match=r"`vector`: row 1 is all zeros"):
        store.insert([[1.0] * D, [0.0] * D])
    store.close()
    with pytest.raises(InputError, match=r"the faiss store \(memory\) is not open: call open\(\) first"):
        store.search([1.0] * D)
    with pytest.raises(InputError, match=r"`metric`: unknown metric `cos` \(did you mean `cosine`\?\)"):
        FaissStore(D, "cos")


def test_describe_memory_and_progress():
    store = FaissStore(D, index="hnsw", hnsw_m=8).open()
    empty = store.memory_bytes
    calls = []
    vectors, metadata = _data(2500)
    store.insert(vectors, metadata=metadata, on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1000, 2500), (2000, 2500), (2500, 2500)]
    assert store.memory_bytes - empty >= 2500 * D * 4
    assert store.describe() == {"driver": "faiss", "metric": "l2", "index": "hnsw", "dimension": D,
                                "vectors": 2500, "storage_dir": "memory", "memory_bytes": store.memory_bytes,
                                "hnsw_m": 8, "ef_search": 1024}


def test_hnsw_deletes_are_hidden_then_compacted():
    store, vectors, _ = _store(index="hnsw", n=400)
    store.delete(list(range(50)))  # under a fifth: tombstones
    assert store._index.ntotal == 400
    assert not {h["id"] for h in store.search(vectors[:50], top_k=5)[0]} & set(range(50))
    store.delete(list(range(50, 120)))  # past a fifth: rebuilt without them
    assert store._index.ntotal == 280 and store.count == 280
    hits = store.search(vectors[200], top_k=3)[0]
    assert hits[0]["id"] == 200 and hits[0]["distance"] == pytest.approx(0, abs=1e-5)


def test_a_misspelled_condition_key_is_an_error_not_an_empty_result():
    store = FaissStore(4)
    store.open()
    store.insert([[0.0, 0.0, 0.0, float(i)] for i in range(5)], ids=list(range(5)), metadata=[{"i": i} for i in range(5)])
    with pytest.raises(InputError, match=r"`filter\[0\]`: a condition has the keys .*got \['field', 'op', 'value'\]"):
        store.search([[0.0, 0.0, 0.0, 1.0]], filter=[{"field": "i", "op": "lt", "value": 3}])
    hits = store.search([[0.0, 0.0, 0.0, 1.0]], filter=[{"field": "i", "value": 3}])[0]   # operator: eq by default
    assert [h["id"] for h in hits] == [3]


def test_hnsw_with_a_narrow_filter_equals_exact_search_over_the_matching_rows():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 16)).astype("float32")
    store = FaissStore(16, "l2", index="hnsw")
    store.open()
    store.insert(vectors, ids=list(range(400)), metadata=[{"i": i} for i in range(400)])
    for query in rng.normal(size=(30, 16)).astype("float32"):
        hits = store.search([query.tolist()], top_k=10, filter={"i": {"lt": 12}})[0]
        expected = np.argsort(((vectors[:12] - query) ** 2).sum(axis=1))[:10]
        assert [h["id"] for h in hits] == expected.tolist()
    assert len(store.search([vectors[0].tolist()], top_k=20, filter={"i": {"lt": 5}})[0]) == 5
