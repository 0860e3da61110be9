"""``driver: chroma``: chromadb's own client, model-compose's working vector-store driver
(``mindor/core/component/services/vector_store/drivers/chroma.py`` in model-compose 0.4.120).

``pip install chromadb`` (the ``chroma`` extra). ``mode: local`` (the default) keeps the collections in
``storage_dir`` (default ``./chroma``) through ``chromadb.PersistentClient``; ``mode: server`` talks to a
Chroma server at ``host:port`` (``protocol: https`` for TLS) through ``chromadb.HttpClient``. ``tenant``
and ``database`` are passed on when given.

What matches model-compose's driver:

* each action names its ``collection:`` (required there, checked at compose time); an insert or an
  update creates the collection on first use;
* ``vector_id`` as given (as strings: chroma keeps string ids); generated ids when left out (uuid4 hex
  here, a ULID there);
* ``document:`` (one text per vector) is kept beside each vector and comes back in the hits;
* a search hit is ``{id, score, distance, metadata, document?}``, best first, ``distance`` as chroma
  reports it (``l2``: squared Euclidean; ``cosine``: 1 - cosine similarity; ``ip``: 1 - inner product)
  and ``score = 1 / (1 + distance)`` for ``l2`` and ``cosine``, as model-compose computes it. For ``ip``
  model-compose's formula is not monotone (the distance goes below -1 once the inner product exceeds 2),
  so there ``score`` is the inner product itself (``1 - distance``), as model-compose's faiss driver gives
  it. model-compose's hits also carry each vector's ``embedding``; these do not (a search of 100 vectors
  of 384 numbers would print 38,400 numbers);
* ``filter`` conditions become chroma's ``where`` (eq → ``$eq``, neq → ``$ne``, gt/gte/lt/lte, in →
  ``$in``, not-in → ``$nin``). Several conditions are joined with ``$and`` (model-compose merges them into
  one mapping, which chroma refuses with "Expected where to have exactly one operator", and two
  conditions on one field overwrite each other there). ``neq`` and ``not-in`` match a vector that has
  no such field, as in chroma (and our faiss driver);
* an update merges the given metadata into the stored one (chroma's ``update``; keys not given are kept).

What is ours (the dialect, as for faiss):

* the component's ``metric`` is the collection's distance (``hnsw:space``) when this driver makes it.
  A collection that exists keeps the distance it was made with: when the component's ``metric`` (l2 when
  not written, chroma's default too) differs, the action is refused with both names (chroma itself would
  silently keep the old one);
* ``insert_if_not_exist`` (default true): an unknown id in an update is inserted (it then needs its
  vector); false refuses the update naming the ids. model-compose ignores it (chroma skips unknown ids);
* bad input is refused before anything is written: a repeated or already stored id (chroma would skip
  it silently), a vector of the wrong length, metadata chroma cannot keep (nested mappings), a bad
  filter, a collection name chroma refuses; an insert in several batches that fails half way removes the
  batches it wrote;
* a search or a delete on a collection that does not exist is an error naming the collections there
  (model-compose creates an empty one and finds nothing);
* a job that names a method with no action of its own (the seed's ``action: search`` with ``input:
  {vector, top_k}``, the spec's 8.3.4 RAG block) has no ``collection:``. model-compose refuses such a job
  ("Action not found: search"); here it works on the component's own ``collection:`` when it has one,
  else on the one collection its actions name, and otherwise it is refused saying how to name it.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any, Dict, List, Optional

from ..errors import InputError, choices_text
from .vector_store import VectorStoreDriver, _batches

#: our filter operators → chroma's ``where`` operators
WHERE_OPERATORS = {"eq": "$eq", "neq": "$ne", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte",
                   "in": "$in", "not-in": "$nin"}
#: chroma's rule for a collection's name (chromadb 1.x)
COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
#: rows per insert call when ``batch_size`` is not given (the progress bar moves once per batch)
DEFAULT_BATCH = 1000


def _settings():
    from chromadb.config import Settings
    return Settings(anonymized_telemetry=False)


def _space_of(collection: Any) -> str:
    """The distance a chroma collection was made with (``l2`` when it says nothing, chroma's default)."""
    conf = getattr(collection, "configuration_json", None) or {}
    space = ((conf.get("hnsw") or {}).get("space") if isinstance(conf, dict) else None)
    if not space:
        space = (collection.metadata or {}).get("hnsw:space")
    return space or "l2"


def where_of(conditions: Optional[List[Dict[str, Any]]]) -> Optional[Dict[str, Any]]:
    """Our filter conditions (``[{field, operator, value}]``, already normalized) as chroma's ``where``.

    Each condition's value is checked here so that a bad one is an error naming the condition (chroma's
    own message names none): ``in`` / ``not-in`` take a non-empty list, gt/gte/lt/lte a number, eq/neq
    a string, number or boolean."""
    if not conditions:
        return None
    parts = []
    for i, c in enumerate(conditions):
        if not isinstance(c, dict) or "field" not in c:
            raise InputError(f"`filter[{i}]` must be a mapping of `field`, `operator` and `value`, not {c!r}.")
        op = c.get("operator", "eq")
        if op not in WHERE_OPERATORS:
            raise InputError(f"`filter[{i}]`: unknown operator `{op}` (field `{c['field']}`).\n  The operators: "
                             f"{choices_text(tuple(WHERE_OPERATORS))}. Nothing was changed.")
        value = c.get("value")
        where = f"`filter[{i}]` (`{c['field']} {op}`)"
        if op in ("in", "not-in"):
            if not isinstance(value, (list, tuple)) or not value or not all(
                    isinstance(v, (str, int, float, bool)) for v in value):
                raise InputError(f"{where} needs a non-empty list of strings or numbers, not {value!r}.")
            value = list(value)
        elif op in ("gt", "gte", "lt", "lte"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"{where} needs a number (chroma compares numbers only), not {value!r}.")
        elif not isinstance(value, (str, int, float, bool)):
            raise InputError(f"{where} needs a string, number or boolean, not {value!r}.")
        parts.append({str(c["field"]): {WHERE_OPERATORS[op]: value}})
    return parts[0] if len(parts) == 1 else {"$and": parts}


class ChromaVectorStore(VectorStoreDriver):
    """``driver: chroma`` (see the module's docstring): one chromadb client per component, each action
    on the ``collection`` it names."""

    def __init__(self, component_id: str, config: Any):
        super().__init__(component_id, config)
        self.client = None
        self._where = ""
        self._open_collections: Dict[str, Any] = {}

    # -- the client -----------------------------------------------------------------------------
    def open(self) -> None:
        import chromadb
        c = self.config
        extra = {k: v for k, v in (("tenant", c.tenant), ("database", c.database)) if v}
        if c.mode == "server":
            host, port = c.host or "localhost", c.port or 8000
            self.client = chromadb.HttpClient(host=host, port=port, ssl=(c.protocol == "https"),
                                              settings=_settings(), **extra)
            self._where = f"{c.protocol or 'http'}://{host}:{port}"
        else:
            path = os.path.abspath(os.path.expanduser(c.storage_dir or "./chroma"))
            self.client = chromadb.PersistentClient(path=path, settings=_settings(), **extra)
            self._where = c.storage_dir or "./chroma"
        self._open_collections = {}
        self.source_description = f"chroma {c.mode} · {self._where}"

    def unload(self) -> None:
        self.client = None
        self._open_collections = {}

    def store_line(self) -> str:
        """``6 vectors · 384-d · cosine · 1 collection · ./chroma`` (the dimension when all collections share one)."""
        if self.client is None:
            return f"chroma · {self._where or self.config.storage_dir or './chroma'}"
        try:
            cols = [self.client.get_collection(getattr(col, "name", col)) for col in self.client.list_collections()]
            total = sum(col.count() for col in cols)
            dims = {d for d in (self._dimension(col) for col in cols) if d}
        except Exception as e:   # a server gone away: the line says so, the status table still shows
            return f"chroma · {self._where} · unreachable ({type(e).__name__})"
        spaces = sorted({_space_of(col) for col in cols}) or [self.config.metric]
        size = f"{dims.pop()}-d · " if len(dims) == 1 else ""
        return (f"{total} vector{'s' if total != 1 else ''} · {size}{'/'.join(spaces)} · "
                f"{len(cols)} collection{'s' if len(cols) != 1 else ''} · {self._where}")

    @staticmethod
    def _dimension(col) -> Optional[int]:
        got = col.get(limit=1, include=["embeddings"])
        embeddings = got.get("embeddings")
        return len(embeddings[0]) if embeddings is not None and len(embeddings) else None

    # -- which collection -----------------------------------------------------------------------
    def _collection_name(self, fields: Dict[str, Any]) -> str:
        name = fields.get("collection")
        if not name:
            name = self.config.collection
        if not name:
            named = sorted({a.collection for a in [self.config.action, *(self.config.actions or [])]
                            if a is not None and a.collection})
            if len(named) == 1:
                name = named[0]
            else:
                method = fields.get("method", "search")
                query = (" (the job's input `{vector, top_k}` gives the query: `query: ${input.vector}`, "
                         "`top_k: ${input.top_k}`)" if method == "search" else "")
                raise InputError(
                    f"this `{method}` has no `collection:` and the chroma store `{self.component_id}` cannot "
                    f"tell which to use (its actions name {choices_text(named) if named else 'none'}).\n  Give "
                    f"the component an action `id: {method}` with `method: {method}` and `collection: <name>`{query}.")
        name = str(name)
        if not COLLECTION_NAME.match(name):
            raise InputError(f"`collection`: {name!r} is not a name chroma accepts: 3 to 512 characters from "
                             f"a-z, A-Z, 0-9, `.`, `_` and `-`, starting and ending with a letter or digit. "
                             f"Nothing was changed.")
        return name

    def _collection(self, name: str, create: bool):
        """The collection ``name`` (checked once for its distance, then kept until the next load or a chroma
        error: a search costs one ``query`` call)."""
        col = self._open_collections.get(name)
        if col is not None:
            return col
        try:
            col = self.client.get_collection(name, embedding_function=None)
        except Exception as e:
            if type(e).__name__ not in ("NotFoundError", "InvalidCollectionException", "ValueError"):
                raise
            if not create:
                have = [getattr(c, "name", c) for c in self.client.list_collections()]
                raise InputError(f"`collection`: `{name}` does not exist in the chroma store `{self.component_id}` "
                                 f"({self._where}); it has {choices_text(sorted(have)) if have else 'no collections'}."
                                 f"\n  Insert into it first, or name another. Nothing was changed.") from None
            col = self.client.create_collection(name, metadata={"hnsw:space": self.config.metric},
                                                embedding_function=None)
            self._open_collections[name] = col
            return col
        space = _space_of(col)
        if space != self.config.metric:
            raise InputError(f"the chroma collection `{name}` was made with the distance `{space}`, but the "
                             f"component says `metric: {self.config.metric}`.\n  A collection keeps its "
                             f"distance: write `metric: {space}`, or use a new collection. Nothing was changed.")
        self._open_collections[name] = col
        return col

    def _check_dimensions(self, col, vectors, name: str) -> None:
        lengths = {len(v) for v in vectors}
        if len(lengths) > 1:
            raise InputError(f"`{name}`: the vectors have different lengths ({sorted(lengths)}): give vectors of "
                             f"one length. Nothing was written.")
        want = self._dimension(col)
        if want is not None and lengths and lengths != {want}:
            raise InputError(f"`{name}`: a vector of dimension {lengths.pop()} for the chroma collection "
                             f"`{col.name}`, whose vectors have dimension {want}. Nothing was written.")

    @staticmethod
    def _metadatas(metadata: Optional[list], name: str = "metadata") -> Optional[list]:
        """Chroma's metadata per vector: ``None`` for an empty mapping (chroma refuses ``{}``), each value
        checked by chroma's own validator first, so a bad one is refused before anything is written."""
        if metadata is None:
            return None
        from chromadb.api.types import validate_metadata
        out = []
        for i, m in enumerate(metadata):
            if m is None or m == {}:
                out.append(None)
                continue
            if not isinstance(m, dict):
                raise InputError(f"`{name}[{i}]` must be a mapping of names to values, not "
                                 f"{type(m).__name__}. Nothing was written.")
            try:
                validate_metadata({str(k): v for k, v in m.items()})
            except (ValueError, TypeError) as e:
                raise InputError(f"`{name}[{i}]`: {str(e).removesuffix('.')}. Nothing was written.") from None
            out.append({str(k): v for k, v in m.items()})
        return out if any(m is not None for m in out) else None

    @staticmethod
    def _documents(documents: Optional[list]) -> Optional[list]:
        if documents is None:
            return None
        for i, d in enumerate(documents):
            if d is not None and not isinstance(d, str):
                raise InputError(f"`document[{i}]` must be a text, not {type(d).__name__}. Nothing was written.")
        return list(documents)

    # -- one run --------------------------------------------------------------------------------
    def run(self, fields: Dict[str, Any]) -> Any:
        self._fields_collection = self._collection_name(fields)
        try:
            return super().run(fields)
        except InputError:
            raise
        except Exception:
            self._open_collections.clear()    # e.g. a collection deleted by another client: look it up again
            raise

    def reconfigure(self, config: Any) -> None:
        super().reconfigure(config)
        self._open_collections.clear()

    def search(self, queries, top_k, conditions, output_fields):
        col = self._collection(self._fields_collection, create=False)
        where = where_of(conditions)
        try:
            found = col.query(query_embeddings=queries, n_results=top_k, where=where,
                              include=["metadatas", "documents", "distances"])
        except Exception as e:
            if "dimension" in str(e):
                raise InputError(f"`query`: {e}").with_traceback(None) from None
            raise
        ip = _space_of(col) == "ip"
        out = []
        for q in range(len(queries)):
            hits = []
            metas, docs = found["metadatas"][q], found["documents"][q]
            for i, id_ in enumerate(found["ids"][q]):
                dist = float(found["distances"][q][i])
                meta = dict(metas[i] or {})
                if output_fields is not None:
                    meta = {k: meta[k] for k in output_fields if k in meta}
                hit = {"id": id_, "score": (1.0 - dist) if ip else 1.0 / (1.0 + dist), "distance": dist,
                       "metadata": meta}
                if docs[i] is not None:
                    hit["document"] = docs[i]
                hits.append(hit)
            out.append(hits)
        return out

    def insert(self, vectors, ids, metadata, documents, batch, fields):
        """Checked whole first (ids new and not repeated, one vector length, metadata chroma keeps), then
        written ``batch_size`` rows a call (default 1000, at most chroma's own batch limit) with a progress
        bar when there is more than one batch; a call that fails removes what the earlier ones wrote."""
        from .. import progress
        col = self._collection(self._fields_collection, create=True)
        ids = [str(i) for i in ids] if ids is not None else [uuid.uuid4().hex for _ in vectors]
        repeated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
        if repeated:
            raise InputError(f"`vector_id`: {choices_text(repeated)} given more than once. Nothing was written.")
        self._check_dimensions(col, vectors, "vector")
        metadatas = self._metadatas(metadata)
        documents = self._documents(documents)
        existing = set(col.get(ids=ids, include=[])["ids"])
        if existing:
            raise InputError(f"`vector_id` {choices_text(sorted(existing))} already in the chroma collection "
                             f"`{col.name}`: use an update (`method: update`). Nothing was written.")
        size = min(batch or DEFAULT_BATCH, self.client.get_max_batch_size())
        parts = _batches(len(vectors), size)
        written: List[str] = []

        def write(part) -> None:
            chunk = [ids[i] for i in part]
            col.add(ids=chunk, embeddings=[vectors[i] for i in part],
                    metadatas=None if metadatas is None else [metadatas[i] for i in part],
                    documents=None if documents is None else [documents[i] for i in part])
            written.extend(chunk)

        try:
            if len(parts) == 1:
                write(parts[0])
            else:
                with progress.bar(f"inserting into {self.component_id}", total=len(vectors),
                                  done=f"inserted {len(vectors)} vectors into {self.component_id}") as bar:
                    for part in parts:
                        write(part)
                        bar.advance(len(part))
                    bar.finish(f"inserted {len(vectors)} vectors into {self.component_id}")
        except BaseException:
            if written:
                col.delete(ids=written)
            raise
        return ids

    def update(self, ids, vectors, metadata, documents, insert_missing, fields):
        """Known ids: chroma's ``update`` (the metadata given is merged into the stored one). Unknown ids:
        inserted when ``insert_if_not_exist`` (default true; they then need their vectors), else refused."""
        ids = [str(i) for i in ids]
        if len(set(ids)) != len(ids):
            raise InputError(f"`vector_id`: {choices_text(sorted({i for i in ids if ids.count(i) > 1}))} given "
                             f"more than once. Nothing was written.")
        if vectors is None and metadata is None and documents is None:
            raise InputError("an update needs `vector`, `metadata` or `document` for the ids in `vector_id`. "
                             "Nothing was written.")
        col = self._collection(self._fields_collection, create=insert_missing)
        if vectors is not None:
            self._check_dimensions(col, vectors, "vector")
        metadatas = self._metadatas(metadata)
        documents = self._documents(documents)
        known = set(col.get(ids=ids, include=[])["ids"])
        missing = [i for i in ids if i not in known]
        if missing and not insert_missing:
            raise InputError(f"`vector_id` {choices_text(missing)} not in the chroma collection `{col.name}` (and "
                             f"`insert_if_not_exist: false`): insert them first. Nothing was written.")
        if missing and vectors is None:
            raise InputError(f"`vector`: ids {choices_text(missing)} are not in the chroma collection `{col.name}` "
                             f"and would be inserted, which needs their vectors; give `vector`, or set "
                             f"`insert_if_not_exist: false`. Nothing was written.")

        def pick(values, chosen):
            return None if values is None else [values[ids.index(i)] for i in chosen]
        old = [i for i in ids if i in known]
        if old and (vectors is not None or metadatas is not None or documents is not None):
            meta = pick(metadatas, old)
            col.update(ids=old, embeddings=pick(vectors, old),
                       metadatas=None if meta is None or all(m is None for m in meta) else meta,
                       documents=pick(documents, old))
        if missing:
            meta = pick(metadatas, missing)
            col.add(ids=missing, embeddings=pick(vectors, missing),
                    metadatas=None if meta is None or all(m is None for m in meta) else meta,
                    documents=pick(documents, missing))
        return ids

    def delete(self, ids, conditions, fields):
        """By ids (each must exist), by filter, or both (the ids that match the filter). Returns the ids deleted."""
        col = self._collection(self._fields_collection, create=False)
        where = where_of(conditions)
        if ids is not None:
            ids = [str(i) for i in ids]
            known = set(col.get(ids=ids, include=[])["ids"])
            missing = [i for i in ids if i not in known]
            if missing:
                raise InputError(f"`vector_id` {choices_text(missing)} not in the chroma collection `{col.name}`. "
                                 f"Nothing was deleted.")
            chosen = ids if where is None else col.get(ids=ids, where=where, include=[])["ids"]
        else:
            chosen = col.get(where=where, include=[])["ids"]
        if chosen:
            col.delete(ids=chosen)
        return chosen
