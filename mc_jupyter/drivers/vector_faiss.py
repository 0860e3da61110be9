"""The faiss vector store engine behind ``type: vector-store`` / ``driver: faiss`` (no YAML here: the
component's Driver, :mod:`mc_jupyter.drivers.vector_store`, turns an action into these calls).

:class:`FaissStore` keeps vectors, their ids, metadata and (optionally) a document text each:

* **ids** are ``int`` or ``str``. As in model-compose an id's key is ``str(id)`` (so ``1`` and ``"1"``
  are the same id); the value comes back with the type it was inserted with. Inserting without ids
  generates ULIDs (26-character strings, time-ordered), as model-compose does. An id that is already
  stored is an error (use :meth:`FaissStore.update`): nothing of that call is written.
* **metadata**: one dict per vector (a list), or one dict for a single vector; one dict given with many
  vectors is copied to each (model-compose zips it with the first vector only and leaves the others
  empty, which no one means).
* **scores**, best first, as model-compose computes them: ``l2``: ``distance`` is faiss's squared
  Euclidean distance, ``score = 1 / (1 + distance)``; ``ip``: ``score`` is the inner product (no
  ``distance``); ``cosine``: vectors and queries are L2-normalized, ``score`` is the cosine similarity
  (higher is better) and ``distance = 1 - score``. Each hit: ``{"id", "score", "distance"?,
  "metadata", "document"? , "vector"?}`` (``document`` when the row has one, ``vector`` when asked).
* **filters** (search and delete): a list of ``{"field", "operator", "value"}`` with operators
  ``eq neq gt gte lt lte in not-in``, or model-compose's shorthand dict ``{cat: a, year: {gte: 2020}}``;
  conditions are ANDed; a missing field or an incomparable value does not match. The matching ids go
  INTO the faiss search (an ``IDSelectorBatch`` in ``SearchParameters``), so ``top_k`` hits come back
  whenever that many rows match (hnsw: an exact pass over the matching rows tops up a graph search that
  found fewer).
* **index**: ``flat`` is exact (``IndexFlatL2``/``IndexFlatIP``, with our own position -> id map); ``hnsw`` is
  ``IndexHNSWFlat(d, hnsw_m)`` searched with ``ef_search``. HNSW cannot remove vectors: deleted and
  replaced ones are tombstones excluded by a selector, compacted away when they pass a fifth of the index.

**Persistence** (``storage_dir``): ``store.sqlite`` holds dimension, metric, ids, metadata, documents and
the raw float32 vectors; it is the source of truth and every call that writes is one transaction (a
process killed mid-insert leaves the earlier calls whole and nothing of the interrupted one).
``index.cache`` is the faiss index serialized with a stamp of the SQLite state (its write generation),
written atomically (temp file + ``os.replace``) by :meth:`FaissStore.close` / :meth:`FaissStore.save`;
:meth:`FaissStore.open` uses it only when its stamp matches, else rebuilds the index from SQLite.
``.lock`` is held with ``fcntl.flock`` while the store is open: a second store (this kernel or another)
on the same folder is refused with the holder's process id. Without ``storage_dir`` all is in memory.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets as _random
import socket
import sqlite3
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..config.store_schema import normalize_filter as shorthand_filter
from ..errors import InputError, did_you_mean

METRICS = ("l2", "ip", "cosine")
INDEX_KINDS = ("flat", "hnsw")
OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "not-in")
SQLITE_FILE, CACHE_FILE, LOCK_FILE = "store.sqlite", "index.cache", ".lock"
_CACHE_MAGIC = b"MCFAISS1\n"
_CHUNK = 1000  # rows per executemany inside one insert transaction (and per on_progress call)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

Id = Any  # int or str
Row = Tuple[Id, Dict[str, Any], Optional[str]]  # (id as inserted, metadata, document)


def new_ulid() -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32 (what model-compose generates)."""
    value = (int(time.time() * 1000) << 80) | _random.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _faiss():
    import faiss  # a kernel that never composes a vector store never imports faiss

    return faiss


# ---------------------------------------------------------------- filters


