"""What FaissStore (mc_jupyter.drivers.vector_faiss) costs on top of raw faiss + sqlite3, on the CPU.

    python tests/benchmarks/bench_vector_store.py [--n 50000] [--dim 384] [--queries 100]

On ``--n`` seeded random float32 vectors (standard normal) of ``--dim`` numbers, each with metadata
``{"cat": i % 10, "n": i}``:

1. inserts/s: FaissStore (flat, l2, SQLite in a temporary folder) fed in batches of 1000, against raw
   faiss ``IndexIDMap2(IndexFlatL2).add_with_ids`` plus one sqlite3 ``executemany`` per batch of the
   same ids and metadata (and, as FaissStore keeps them too, a second baseline that also stores the
   vectors as blobs), each batch its own transaction;
2. 100 single-vector searches (top_k 10): ``FaissStore.search`` against the same faiss index called
   directly (median per call, and the ratio of the totals; target <= 1.05x), and a filtered search
   (``{cat: 3}``, a tenth of the rows) for its cost;
3. recall@10 of ``index: hnsw`` (M 32) against exact search, at several ``ef_search`` (target >= 0.95);
4. ``bench_mc_run``: the same searches through ``mc.run`` of a composed ``type: vector-store``.

Timings are ``time.perf_counter``; the direct and FaissStore searches are interleaved so a drift in
machine speed hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from mc_jupyter.drivers.vector_faiss import FaissStore  # noqa: E402

BATCH = 1000
TOP_K = 10


def data(n: int, dim: int, queries: int):
    rng = np.random.default_rng(1234)
    return rng.standard_normal((n, dim), dtype=np.float32), rng.standard_normal((queries, dim), dtype=np.float32)


def bench_insert_store(vectors: np.ndarray, folder: str) -> float:
    store = FaissStore(vectors.shape[1], "l2", storage_dir=folder).open()
    start = time.perf_counter()
    for begin in range(0, len(vectors), BATCH):
        stop = begin + BATCH
        store.insert(vectors[begin:stop], ids=list(range(begin, stop)),
                     metadata=[{"cat": i % 10, "n": i} for i in range(begin, stop)])
    seconds = time.perf_counter() - start
    store.close()
    return len(vectors) / seconds


def bench_insert_raw(vectors: np.ndarray, folder: str, with_vectors: bool) -> float:
    import faiss

    index = faiss.IndexIDMap2(faiss.IndexFlatL2(vectors.shape[1]))
    db = sqlite3.connect(os.path.join(folder, "raw.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, metadata TEXT" + (", vector BLOB)" if with_vectors else ")"))
    start = time.perf_counter()
    for begin in range(0, len(vectors), BATCH):
        stop = begin + BATCH
        batch = vectors[begin:stop]
        ids = list(range(begin, stop))
        rows = [(i, json.dumps({"cat": i % 10, "n": i})) + ((batch[i - begin].tobytes(),) if with_vectors else ())
                for i in ids]
        db.execute("BEGIN")
        db.executemany(f"INSERT INTO rows VALUES ({', '.join('?' * len(rows[0]))})", rows)
        db.execute("COMMIT")
        index.add_with_ids(batch, np.asarray(ids, np.int64))
    seconds = time.perf_counter() - start
    db.close()
    return len(vectors) / seconds


def bench_search(store: FaissStore, queries: np.ndarray) -> dict:
    direct, through, filtered = [], [], []
    for position, query in enumerate(queries):
        matrix = query[None, :]
        calls = [("direct", lambda: store._index.search(matrix, TOP_K)),
                 ("store", lambda: store.search(query, top_k=TOP_K))]
        for name, call in (calls if position % 2 else calls[::-1]):
            start = time.perf_counter()
            call()
            (direct if name == "direct" else through).append(time.perf_counter() - start)
        start = time.perf_counter()
        store.search(query, top_k=TOP_K, filter={"cat": 3})
        filtered.append(time.perf_counter() - start)
    _, found = store._index.search(queries[:5], TOP_K)  # the same answers (faiss positions -> row ids -> ids)
    assert ([[h["id"] for h in hits] for hits in store.search(queries[:5], top_k=TOP_K)]
            == [[store._rows[int(store._ids_at[i])][0] for i in row] for row in found])
    return {"direct": direct, "store": through, "filtered": filtered}


def recall_hnsw(vectors: np.ndarray, queries: np.ndarray, exact: List[List[int]], efs: List[int]) -> dict:
    store = FaissStore(vectors.shape[1], "l2", index="hnsw", hnsw_m=32).open()
    start = time.perf_counter()
    for begin in range(0, len(vectors), 10 * BATCH):
        part = vectors[begin:begin + 10 * BATCH]
        store.insert(part, ids=list(range(begin, begin + len(part))))
    build = time.perf_counter() - start
    out = {"build_s": build}
    for ef in efs:
        store.ef_search = ef
        start = time.perf_counter()
        results = [store.search(q, top_k=TOP_K)[0] for q in queries]
        per_query = (time.perf_counter() - start) / len(queries)
        hit = sum(len(set(e) & {h["id"] for h in r}) for e, r in zip(exact, results))
        out[ef] = (hit / (TOP_K * len(queries)), per_query)
    store.close()
    return out


# ---------------------------------------------------------------- mc.run (the lead's YAML side)

MC_YAML = """
components:
  - id: store
    type: vector-store
    driver: faiss
    dimension: {dim}
    metric: l2
    actions:
      - id: insert
        method: insert
        vector: ${{input.vectors}}
        vector_id: ${{input.ids}}
      - id: search
        method: search
        query: ${{input.vector}}
        top_k: 10
