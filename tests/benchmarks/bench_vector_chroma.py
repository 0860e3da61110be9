"""What ``driver: chroma`` (mc_jupyter.drivers.vector_chroma.ChromaVectorStore) costs on top of chromadb's
own client, on the CPU.

    /tmp/chromavenv/bin/python tests/benchmarks/bench_vector_chroma.py [--n 50000] [--dim 384] [--queries 100]

chromadb is not in the main environment (it upgrades pydantic); make a venv that sees it:
``python -m venv --system-site-packages /tmp/chromavenv && /tmp/chromavenv/bin/pip install chromadb``.

On ``--n`` seeded random float32 vectors (standard normal) of ``--dim`` numbers, each with metadata
``{"cat": i % 10, "n": i}``, in a ``PersistentClient`` in a temporary folder (``hnsw:space`` l2):

1. inserts/s in batches of 1000: ``ChromaVectorStore.run({"method": "insert", ...})`` (which also checks
   the ids are new and the dimension, before writing) against ``collection.add`` called directly, each
   into its own fresh collection;
2. 100 single-vector searches (top_k 10): the driver's ``run({"method": "search", ...})`` against
   ``collection.query`` on the same collection (median per call, and the ratio of the totals),
   interleaved so a drift in machine speed hits both alike;
3. recall@10 of chroma's HNSW (its default ef_search, 100) against exact search (numpy, squared l2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import chromadb  # noqa: E402

from mc_jupyter.config.store_schema import VectorStoreComponent  # noqa: E402
from mc_jupyter.drivers.vector_chroma import ChromaVectorStore, _settings  # noqa: E402

BATCH = 1000
TOP_K = 10


def data(n: int, dim: int, queries: int):
    rng = np.random.default_rng(1234)
    return rng.standard_normal((n, dim), dtype=np.float32), rng.standard_normal((queries, dim), dtype=np.float32)


def metadata(begin: int, stop: int):
    return [{"cat": i % 10, "n": i} for i in range(begin, stop)]


def bench_insert_driver(driver: ChromaVectorStore, vectors: np.ndarray, collection: str) -> float:
    start = time.perf_counter()
    for begin in range(0, len(vectors), BATCH):
        stop = min(len(vectors), begin + BATCH)
        driver.run({"method": "insert", "collection": collection, "vector": vectors[begin:stop],
                    "vector_id": [str(i) for i in range(begin, stop)], "metadata": metadata(begin, stop)})
    return len(vectors) / (time.perf_counter() - start)


def bench_insert_direct(client, vectors: np.ndarray, collection: str) -> float:
    col = client.create_collection(collection, metadata={"hnsw:space": "l2"}, embedding_function=None)
    start = time.perf_counter()
    for begin in range(0, len(vectors), BATCH):
        stop = min(len(vectors), begin + BATCH)
        col.add(ids=[str(i) for i in range(begin, stop)], embeddings=vectors[begin:stop],
                metadatas=metadata(begin, stop))
    return len(vectors) / (time.perf_counter() - start)


def bench_search(driver: ChromaVectorStore, client, queries: np.ndarray, collection: str):
    col = client.get_collection(collection, embedding_function=None)
    direct, ours, found = [], [], []
    for q in queries:                        # warm both paths
        col.query(query_embeddings=[q.tolist()], n_results=TOP_K)
        driver.run({"method": "search", "collection": collection, "query": q.tolist(), "top_k": TOP_K})
        break
    for q in queries:
        vector = q.tolist()
        t0 = time.perf_counter()
        col.query(query_embeddings=[vector], n_results=TOP_K, include=["metadatas", "documents", "distances"])
        t1 = time.perf_counter()
        hits = driver.run({"method": "search", "collection": collection, "query": vector, "top_k": TOP_K})
        t2 = time.perf_counter()
        direct.append(t1 - t0)
        ours.append(t2 - t1)
        found.append([int(h["id"]) for h in hits])
    return direct, ours, found


def recall(vectors: np.ndarray, queries: np.ndarray, found) -> float:
    v = vectors.astype(np.float64)
    norms = (v ** 2).sum(axis=1)
    total = 0
    for q, got in zip(queries.astype(np.float64), found):
        dist = norms - 2 * v @ q
        exact = set(np.argpartition(dist, TOP_K)[:TOP_K].tolist())
        total += len(exact & set(got))
    return total / (TOP_K * len(queries))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=100)
    args = p.parse_args(argv)
    vectors, queries = data(args.n, args.dim, args.queries)
    with tempfile.TemporaryDirectory() as folder:
        config = VectorStoreComponent(id="bench", type="vector-store", driver="chroma", storage_dir=folder,
                                      metric="l2")
        driver = ChromaVectorStore("bench", config)
        driver.load()
        client = chromadb.PersistentClient(path=folder, settings=_settings())
        direct_rate = bench_insert_direct(client, vectors, "direct")
        ours_rate = bench_insert_driver(driver, vectors, "ours")
        direct, ours, found = bench_search(driver, client, queries, "ours")
        out = {
            "n": args.n, "dim": args.dim, "queries": args.queries, "chromadb": chromadb.__version__,
            "inserts_per_s": {"ChromaVectorStore.run": round(ours_rate), "collection.add": round(direct_rate),
                              "ratio": round(direct_rate / ours_rate, 3)},
            "search_ms_median": {"ChromaVectorStore.run": round(1000 * statistics.median(ours), 3),
                                 "collection.query": round(1000 * statistics.median(direct), 3)},
            "search_total_ratio": round(sum(ours) / sum(direct), 3),
            "recall_at_10_hnsw_default": round(recall(vectors, queries, found), 4),
            "store_line": driver.store_line(),
        }
        driver.unload()
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