def normalize_filter(filter: Any) -> List[Tuple[str, str, Any]]:
    """``filter`` as ``[(field, operator, value), ...]``; a bad shape or operator is an InputError."""
    if filter is None or filter == [] or filter == {}:
        return []
    if isinstance(filter, dict) and set(filter) == {"field", "operator", "value"}:
        filter = [filter]
    filter = shorthand_filter(filter)   # {cat: a} / {year: {gte: 2020}} as conditions
    if not isinstance(filter, (list, tuple)):
        raise InputError(f"`filter`: expected a list of {{field, operator, value}} conditions or a dict like "
                         f"{{category: news, year: {{gte: 2020}}}}, got {type(filter).__name__} {filter!r}")
    conditions = []
    for position, item in enumerate(filter):
        keys = {"field", "operator", "value"}
        if isinstance(item, dict) and not set(item) & keys:
            conditions += normalize_filter(item)   # a shorthand mapping inside the list
            continue
        if isinstance(item, dict) and not {"field", "value"} <= set(item) <= keys:
            raise InputError(f"`filter[{position}]`: a condition has the keys `field`, `operator` (default eq) and "
                             f"`value`; got {sorted(map(str, item))}")
        if isinstance(item, dict):
            item = {"operator": "eq", **item}
        if not isinstance(item, dict) or not isinstance(item.get("field"), str):
            raise InputError(f"`filter[{position}]`: expected {{field: NAME, operator: OP, value: V}}, got {item!r}")
        operator = str(item["operator"]).lower().replace("_", "-")
        if operator not in OPERATORS:
            raise InputError(f"`filter[{position}].operator`: unknown operator `{item['operator']}`"
                             f"{did_you_mean(item['operator'], OPERATORS)}; use one of {', '.join(OPERATORS)}")
        conditions.append((item["field"], operator, item["value"]))
    return conditions


def _matches_condition(metadata: Dict[str, Any], field: str, operator: str, value: Any) -> bool:
    present = field in metadata
    have = metadata.get(field)
    if operator == "eq":
        return present and have == value
    if operator == "neq":
        return not (present and have == value)
    if operator in ("in", "not-in"):
        choices = value if isinstance(value, (list, tuple, set)) else [value]
        return (present and have in choices) == (operator == "in")
    if not present or have is None:
        return False
    try:
        return {"gt": have > value, "gte": have >= value, "lt": have < value, "lte": have <= value}[operator]
    except TypeError:  # "abc" > 3: no match, as a database would not match it
        return False


class _Missing:
    """A field a row's metadata lacks (in a cached column); equal to nothing but itself."""

    def __eq__(self, other: Any) -> bool:
        return other is self

    def __ne__(self, other: Any) -> bool:
        return other is not self

    __hash__ = object.__hash__


_MISSING = _Missing()
_SCALARS = (str, int, float, bool, type(None))
_COMPARE = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}


def _column_mask(values: np.ndarray, present: np.ndarray, field: str, operator: str, value: Any) -> np.ndarray:
    """``_matches_condition`` over a column (object array; ``present``: the rows that have the field)."""
    try:
        if operator in ("eq", "neq") and isinstance(value, _SCALARS):
            equal = present & (values == value).astype(bool)
            return equal if operator == "eq" else ~equal
        if operator in _COMPARE and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            out = np.zeros(len(values), bool)
            out[present] = _COMPARE[operator](values[present], value).astype(bool)
            return out
        if operator in ("in", "not-in"):
            choices = set(value if isinstance(value, (list, tuple, set)) else [value])
            inside = present & np.fromiter((v in choices for v in values), bool, len(values))
            return inside if operator == "in" else ~inside
    except TypeError:  # unhashable or incomparable values: the row-by-row rules below
        pass
    return np.fromiter((_matches_condition({} if v is _MISSING else {field: v}, field, operator, value)
                        for v in values), bool, len(values))


def matches(metadata: Dict[str, Any], conditions: Sequence[Tuple[str, str, Any]]) -> bool:
    """Whether ``metadata`` passes every (ANDed) condition of :func:`normalize_filter`."""
    return all(_matches_condition(metadata, *condition) for condition in conditions)


# ---------------------------------------------------------------- the store


