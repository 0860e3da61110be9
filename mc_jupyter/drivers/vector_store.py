"""``type: vector-store``: a store of vectors with ids and metadata, searched by similarity.

``driver: faiss`` (the default) runs in this kernel, no server: :class:`~.vector_faiss.FaissStore`
(exact search or HNSW, ids/metadata/vectors in SQLite, ``storage_dir`` keeps it). ``driver: chroma``
uses chromadb's own client (``pip install chromadb``), model-compose's working driver.

Each run is one action: ``method`` insert, update, search or delete, with model-compose's keys
(``vector``, ``vector_id``, ``metadata``, ``query``, ``top_k``, ``filter``, ``output_fields``...). An
action made for a job that names a method with no action of its own (the seed's ``action: search``,
``input: {vector, top_k}``) reads the job's whole input (:data:`IMPLICIT_INPUT_KEYS`).

Results, as model-compose gives them: a search of one vector is a list of hits ``{id, score, distance,
metadata}`` best first (``document`` too with chroma); of a list of vectors, a list of such lists.
insert / update / delete give ``{affected_rows, status, ids}``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

from ..config.store_schema import IMPLICIT_INPUT_KEYS, METHOD_KEYS, normalize_filter
from ..errors import InputError, choices_text
from .base import Driver, number


def _is_vector(value: Any) -> bool:
    try:
        import numpy as np
        if isinstance(value, np.ndarray):
            return value.ndim == 1
    except ImportError:   # pragma: no cover - numpy comes with faiss
        pass
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)


def _many(value: Any) -> Optional[list]:
    """One value as a list of one, a list as it is (None stays None)."""
    if value is None:
        return None
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _unwrap(value: Any) -> Any:
    """A text-embedding result ``{embedding: [...]}`` (or a list of them) as its vector(s)."""
    if isinstance(value, dict) and "embedding" in value:
        return value["embedding"]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) and "embedding" in v for v in value):
        return [v["embedding"] for v in value]
    return value


def vectors_of(value: Any, name: str) -> tuple:
    """``(vectors as a list of lists, single)`` from one vector or a list of them (or a 2-D array, or a
    text-embedding's results: ``{embedding: [...]}`` or a list of them)."""
    value = _unwrap(value)
    try:
        import numpy as np
        if isinstance(value, np.ndarray):
            if value.ndim == 1:
                return [value.tolist()], True
            if value.ndim == 2:
                return value.tolist(), False
    except ImportError:   # pragma: no cover
        pass
    if _is_vector(value):
        return [list(value)], True
    if isinstance(value, (list, tuple)) and value and all(_is_vector(v) for v in value):
        return [list(v) for v in value], False
    shown = type(value).__name__ if not isinstance(value, (list, tuple)) else f"a list of {len(value)} items"
    raise InputError(f"`{name}` must be a vector (a list of numbers) or a list of vectors, not {shown}.\n  Give it "
                     f"e.g. `{name}: ${{jobs.embed.output.embedding}}` (an embedding), or a list of them.")


class VectorStoreDriver(Driver):
    """What every vector-store driver shares: reading an action's fields; the subclasses call their store."""

    def load(self) -> None:
        self.device = "cpu"
        self.dtype = "float32"
        self.open()
        self._account()

    def open(self) -> None:
        raise NotImplementedError

    def _account(self) -> None:
        self.memory_bytes = self.memory()

    def memory(self) -> Optional[int]:
        return None

    def info(self) -> Dict[str, Any]:
        out = super().info()
        out["store"] = self.store_line()
        return out

    def store_line(self) -> str:
        raise NotImplementedError

    # -- one run --------------------------------------------------------------------------------
    def run(self, fields: Dict[str, Any]) -> Any:
        fields = self._from_request(dict(fields))
        method = fields["method"]
        batch = fields.get("batch_size")
        batch = None if batch in (None, "") else number(batch, "batch_size", int, minimum=1)
        if method == "search":
            queries, single = vectors_of(fields.get("query"), "query")
            top_k = number(fields.get("top_k") if fields.get("top_k") is not None else 10, "top_k", int, minimum=1)
            conditions = self.filter_of(fields.get("filter"))
            output_fields = fields.get("output_fields")
            if output_fields is not None and not (isinstance(output_fields, list)
                                                  and all(isinstance(f, str) for f in output_fields)):
                raise InputError("`output_fields` must be a list of metadata keys, e.g. `[title, source]`.")
            hits = self.search(queries, top_k, conditions, output_fields)
            return hits[0] if single else hits
        if method == "insert":
            vectors, single = vectors_of(fields.get("vector"), "vector")
            ids = self._ids(fields.get("vector_id"), len(vectors), single)
            metadata = self._per_vector(fields.get("metadata"), len(vectors), single, "metadata")
            documents = self._per_vector(fields.get("document"), len(vectors), single, "document")
            done = self.insert(vectors, ids, metadata, documents, batch, fields)
        elif method == "update":
            if fields.get("vector_id") is None:
                raise InputError("an update needs `vector_id`: the id (or ids) of the vectors to change.")
            ids = _many(fields["vector_id"])
            vectors = None
            if fields.get("vector") is not None:
                vectors, _ = vectors_of(fields["vector"], "vector")
                if len(vectors) != len(ids):
                    raise InputError(f"`vector` has {len(vectors)} vectors but `vector_id` names {len(ids)}: "
                                     f"give one vector per id. Nothing was written.")
            metadata = self._per_vector(fields.get("metadata"), len(ids), len(ids) == 1, "metadata")
            documents = self._per_vector(fields.get("document"), len(ids), len(ids) == 1, "document")
            flag = fields.get("insert_if_not_exist")
            insert_missing = True if flag is None else flag in (True, "true", "True", 1)
            done = self.update(ids, vectors, metadata, documents, insert_missing, fields)
        else:   # delete
            ids = _many(fields.get("vector_id"))
            conditions = self.filter_of(fields.get("filter"))
            if ids is None and conditions is None:
                raise InputError("a delete needs `vector_id` (the ids to delete) or `filter` (which to delete); "
                                 "it was given neither, so nothing was deleted.")
            done = self.delete(ids, conditions, fields)
        self._account()
        return {"affected_rows": len(done), "status": "completed", "ids": done}

    def _from_request(self, fields: Dict[str, Any]) -> Dict[str, Any]:
        """An implicit action's fields from the job's input (the seed's `input: {vector, top_k}`)."""
        if "request" not in fields:
            return fields
        request = fields.pop("request")
        method = fields["method"]
        allowed = IMPLICIT_INPUT_KEYS[method]
        if not isinstance(request, dict):
            raise InputError(f"the job's `input:` for `action: {method}` must be a mapping of "
                             f"{choices_text(allowed)}, not {type(request).__name__}.")
        unknown = [k for k in request if k not in allowed]
        if unknown:
            raise InputError(f"the job's `input:` for `action: {method}` has {choices_text(unknown)}, which a "
                             f"{method} does not read.\n  It reads {choices_text(allowed)}.")
        fields.update(request)
        if method == "search" and "vector" in fields:
            if fields.get("query") is not None:
                raise InputError("the job's input gives both `vector` and `query`: give one (they are the same).")
            fields["query"] = fields.pop("vector")
        return fields

    @staticmethod
    def _ids(value: Any, n: int, single: bool) -> Optional[list]:
        if value is None:
            return None
        ids = [value] if single and not isinstance(value, (list, tuple)) else _many(value)
        if len(ids) != n:
            raise InputError(f"`vector_id` names {len(ids)} ids for {n} vectors: give one id per vector (or "
                             f"none: ids are then generated). Nothing was written.")
        return ids

    @staticmethod
    def _per_vector(value: Any, n: int, single: bool, name: str) -> Optional[list]:
        if value is None:
            return None
        if isinstance(value, dict) or (single and not isinstance(value, list)):
            return [value] * n if not single else [value]
        items = list(value)
        if len(items) != n:
            raise InputError(f"`{name}` has {len(items)} items for {n} vectors: give one per vector (or one "
                             f"mapping for all). Nothing was written.")
        return items

    @staticmethod
    def filter_of(value: Any) -> Optional[List[Dict[str, Any]]]:
        if value in (None, "", [], {}):
            return None
        conditions = normalize_filter(value)
        if not isinstance(conditions, list):
            raise InputError(f"`filter` must be a list of {{field, operator, value}} or a mapping like "
                             f"`{{year: {{gte: 2020}}}}`, not {type(value).__name__}.")
        return conditions

    # -- the store ------------------------------------------------------------------------------
    def search(self, queries, top_k, conditions, output_fields) -> List[List[Dict[str, Any]]]:
        raise NotImplementedError

    def insert(self, vectors, ids, metadata, documents, batch, fields) -> list:
        raise NotImplementedError

    def update(self, ids, vectors, metadata, documents, insert_missing, fields) -> list:
        raise NotImplementedError

    def delete(self, ids, conditions, fields) -> list:
        raise NotImplementedError


def _batches(n: int, batch: Optional[int]) -> Sequence[range]:
    size = batch or n or 1
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


class FaissVectorStore(VectorStoreDriver):
    """``driver: faiss``: a :class:`~.vector_faiss.FaissStore` in this kernel."""

    def __init__(self, component_id: str, config: Any):
        super().__init__(component_id, config)
        self.store = None

    def open(self) -> None:
        from .vector_faiss import FaissStore
        c = self.config
        storage = os.path.expanduser(c.storage_dir) if c.storage_dir else None
        self.store = FaissStore(c.dimension, c.metric, storage, index=c.index, hnsw_m=c.hnsw_m, ef_search=c.ef_search)
        self.store.open()
        self.source_description = f"faiss {c.index} · {c.metric} · {storage or 'in memory'}"

    def unload(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def memory(self) -> Optional[int]:
        return self.store.memory_bytes if self.store is not None else None

    def store_line(self) -> str:
        c = self.config
        n = self.store.count if self.store is not None else 0
        return (f"{n} vector{'s' if n != 1 else ''} · {c.dimension}-d · {c.metric} · "
                f"{c.storage_dir or 'in memory'}")

    def search(self, queries, top_k, conditions, output_fields):
        return self.store.search(queries, top_k=top_k, filter=conditions, output_fields=output_fields)

    def insert(self, vectors, ids, metadata, documents, batch, fields):
        """One call, so one transaction: a bad id in the last batch writes nothing; ``batch_size`` (default
        1000 rows) moves the progress bar, shown when there is more than one batch."""
        from .. import progress
        step = batch or 1000
        if len(vectors) <= step:
            return self.store.insert(vectors, ids=ids, metadata=metadata, documents=documents)
        with progress.bar(f"inserting into {self.component_id}", total=len(vectors),
                          done=f"inserted {len(vectors)} vectors into {self.component_id}") as bar:
            seen = [0]

            def moved(done: int, total: int) -> None:
                while done - seen[0] >= step or (done == total and done > seen[0]):
                    n = min(step, done - seen[0])
                    bar.advance(n)
                    seen[0] += n
            out = self.store.insert(vectors, ids=ids, metadata=metadata, documents=documents, on_progress=moved)
            bar.finish(f"inserted {len(vectors)} vectors into {self.component_id}")
        return out

    def update(self, ids, vectors, metadata, documents, insert_missing, fields):
        return self.store.update(ids, vectors=vectors, metadata=metadata, insert_if_not_exist=insert_missing,
                                 documents=documents)

    def delete(self, ids, conditions, fields):
        return self.store.delete(ids=ids, filter=conditions)


__all__ = ["FaissVectorStore", "VectorStoreDriver", "METHOD_KEYS"]