"""


#: When ``mc.run("search")`` names no target in MC_YAML alone, this workflow (the seed's job form,
#: ``action: search``) is composed beside it so that it does.
SEARCH_WORKFLOW = """
workflows:
  - id: search
    jobs:
      - id: search
        component: store
        action: search
        input:
          vector: ${input.vector}
"""


def bench_mc_run(vectors: np.ndarray, queries: np.ndarray, exact: List[List[int]]) -> List[str]:
    """THE mc.run MEASURE: compose MC_YAML, insert every vector through ``mc.run("store", ...)``
    (its first action, insert), and time ``mc.run("search", {"vector": q})`` for each query against the
    same faiss index called directly (interleaved), checking the hits are the exact ones.

    Returns the table lines; "mc.run: not measured (...)" when the YAML side cannot compose or run it.
    """
    import faiss

    try:
        import mc_jupyter as mc

        yaml = MC_YAML.format(dim=vectors.shape[1])
        mc.compose(yaml)
        for begin in range(0, len(vectors), 10 * BATCH):
            part = vectors[begin:begin + 10 * BATCH]
            mc.run("store", {"vectors": part.tolist(), "ids": list(range(begin, begin + len(part)))},
                   action="insert")
        note = ""
        try:
            mc.run("search", {"vector": queries[0].tolist()})
        except mc.errors.WorkflowError:
            mc.compose(yaml + SEARCH_WORKFLOW)
            note = " (target `search`: a one-job workflow composed beside the YAML)"
        direct_index = faiss.IndexFlatL2(vectors.shape[1])
        direct_index.add(vectors)
        timings, direct, hits = [], [], []
        for position, query in enumerate(queries):
            calls = [("mc", lambda: mc.run("search", {"vector": query.tolist()})),
                     ("direct", lambda: direct_index.search(query[None, :], TOP_K))]
            for name, call in (calls if position % 2 else calls[::-1]):
                start = time.perf_counter()
                out = call()
                (timings if name == "mc" else direct).append(time.perf_counter() - start)
                if name == "mc":
                    hits.append([hit["id"] for hit in out.output])
        mc.down()
    except Exception as error:  # the YAML side may not be built yet: say so, do not crash
        text = " ".join(f"{type(error).__name__}: {error}".split())
        return [f"mc.run: not measured ({text[:300]})"]
    same = sum(h == e for h, e in zip(hits, exact))
    label = 'search mc.run("search") per call'
    return [f"{label:44} {statistics.median(timings) * 1e3:10.3f} ms   "
            f"(raw faiss {statistics.median(direct) * 1e3:.3f} ms; ratio of medians "
            f"{statistics.median(timings) / statistics.median(direct):.3f}x, of totals "
            f"{sum(timings) / sum(direct):.3f}x; exact hits {same}/{len(queries)}){note}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--ef", type=int, nargs="*", default=[64, 256, 1024])
    args = parser.parse_args()
    import faiss

    vectors, queries = data(args.n, args.dim, args.queries)
    print(f"{args.n} x {args.dim} float32 (seeded normal), {args.queries} queries, top_k {TOP_K}; "
          f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        raw = bench_insert_raw(vectors, folder, with_vectors=False)
        os.remove(os.path.join(folder, "raw.sqlite"))
        raw_blobs = bench_insert_raw(vectors, folder, with_vectors=True)
        ours = bench_insert_store(vectors, os.path.join(folder, "store"))  # closes: writes the index cache
        reopen_start = time.perf_counter()
        store = FaissStore(args.dim, "l2", storage_dir=os.path.join(folder, "store")).open()
        opened = time.perf_counter() - reopen_start
        searches = bench_search(store, queries)
        exact = [[h["id"] for h in store.search(q, top_k=TOP_K)[0]] for q in queries]
        memory = store.memory_bytes
        store.close()
    recall = recall_hnsw(vectors, queries, exact, args.ef)

    direct, through = statistics.median(searches["direct"]), statistics.median(searches["store"])
    print()
    print(f"{'measure':34} {'value':>12}")
    print(f"{'insert raw faiss + sqlite (ids, metadata)':44} {raw:10,.0f} /s")
    print(f"{'insert raw faiss + sqlite (+ vector blobs)':44} {raw_blobs:10,.0f} /s")
    print(f"{'insert FaissStore (flat, SQLite)':44} {ours:10,.0f} /s   ({ours / raw:.2f}x raw, "
          f"{ours / raw_blobs:.2f}x raw + blobs)")
    print(f"{'reopen FaissStore (index cache fresh)':44} {opened * 1e3:10.1f} ms")
    print(f"{'search raw faiss (flat) per call':44} {direct * 1e3:10.3f} ms")
    print(f"{'search FaissStore (flat) per call':44} {through * 1e3:10.3f} ms   "
          f"(ratio of medians {through / direct:.3f}x, of totals "
          f"{sum(searches['store']) / sum(searches['direct']):.3f}x; target <= 1.05x)")
    print(f"{'search FaissStore + filter {cat: 3} per call':44} {statistics.median(searches['filtered']) * 1e3:10.3f} ms")
    print(f"{'FaissStore memory_bytes (flat)':44} {memory / 2**20:10.1f} MiB")
    print(f"{'hnsw build (M 32, through FaissStore)':44} {recall['build_s']:10.1f} s")
    for ef in args.ef:
        value, per_query = recall[ef]
        print(f"{f'hnsw recall@10, ef_search {ef}':44} {value:10.3f}     ({per_query * 1e3:.3f} ms per search; "
              f"target >= 0.95: {'met' if value >= 0.95 else 'not met'})")
    for line in bench_mc_run(vectors, queries, exact):
        print(line)


if __name__ == "__main__":
    main()