class FaissStore:
    """A faiss index with ids, metadata and documents, persisted in SQLite when ``storage_dir`` is set.

    Thread-safe (one lock per store). Call :meth:`open` before use and :meth:`close` after (or use
    ``with FaissStore(...) as store:``).
    """

    def __init__(self, dimension: int, metric: str = "l2", storage_dir: Optional[str] = None,
                 index: str = "flat", hnsw_m: int = 32, ef_search: int = 1024):
        if not isinstance(dimension, int) or isinstance(dimension, bool) or dimension < 1:
            raise InputError(f"`dimension`: expected a positive integer, got {dimension!r}")
        if metric not in METRICS:
            raise InputError(f"`metric`: unknown metric `{metric}`{did_you_mean(metric, METRICS)}; "
                             f"use one of {', '.join(METRICS)}")
        if index not in INDEX_KINDS:
            raise InputError(f"`index`: unknown index `{index}`{did_you_mean(index, INDEX_KINDS)}; "
                             f"use one of {', '.join(INDEX_KINDS)}")
        for name, value in (("hnsw_m", hnsw_m), ("ef_search", ef_search)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"`{name}`: expected a positive integer, got {value!r}")
        self.dimension, self.metric, self.index_kind = dimension, metric, index
        self.hnsw_m, self._ef_search = hnsw_m, ef_search
        self.storage_dir = os.path.abspath(os.path.expanduser(storage_dir)) if storage_dir else None
        self._lock = threading.RLock()
        self._db: Optional[sqlite3.Connection] = None
        self._lock_fd: Optional[int] = None
        self._index = None
        self._opened = False

    # ------------------------------------------------------------ lifecycle

    def open(self) -> "FaissStore":
        """Load ``storage_dir`` (or start empty) and lock it; opening an open store does nothing."""
        with self._lock:
            if self._opened:
                return self
            self._rows: Dict[int, Row] = {}
            self._key_to_int: Dict[str, int] = {}
            self._tombstones: set = set()
            self._norms: Dict[int, float] = {}
            self._ids_at = np.zeros(0, np.int64)
            self._columns: Optional[Dict[str, Any]] = None
            self._next_int, self._generation, self._metadata_bytes = 1, 0, 0
            if self.storage_dir:
                self._take_folder_lock()
                try:
                    self._load_folder()
                except BaseException:
                    self._release()
                    raise
            else:
                self._index = self._new_index()
            self._opened = True
            return self

    def close(self) -> None:
        """Write the index cache, release the folder lock and free the index; idempotent."""
        with self._lock:
            if not self._opened:
                return
            try:
                if self.storage_dir:
                    self.save()
            finally:
                self._release()
                self._opened, self._index = False, None

    def __enter__(self) -> "FaissStore":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:
            pass

    def save(self) -> None:
        """Write ``index.cache`` (temp file + ``os.replace``) stamped with the SQLite write generation."""
        with self._lock:
            self._check_open()
            if not self.storage_dir:
                return
            header = json.dumps({**self._identity(), "generation": self._generation, "rows": len(self._rows),
                                 "next_int": self._next_int, "tombstones": sorted(self._tombstones)}).encode()
            data = _faiss().serialize_index(self._index)
            ids = self._ids_at.astype("<i8").tobytes()
            path = os.path.join(self.storage_dir, CACHE_FILE)
            temporary = f"{path}.{os.getpid()}.tmp"
            with open(temporary, "wb") as handle:
                handle.write(_CACHE_MAGIC + header + b"\n" + len(ids).to_bytes(8, "little") + ids)
                handle.write(memoryview(data))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)

    @property
    def ef_search(self) -> int:
        """hnsw: candidates kept while walking the graph (higher: better recall, slower); settable."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"`ef_search`: expected a positive integer, got {value!r}")
        with self._lock:
            self._ef_search = value
            if self._opened and self.index_kind == "hnsw":
                self._index.hnsw.efSearch = value

    # ------------------------------------------------------------ writes

    def insert(self, vectors: Any, ids: Any = None, metadata: Any = None, documents: Any = None,
               on_progress: Optional[Callable[[int, int], None]] = None) -> List[Id]:
        """Add vectors (one: d numbers; many: n x d, list or numpy); returns their ids in order.

        ``ids``: one or a list of n (generated ULIDs when None); a stored or repeated id is an error.
        ``metadata``: a dict (copied to each) or a list of n dicts; ``documents``: a str or n str/None.
        ``on_progress(done, total)`` is called as rows are written. All or nothing: a bad value, or a
        crash before the commit, writes none of this call.
        """
        with self._lock:
            self._check_open()
            matrix = self._matrix(vectors, "vector")
            count = len(matrix)
            ids = [new_ulid() for _ in range(count)] if ids is None else self._ids(ids, count, "vector_id")
            keys = [str(i) for i in ids]
            self._refuse_duplicates(keys)
            metadatas = self._metadatas(metadata, count)
            docs = self._documents(documents, count)
            int_ids = list(range(self._next_int, self._next_int + count))
            jsons = [json.dumps(m) for m in metadatas]
            if self._db is not None:
                self._write(lambda db: self._insert_rows(db, int_ids, ids, keys, matrix, jsons, docs, on_progress),
                            next_int=self._next_int + count)
            self._next_int += count
            for start in range(0, count, _CHUNK):
                self._add_to_index(matrix[start:start + _CHUNK], int_ids[start:start + _CHUNK])
                if self._db is None and on_progress is not None and start + _CHUNK < count:
                    on_progress(start + _CHUNK, count)
            for int_id, value, key, meta, doc, text in zip(int_ids, ids, keys, metadatas, docs, jsons):
                self._rows[int_id] = (value, meta, doc)
                self._key_to_int[key] = int_id
                self._metadata_bytes += len(text) + len(key) + len(doc or "")
            self._columns = None
            if on_progress is not None:
                on_progress(count, count)
            return list(ids)

    def update(self, ids: Any, vectors: Any = None, metadata: Any = None,
               insert_if_not_exist: bool = True, documents: Any = None) -> List[Id]:
        """Replace the vector, metadata and/or document of stored ids (metadata is replaced whole, as in
        model-compose; what is not given is kept).

        An unknown id is inserted when ``insert_if_not_exist`` (it then needs a vector), else an error
        naming it; nothing is written on any error. Returns the ids in order.
        """
        with self._lock:
            self._check_open()
            if isinstance(ids, (list, tuple)) and len(ids) == 0:
                return []
            single = not isinstance(ids, (list, tuple, np.ndarray))
            ids = self._ids(ids, None, "vector_id")
            count = len(ids)
            matrix = None if vectors is None else self._matrix([vectors] if single else vectors, "vector")
            if matrix is not None and len(matrix) != count:
                raise InputError(f"`vector`: {len(matrix)} vectors for {count} ids in `vector_id`; give one each")
            if metadata is None and matrix is None and documents is None:
                raise InputError("update needs `vector`, `metadata` or `documents` for the ids in `vector_id`")
            metadatas = None if metadata is None else self._metadatas(metadata, count)
            docs = None if documents is None else self._documents(documents, count)
            keys = [str(i) for i in ids]
            if len(set(keys)) != count:
                raise InputError(f"`vector_id`: repeated ids {sorted({k for k in keys if keys.count(k) > 1})}")
            unknown = [i for i, k in zip(ids, keys) if k not in self._key_to_int]
            if unknown and not insert_if_not_exist:
                raise InputError(f"`vector_id`: {_few(unknown)} not in the store (insert_if_not_exist is false); "
                                 "insert them first, or set insert_if_not_exist: true")
            if unknown and matrix is None:
                raise InputError(f"`vector`: ids {_few(unknown)} are not in the store and would be inserted, "
                                 "which needs their vectors; give `vector` or set insert_if_not_exist: false")
            plan = []  # (key, value, old int id or None, new int id or None, metadata, metadata json, document)
            next_int = self._next_int
            for position, (value, key) in enumerate(zip(ids, keys)):
                old = self._key_to_int.get(key)
                new = None
                if matrix is not None:
                    new, next_int = next_int, next_int + 1
                meta = metadatas[position] if metadatas is not None else self._rows[old][1] if old is not None else {}
                doc = docs[position] if docs is not None else self._rows[old][2] if old is not None else None
                plan.append((key, value if old is None else self._rows[old][0], old, new, meta, json.dumps(meta), doc))
            if self._db is not None:
                self._write(lambda db: self._update_rows(db, plan, matrix), next_int=next_int)
            self._next_int = next_int
            self._remove_from_index([step[2] for step in plan if step[2] is not None and step[3] is not None])
            if matrix is not None:
                self._add_to_index(matrix, [step[3] for step in plan])
            for key, value, old, new, meta, text, document in plan:
                int_id = new if new is not None else old
                if old is not None:
                    _, old_meta, old_document = self._rows.pop(old)
                    self._metadata_bytes -= len(json.dumps(old_meta)) + len(key) + len(old_document or "")
                self._rows[int_id] = (value, meta, document)
                self._key_to_int[key] = int_id
                self._metadata_bytes += len(text) + len(key) + len(document or "")
            self._columns = None
            return [step[1] for step in plan]

    def delete(self, ids: Any = None, filter: Any = None) -> List[Id]:
        """Delete by ids, by ``filter``, or both (the ids that match it); returns the deleted ids.

        An unknown id is an error naming it and nothing is deleted.
        """
        with self._lock:
            self._check_open()
            conditions = normalize_filter(filter)
            if ids is None and not conditions:
                raise InputError("delete needs `vector_id` or `filter`; to empty the store, delete its ids "
                                 "(or use a filter that matches everything)")
            if ids is not None:
                ids = self._ids(ids, None, "vector_id")
                unknown = [i for i in ids if str(i) not in self._key_to_int]
                if unknown:
                    raise InputError(f"`vector_id`: {_few(unknown)} not in the store; nothing was deleted")
                targets = list(dict.fromkeys(self._key_to_int[str(i)] for i in ids))
                targets = [t for t in targets if matches(self._rows[t][1], conditions)]
            else:
                targets = self._matching(conditions).tolist()
            if not targets:
                return []
            if self._db is not None:
                self._write(lambda db: db.executemany("DELETE FROM vectors WHERE int_id = ?",
                                                      [(t,) for t in targets]))
            self._remove_from_index(targets)
            deleted = []
            for t in targets:
                value, meta, doc = self._rows.pop(t)
                del self._key_to_int[str(value)]
                self._metadata_bytes -= len(json.dumps(meta)) + len(str(value)) + len(doc or "")
                deleted.append(value)
            self._columns = None
            return deleted

    # ------------------------------------------------------------ reads

    def search(self, queries: Any, top_k: int = 10, filter: Any = None,
               output_fields: Optional[Sequence[str]] = None, include_vector: bool = False) -> List[List[Dict[str, Any]]]:
        """The ``top_k`` nearest rows for each query (one d-vector or n x d), best first: a list per query.

        ``filter`` limits the candidates inside the faiss search; ``output_fields`` keeps only those
        metadata keys in each hit; ``include_vector`` adds each hit's stored vector.
        """
        with self._lock:
            self._check_open()
            matrix = self._matrix(queries, "query")
            if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
                raise InputError(f"`top_k`: expected a positive integer, got {top_k!r}")
            if output_fields is not None and (isinstance(output_fields, str) or
                                              not all(isinstance(f, str) for f in output_fields)):
                raise InputError(f"`output_fields`: expected a list of metadata keys, got {output_fields!r}")
            conditions = normalize_filter(filter)
            if conditions:
                allowed = self._matching(conditions)
            else:
                allowed = None
            live = len(self._rows) if allowed is None else len(allowed)
            k = min(int(top_k), live)
            if k == 0:
                return [[] for _ in matrix]
            scores, found = self._search_index(matrix, k, allowed)
            return [[self._hit(int(i), float(s), output_fields, include_vector) for s, i in zip(srow, irow) if i >= 0]
                    for srow, irow in zip(scores, found)]

    def get(self, ids: Any) -> List[Optional[Dict[str, Any]]]:
        """The stored rows ``{"id", "metadata", "document"?, "vector"}`` of ``ids`` (None where unknown)."""
        with self._lock:
            self._check_open()
            out = []
            for value in self._ids(ids, None, "vector_id"):
                int_id = self._key_to_int.get(str(value))
                out.append(None if int_id is None else self._hit(int_id, None, None, True))
            return out

    @property
    def count(self) -> int:
        """How many vectors the store holds."""
        return len(self._rows) if self._opened else 0

    @property
    def memory_bytes(self) -> int:
        """Approximate bytes held: index vectors (+ hnsw links, id map) plus metadata/id/document text."""
        if not self._opened:
            return 0
        total = int(self._index.ntotal)
        per_vector = 4 * self.dimension + 16 + (self.hnsw_m * 2 * 4 + 8 if self.index_kind == "hnsw" else 0)
        return total * per_vector + self._metadata_bytes + 120 * len(self._rows)

    def describe(self) -> Dict[str, Any]:
        """A summary row: driver, metric, index kind, dimension, vectors, storage_dir (or "memory"), bytes."""
        info = {"driver": "faiss", "metric": self.metric, "index": self.index_kind, "dimension": self.dimension,
                "vectors": self.count, "storage_dir": self.storage_dir or "memory",
                "memory_bytes": self.memory_bytes}
        if self.index_kind == "hnsw":
            info.update(hnsw_m=self.hnsw_m, ef_search=self.ef_search)
        return info

    def __repr__(self) -> str:
        return (f"FaissStore({self.index_kind}, {self.metric}, d={self.dimension}, vectors={self.count}, "
                f"{self.storage_dir or 'memory'})")

    def _matching(self, conditions: Sequence[Tuple[str, str, Any]]) -> np.ndarray:
        """The row ids whose metadata passes every condition (as :func:`matches` decides), sorted.

        Evaluated a column at a time over per-field value arrays cached until the next write: numpy
        runs the comparisons, and a column whose values do not compare (None, mixed types) falls back
        to :func:`matches` one row at a time.
        """
        if self._columns is None:
            self._columns = {"": np.fromiter(self._rows, np.int64, len(self._rows))}
        ids = self._columns[""]
        mask = np.ones(len(ids), bool)
        for field, operator, value in conditions:
            if field not in self._columns:
                values = np.empty(len(ids), object)
                values[:] = [self._rows[i][1].get(field, _MISSING) for i in ids.tolist()]
                self._columns[field] = (values, values != _MISSING)
            values, present = self._columns[field]
            mask &= _column_mask(values, present, field, operator, value)
        return np.sort(ids[mask])

    # ------------------------------------------------------------ faiss

    def _new_index(self):
        """A bare faiss index: rows are positions 0..ntotal-1 and ``self._ids_at[position]`` is the row id.
        (Not an ``IndexIDMap``: its label translation is an OpenMP loop, and a parallel region on a busy
        2-core machine costs milliseconds per single-vector search.)"""
        faiss = _faiss()
        flat_metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if self.index_kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, flat_metric)
            index.hnsw.efSearch = self.ef_search
            return index
        return faiss.IndexFlatL2(self.dimension) if self.metric == "l2" else faiss.IndexFlatIP(self.dimension)

    def _add_to_index(self, matrix: np.ndarray, int_ids: Sequence[int]) -> None:
        """Append rows; new row ids are always above the stored ones, so ``_ids_at`` stays sorted."""
        if len(matrix):
            if self.metric == "cosine":
                norms = np.linalg.norm(matrix, axis=1, keepdims=True)
                matrix = matrix / norms
                if self._db is None:  # the index keeps the direction only: keep the length for get()
                    self._norms.update(zip(int_ids, norms[:, 0].tolist()))
            self._index.add(np.ascontiguousarray(matrix, dtype=np.float32))
            self._ids_at = np.concatenate([self._ids_at, np.asarray(int_ids, np.int64)])

    def _positions(self, int_ids: Any) -> np.ndarray:
        return np.searchsorted(self._ids_at, np.asarray(int_ids, np.int64)).astype(np.int64)

    def _remove_from_index(self, int_ids: Sequence[int]) -> None:
        if not int_ids:
            return
        if self.index_kind == "flat":  # IndexFlat compacts in order: drop the same positions from the map
            positions = self._positions(int_ids)
            self._index.remove_ids(_faiss().IDSelectorBatch(positions))
            self._ids_at = np.delete(self._ids_at, positions)
            return
        self._tombstones.update(int_ids)  # HNSW cannot remove: hide, and compact when they pile up
        if len(self._tombstones) > max(64, self._index.ntotal // 5):
            self._compact()

    def _compact(self) -> None:
        """Rebuild the hnsw index from its own live vectors, dropping the tombstones."""
        keep = ~np.isin(self._ids_at, np.fromiter(self._tombstones, np.int64))
        vectors = self._index.reconstruct_n(0, self._index.ntotal)[keep]
        self._index, self._tombstones = self._new_index(), set()
        self._index.add(vectors)
        self._ids_at = self._ids_at[keep]

    def _search_index(self, matrix: np.ndarray, k: int, allowed: Optional[np.ndarray]):
        """(raw scores, row ids with -1 for none), k per query, best first."""
        faiss = _faiss()
        if self.metric == "cosine":
            matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        hnsw = self.index_kind == "hnsw"
        if hnsw and allowed is not None and len(allowed) <= 4096:
            # few rows match: rank them exactly (a graph walk restricted to them can miss true neighbours)
            vectors = self._index.reconstruct_batch(self._positions(allowed))
            metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
            distances, local = faiss.knn(matrix, vectors, min(k, len(allowed)), metric=metric)
            if distances.shape[1] < k:
                pad = k - distances.shape[1]
                distances = np.pad(distances, ((0, 0), (0, pad)), constant_values=np.nan)
                local = np.pad(local, ((0, 0), (0, pad)), constant_values=-1)
            return distances, np.where(local >= 0, allowed[np.maximum(local, 0)], -1)
        if allowed is not None:
            selector = faiss.IDSelectorBatch(self._positions(allowed))
        elif self._tombstones:
            hidden = faiss.IDSelectorBatch(self._positions(np.fromiter(self._tombstones, np.int64)))
            selector = faiss.IDSelectorNot(hidden)
        else:
            selector = None
        if selector is None and not (hnsw and k > self.ef_search):
            distances, found = self._index.search(matrix, k)
        elif hnsw:
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search, k))
            distances, found = self._index.search(matrix, k, params=params)
        else:
            distances, found = self._index.search(matrix, k, params=faiss.SearchParameters(sel=selector))
        found = np.where(found >= 0, self._ids_at[np.maximum(found, 0)], -1)
        if hnsw:
            short = np.nonzero((found >= 0).sum(axis=1) < k)[0]
            if len(short):  # a filtered graph walk can miss matches: rank those rows exactly
                candidates = allowed if allowed is not None else np.fromiter(self._rows, np.int64)
                exact = faiss.IndexFlatL2(self.dimension) if self.metric == "l2" else faiss.IndexFlatIP(self.dimension)
                exact.add(self._index.reconstruct_batch(self._positions(candidates)))
                distances[short], local = exact.search(matrix[short], k)
                found[short] = np.where(local >= 0, candidates[np.maximum(local, 0)], -1)
        return distances, found

    def _hit(self, int_id: int, raw: Optional[float], output_fields: Optional[Sequence[str]],
             include_vector: bool) -> Dict[str, Any]:
        value, meta, document = self._rows[int_id]
        hit: Dict[str, Any] = {"id": value}
        if raw is not None:
            if self.metric == "l2":
                hit.update(score=1.0 / (1.0 + raw), distance=raw)
            elif self.metric == "cosine":
                hit.update(score=raw, distance=1.0 - raw)
            else:
                hit["score"] = raw
        hit["metadata"] = dict(meta) if output_fields is None else {f: meta[f] for f in output_fields if f in meta}
        if document is not None:
            hit["document"] = document
        if include_vector:
            hit["vector"] = self._stored_vector(int_id).tolist()
        return hit

    def _stored_vector(self, int_id: int) -> np.ndarray:
        if self._db is not None:  # the raw vector (the index holds a normalized one for cosine)
            blob = self._db.execute("SELECT vector FROM vectors WHERE int_id = ?", (int_id,)).fetchone()[0]
            return np.frombuffer(blob, np.float32)
        position = int(self._positions([int_id])[0])
        return self._index.reconstruct(position) * np.float32(self._norms.get(int_id, 1.0))

    # ------------------------------------------------------------ SQLite

    def _identity(self) -> Dict[str, Any]:
        return {"dimension": self.dimension, "metric": self.metric, "index": self.index_kind, "hnsw_m": self.hnsw_m}

    def _take_folder_lock(self) -> None:
        os.makedirs(self.storage_dir, exist_ok=True)
        path = os.path.join(self.storage_dir, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            raise InputError(f"`storage_dir` {self.storage_dir} is in use: its lock is held by {_holder_text(holder)}. "
                             "Close that store (unload its component, or shut down that kernel), or give this "
                             "store another storage_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "program": os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "python"),
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        self._lock_fd = fd

    def _release(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _load_folder(self) -> None:
        db = sqlite3.connect(os.path.join(self.storage_dir, SQLITE_FILE), isolation_level=None,
                             check_same_thread=False)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS vectors (int_id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, "
                   "id_is_int INTEGER NOT NULL, vector BLOB NOT NULL, metadata TEXT NOT NULL, document TEXT)")
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if not meta:
            self._write(lambda d: d.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("dimension", str(self.dimension)), ("metric", self.metric)]))
            meta = dict(db.execute("SELECT key, value FROM meta"))
        for name in ("dimension", "metric"):
            if meta[name] != str(getattr(self, name)):
                raise InputError(f"`{name}`: {self.storage_dir} holds a store of {name} {meta[name]}, not "
                                 f"{getattr(self, name)}; set {name}: {meta[name]} or use another storage_dir")
        self._generation, self._next_int = int(meta["generation"]), int(meta["next_int"])
        rows = db.execute("SELECT int_id, key, id_is_int, metadata, document FROM vectors").fetchall()
        for int_id, key, is_int, text, document in rows:
            self._rows[int_id] = (int(key) if is_int else key, json.loads(text), document)
            self._key_to_int[key] = int_id
            self._metadata_bytes += len(text) + len(key) + len(document or "")
        if not self._load_cache():
            self._index = self._new_index()
            for batch in _chunks(db.execute("SELECT int_id, vector FROM vectors ORDER BY int_id"), 10_000):
                matrix = np.vstack([np.frombuffer(blob, np.float32) for _, blob in batch])
                self._add_to_index(matrix, [int_id for int_id, _ in batch])

    def _load_cache(self) -> bool:
        """Use ``index.cache`` when its stamp matches the SQLite state; False when missing or stale."""
        try:
            with open(os.path.join(self.storage_dir, CACHE_FILE), "rb") as handle:
                if handle.readline() != _CACHE_MAGIC:
                    return False
                header = json.loads(handle.readline())
                if header != {**self._identity(), "generation": self._generation, "rows": len(self._rows),
                              "next_int": self._next_int, "tombstones": header.get("tombstones")}:
                    return False
                ids = np.frombuffer(handle.read(int.from_bytes(handle.read(8), "little")), "<i8").astype(np.int64)
                index = _faiss().deserialize_index(np.frombuffer(handle.read(), np.uint8))
        except (OSError, ValueError, RuntimeError):
            return False
        tombstones = set(header["tombstones"])
        if index.ntotal != len(ids) or set(ids.tolist()) != set(self._rows) | tombstones:
            return False
        if self.index_kind == "hnsw":
            index.hnsw.efSearch = self.ef_search
        self._index, self._ids_at, self._tombstones = index, ids, tombstones
        return True

    def _write(self, body: Callable[[sqlite3.Connection], Any], next_int: Optional[int] = None) -> None:
        """One transaction: ``body`` plus the bumped write generation (the cache's stamp)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            body(db)
            stamps = [("generation", str(self._generation + 1))]
            if next_int is not None or self._generation == 0:
                stamps.append(("next_int", str(next_int if next_int is not None else self._next_int)))
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", stamps)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._generation += 1

    def _insert_rows(self, db, int_ids, ids, keys, matrix, jsons, docs, on_progress) -> None:
        total = len(int_ids)
        for start in range(0, total, _CHUNK):
            stop = min(start + _CHUNK, total)
            db.executemany("INSERT INTO vectors VALUES (?, ?, ?, ?, ?, ?)", [
                (int_ids[i], keys[i], isinstance(ids[i], int), matrix[i].tobytes(), jsons[i], docs[i])
                for i in range(start, stop)])
            if on_progress is not None and stop < total:
                on_progress(stop, total)

    def _update_rows(self, db, plan, matrix) -> None:
        for position, (key, value, old, new, meta, text, document) in enumerate(plan):
            if old is None:
                db.execute("INSERT INTO vectors VALUES (?, ?, ?, ?, ?, ?)",
                           (new, key, isinstance(value, int), matrix[position].tobytes(), text, document))
            elif new is None:
                db.execute("UPDATE vectors SET metadata = ?, document = ? WHERE int_id = ?", (text, document, old))
            else:
                db.execute("UPDATE vectors SET int_id = ?, vector = ?, metadata = ?, document = ? WHERE int_id = ?",
                           (new, matrix[position].tobytes(), text, document, old))

    # ------------------------------------------------------------ validation

    def _check_open(self) -> None:
        if not self._opened:
            raise InputError(f"the faiss store ({self.storage_dir or 'memory'}) is not open: call open() first")

    def _matrix(self, vectors: Any, field: str) -> np.ndarray:
        try:
            matrix = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError):
            lengths = sorted({len(v) for v in vectors if hasattr(v, "__len__")}) if isinstance(vectors, list) else []
            raise InputError(f"`{field}`: expected {self.dimension} numbers (or a list of such vectors), got "
                             + (f"rows of lengths {lengths}" if len(lengths) > 1 else f"{_short(vectors)}")) from None
        if matrix.ndim == 1:
            matrix = matrix[None, :] if matrix.size else matrix.reshape(0, self.dimension)
        if matrix.ndim != 2:
            raise InputError(f"`{field}`: expected one vector or a list of vectors, got an array of shape {matrix.shape}")
        if matrix.shape[1] != self.dimension:
            raise InputError(f"`{field}`: expected dimension {self.dimension}, got {matrix.shape[1]} "
                             "(the store's `dimension` must match the embedding model's output)")
        bad = np.nonzero(~np.isfinite(matrix).all(axis=1))[0]
        if len(bad):
            raise InputError(f"`{field}`: row {int(bad[0])} holds NaN or infinity")
        if self.metric == "cosine":
            zero = np.nonzero(~np.any(matrix != 0, axis=1))[0]
            if len(zero):
                raise InputError(f"`{field}`: row {int(zero[0])} is all zeros, which has no cosine direction")
        return matrix

    @staticmethod
    def _ids(ids: Any, count: Optional[int], field: str) -> List[Id]:
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        ids = list(ids) if isinstance(ids, (list, tuple)) else [ids]
        ids = [int(v) if isinstance(v, np.integer) else v for v in ids]
        for value in ids:
            if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
                raise InputError(f"`{field}`: ids are integers or non-empty strings, got {value!r}")
        if count is not None and len(ids) != count:
            raise InputError(f"`{field}`: {len(ids)} ids for {count} vectors; give one id per vector (or none)")
        return ids

    def _refuse_duplicates(self, keys: List[str]) -> None:
        if len(set(keys)) != len(keys):
            seen, repeated = set(), []
            for key in keys:
                if key in seen:
                    repeated.append(key)
                seen.add(key)
            raise InputError(f"`vector_id`: repeated in this call: {_few(repeated)}; nothing was inserted")
        stored = [k for k in keys if k in self._key_to_int]
        if stored:
            raise InputError(f"`vector_id`: {_few(stored)} already in the store; nothing was inserted. "
                             "Use the update method to replace them, or delete them first")

    @staticmethod
    def _metadatas(metadata: Any, count: int) -> List[Dict[str, Any]]:
        if metadata is None:
            items = [{} for _ in range(count)]
        elif isinstance(metadata, dict):
            items = [dict(metadata) for _ in range(count)]
        elif isinstance(metadata, (list, tuple)):
            if len(metadata) != count:
                raise InputError(f"`metadata`: {len(metadata)} entries for {count} vectors; give one dict per "
                                 "vector, or one dict for all")
            items = [{} if m is None else m for m in metadata]
        else:
            raise InputError(f"`metadata`: expected a dict or a list of dicts, got {type(metadata).__name__}")
        for position, item in enumerate(items):
            if not isinstance(item, dict) or not all(isinstance(k, str) for k in item):
                raise InputError(f"`metadata[{position}]`: expected a dict with string keys, got {_short(item)}")
            try:
                json.dumps(item, allow_nan=False)
            except (TypeError, ValueError) as error:
                raise InputError(f"`metadata[{position}]`: values must be JSON (str, number, bool, null, list, "
                                 f"dict): {error}") from None
        return items

    @staticmethod
    def _documents(documents: Any, count: int) -> List[Optional[str]]:
        if documents is None:
            return [None] * count
        items = [documents] if isinstance(documents, str) else list(documents)
        if len(items) != count:
            raise InputError(f"`documents`: {len(items)} texts for {count} vectors; give one each")
        if not all(d is None or isinstance(d, str) for d in items):
            raise InputError("`documents`: expected strings (or null)")
        return items


def _chunks(rows: Iterable[Any], size: int) -> Iterable[List[Any]]:
    batch: List[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _few(values: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    more = len(values) - limit
    return f"{shown} (and {more} more)" if more > 0 else shown


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _holder_text(holder: str) -> str:
    try:
        info = json.loads(holder)
    except ValueError:
        return "another store (process unknown)"
    same = " (this same process: another FaissStore on that folder is still open)" if info.get("pid") == os.getpid() else ""
    return f"process {info.get('pid')} on {info.get('host')} (`{info.get('program')}`, since {info.get('since')}){same}"

