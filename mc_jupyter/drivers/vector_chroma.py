"""``driver: chroma``: chromadb's own client, model-compose's working vector-store driver.

``mode: local`` keeps the collections in ``storage_dir`` (default ``./chroma``); ``mode: server`` talks to a
Chroma server at host:port. Each action names its ``collection`` (made on first use, with the
component's ``metric`` as its distance). Results have the shape of :mod:`.vector_store`'s.
"""

from __future__ import annotations

import os
from typing import Any, Dict

from ..errors import InputError, choices_text
from .vector_store import VectorStoreDriver, _batches


class ChromaVectorStore(VectorStoreDriver):
    """``driver: chroma``: chromadb's own client (``mode: local`` keeps it in ``storage_dir``, default
    ``./chroma``; ``mode: server`` talks to a Chroma server at host:port). Each action names its
    ``collection`` (made on first use, with the component's ``metric`` as its distance)."""

    def __init__(self, component_id: str, config: Any):
        super().__init__(component_id, config)
        self.client = None

    def open(self) -> None:
        import chromadb
        c = self.config
        if c.mode == "server":
            self.client = chromadb.HttpClient(host=c.host or "localhost", port=c.port or 8000,
                                              ssl=(c.protocol == "https"), tenant=c.tenant or chromadb.DEFAULT_TENANT,
                                              database=c.database or chromadb.DEFAULT_DATABASE)
            where = f"{c.host or 'localhost'}:{c.port or 8000}"
        else:
            path = os.path.expanduser(c.storage_dir or "./chroma")
            self.client = chromadb.PersistentClient(path=path)
            where = path
        self.source_description = f"chroma · {where}"
        self._where = where

    def unload(self) -> None:
        self.client = None

    def store_line(self) -> str:
        if self.client is None:
            return "chroma"
        names = [getattr(col, "name", col) for col in self.client.list_collections()]
        total = sum(self.client.get_collection(n).count() for n in names)
        return f"{total} vectors · {len(names)} collection{'s' if len(names) != 1 else ''} · {self._where}"

    def _collection(self, fields):
        name = fields.get("collection")
        if not name:
            raise InputError("a chroma action needs `collection:`, the collection it works on.")
        space = {"l2": "l2", "ip": "ip", "cosine": "cosine"}[self.config.metric]
        return self.client.get_or_create_collection(str(name), metadata={"hnsw:space": space})

    @staticmethod
    def _where_of(conditions):
        if not conditions:
            return None
        ops = {"eq": "$eq", "neq": "$ne", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte", "in": "$in",
               "not-in": "$nin"}
        parts = [{c["field"]: {ops[c.get("operator", "eq")]: c["value"]}} for c in conditions]
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def search(self, queries, top_k, conditions, output_fields):
        col = self.chroma_fields_collection
        found = col.query(query_embeddings=queries, n_results=top_k, where=self._where_of(conditions),
                          include=["metadatas", "documents", "distances"])
        out = []
        for q in range(len(queries)):
            hits = []
            for i, id_ in enumerate(found["ids"][q]):
                dist = float(found["distances"][q][i])
                meta = dict(found["metadatas"][q][i] or {})
                if output_fields is not None:
                    meta = {k: v for k, v in meta.items() if k in output_fields}
                score = 1.0 / (1.0 + dist) if self.config.metric == "l2" else 1.0 - dist
                hit = {"id": id_, "score": score, "distance": dist, "metadata": meta}
                if found["documents"][q][i] is not None:
                    hit["document"] = found["documents"][q][i]
                hits.append(hit)
            out.append(hits)
        return out

    def run(self, fields: Dict[str, Any]) -> Any:
        self.chroma_fields_collection = self._collection(fields)
        return super().run(fields)

    def insert(self, vectors, ids, metadata, documents, batch, fields):
        import uuid
        col = self.chroma_fields_collection
        ids = [str(i) for i in ids] if ids is not None else [uuid.uuid4().hex for _ in vectors]
        existing = set(col.get(ids=ids)["ids"])
        if existing:
            raise InputError(f"`vector_id` {choices_text(sorted(existing))} already in collection "
                             f"`{col.name}`: use an update. Nothing was written.")
        for part in _batches(len(vectors), batch):
            col.add(ids=[ids[i] for i in part], embeddings=[vectors[i] for i in part],
                    metadatas=None if metadata is None else [metadata[i] or None for i in part],
                    documents=None if documents is None else [documents[i] for i in part])
        return ids

    def update(self, ids, vectors, metadata, documents, insert_missing, fields):
        col = self.chroma_fields_collection
        ids = [str(i) for i in ids]
        if not insert_missing:
            missing = sorted(set(ids) - set(col.get(ids=ids)["ids"]))
            if missing:
                raise InputError(f"`vector_id` {choices_text(missing)} not in collection `{col.name}` (and "
                                 f"`insert_if_not_exist: false`). Nothing was written.")
        col.upsert(ids=ids, embeddings=vectors, metadatas=metadata, documents=documents)
        return ids

    def delete(self, ids, conditions, fields):
        col = self.chroma_fields_collection
        where = self._where_of(conditions)
        chosen = col.get(ids=[str(i) for i in ids] if ids is not None else None, where=where)["ids"]
        if ids is not None:
            missing = sorted(set(str(i) for i in ids) - set(chosen))
            if missing:
                raise InputError(f"`vector_id` {choices_text(missing)} not in collection `{col.name}`. Nothing "
                                 f"was deleted.")
        if chosen:
            col.delete(ids=chosen)
        return chosen
