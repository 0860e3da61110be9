"""The YAML of the components that hold no model: ``type: vector-store`` and ``type: text-splitter``,
in model-compose 0.4.120's shape (``mindor/dsl/schema/{component,action}/impl/vector_store/`` and
``text_splitter.py``).

A vector store's actions each name a ``method`` (insert, update, search, delete). A component written
with no action of a method's name still answers a job that names the method (the seed chapter's
``action: search`` with ``input: {vector, top_k}``): :func:`implicit_actions` adds one that reads the
job's whole input.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import conint

from ..errors import ConfigError, choices_text, did_you_mean
from .base import ActionHeader, Binding, Flag, Named, Number, Strict
from .positions import Path, Positions, clip

VECTOR_DRIVERS = ("faiss", "chroma", "milvus", "qdrant", "pinecone")
#: The drivers built here; the others are refused at compose with the reason.
BUILT_VECTOR_DRIVERS = ("faiss", "chroma")
METHODS = ("insert", "update", "search", "delete")
FILTER_OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "not-in")
#: The keys each method reads (besides ``method``, ``id_field``, ``vector_field``, ``batch_size``).
METHOD_KEYS: Dict[str, tuple] = {
    "insert": ("vector", "vector_id", "metadata", "document"),
    "update": ("vector_id", "vector", "metadata", "document", "insert_if_not_exist"),
    "search": ("query", "top_k", "metric_type", "filter", "output_fields"),
    "delete": ("vector_id", "filter"),
}
#: The keys a job's input may give an action made by :func:`implicit_actions` (``vector`` is the seed's
#: name for a search's ``query``).
IMPLICIT_INPUT_KEYS: Dict[str, tuple] = {m: keys + (("vector",) if m == "search" else ()) + ("batch_size", "collection")
                                         for m, keys in METHOD_KEYS.items()}


class VectorActionFields(Strict):
    method: Optional[Literal["insert", "update", "search", "delete"]] = None
    id_field: str = "id"
    vector_field: str = "vector"
    batch_size: Optional[Number] = None
    collection: Optional[str] = None          # chroma (and the server stores): required there
    vector: Any = None                        # one vector, a list of them, or a ${...}
    vector_id: Any = None
    metadata: Any = None
    document: Any = None                      # chroma: the text kept beside each vector
    insert_if_not_exist: Optional[Flag] = None
    query: Any = None
    top_k: Optional[Union[conint(ge=1), Binding]] = None
    metric_type: Optional[str] = None
    filter: Any = None                        # [{field, operator, value}] or {field: value | {op: value}}
    output_fields: Optional[Union[List[str], Binding]] = None
    output: Any = None


class VectorAction(VectorActionFields, ActionHeader):
    pass


class VectorStoreComponent(VectorActionFields, Named):
    type: Literal["vector-store"]
    driver: Literal["faiss", "chroma", "milvus", "qdrant", "pinecone"] = "faiss"
    # faiss
    dimension: Optional[conint(gt=0)] = None
    metric: Literal["l2", "ip", "cosine"] = "l2"
    index: Literal["flat", "hnsw"] = "flat"   # ours: exact search, or an HNSW graph
    hnsw_m: conint(ge=2) = 32
    ef_search: conint(ge=1) = 1024   # recall@10 0.95 on random 384-d vectors (docs/benchmarks.md); lower: faster
    storage_dir: Optional[str] = None
    # chroma (and the server stores, refused)
    mode: Literal["local", "server"] = "local"
    host: Optional[str] = None
    port: Optional[conint(ge=1, le=65535)] = None
    protocol: Optional[str] = None
    tenant: Optional[str] = None
    database: Optional[str] = None
    timeout: Optional[Union[str, int, float]] = None
    action: Optional[VectorAction] = None
    actions: Optional[List[VectorAction]] = None
    default: bool = False
    max_concurrent_count: Optional[conint(ge=0)] = None
    runtime: Optional[Any] = None


class SplitterActionFields(Strict):
    text: Any = None
    language: Optional[str] = None
    separators: Optional[Union[List[str], Binding]] = None
    chunk_size: Optional[Union[conint(ge=1), Binding]] = None
    chunk_overlap: Optional[Union[conint(ge=0), Binding]] = None
    batch_size: Optional[Number] = None
    streaming: Optional[Flag] = None
    output: Any = None


class SplitterAction(SplitterActionFields, ActionHeader):
    pass


class TextSplitterComponent(SplitterActionFields, Named):
    type: Literal["text-splitter"]
    action: Optional[SplitterAction] = None
    actions: Optional[List[SplitterAction]] = None
    default: bool = False
    max_concurrent_count: Optional[conint(ge=0)] = None
    runtime: Optional[Any] = None


VECTOR_ACTION_FIELDS = tuple(VectorActionFields.model_fields)
SPLITTER_ACTION_FIELDS = tuple(SplitterActionFields.model_fields)
#: What a vector store's reload depends on (its actions' fields do not need one).
VECTOR_LOAD_FIELDS = ("driver", "dimension", "metric", "index", "hnsw_m", "ef_search", "storage_dir", "mode",
                      "host", "port", "protocol", "tenant", "database", "timeout")


def normalize_filter(value: Any) -> Any:
    """model-compose's shorthand ``{cat: a}`` / ``{year: {gte: 2020}}`` as a list of conditions."""
    if isinstance(value, dict):
        out = []
        for key, v in value.items():
            if isinstance(v, dict):
                out += [{"field": key, "operator": op, "value": x} for op, x in v.items()]
            else:
                out.append({"field": key, "operator": "eq", "value": v})
        return out
    return value


def check_filter(value: Any, path: Path, positions: Positions) -> None:
    """A filter written in the YAML (not a binding): its conditions' shape and operators, at compose time."""
    if value is None or isinstance(value, str):
        return
    conditions = normalize_filter(value)
    if not isinstance(conditions, list):
        raise ConfigError(f"`filter:` must be a list of {{field, operator, value}} or a mapping like `{{cat: a}}`, "
                          f"not {type(value).__name__}", **positions.where(path),
                          hint="e.g. `filter: {year: {gte: 2020}, lang: en}`.")
    for i, c in enumerate(conditions):
        if not isinstance(c, dict) or set(c) - {"field", "operator", "value"} or "field" not in c:
            raise ConfigError(f"`filter[{i}]` must be a mapping of `field`, `operator` and `value`",
                              **positions.where(path), hint="e.g. `- {field: year, operator: gte, value: 2020}`.")
        op = c.get("operator", "eq")
        if op not in FILTER_OPERATORS:
            raise ConfigError(f"unknown filter operator `{clip(str(op))}`{did_you_mean(str(op), FILTER_OPERATORS)} "
                              f"(field `{clip(str(c['field']))}`)", **positions.where(path),
                              hint=f"The operators: {choices_text(FILTER_OPERATORS)}.")


def check_vector_component(comp: VectorStoreComponent, raw: dict, path: Path, positions: Positions) -> None:
    """What the schema alone cannot say: the driver is built, faiss has its dimension, a chroma action
    names its collection, each action's method and keys fit."""
    if comp.driver not in BUILT_VECTOR_DRIVERS:
        raise ConfigError(f"the vector-store driver `{comp.driver}` is not built here: it talks to a "
                          f"{comp.driver} server or service", **positions.where(path + ("driver",)),
                          hint="Use `driver: faiss` (in this kernel, no server; `storage_dir:` keeps it on disk) "
                               "or `driver: chroma` (pip install chromadb).")
    if comp.driver == "faiss" and comp.dimension is None:
        raise ConfigError("a faiss vector store needs `dimension:`, the length of its vectors",
                          **positions.where(path), hint="e.g. `dimension: 384` for all-MiniLM-L6-v2's embeddings.")


def check_vector_action(driver: str, fields: Dict[str, Any], path: Path, positions: Positions,
                        implicit: bool = False) -> None:
    method = fields.get("method")
    if method is None:
        raise ConfigError("a vector-store action needs `method:`", **positions.where(path),
                          hint=f"One of {choices_text(METHODS)}, e.g. `method: search`.")
    if implicit:
        return
    common = {"method", "id_field", "vector_field", "batch_size", "collection", "output"}
    for key in fields:
        if key not in common and key not in METHOD_KEYS[method]:
            owner = [m for m, keys in METHOD_KEYS.items() if key in keys]
            raise ConfigError(f"`{key}:` is not a key of a `{method}` action" +
                              (f" (it belongs to {choices_text(owner)})" if owner else ""),
                              **positions.where(path + (key,)),
                              hint=f"A `{method}` action reads {choices_text(METHOD_KEYS[method])}.")
    required = {"insert": "vector", "update": "vector_id", "search": "query"}.get(method)
    if required and fields.get(required) is None:
        raise ConfigError(f"a `{method}` action needs `{required}:`", **positions.where(path),
                          hint=f"e.g. `{required}: ${{input.{required}}}`.")
    if driver == "chroma" and not fields.get("collection"):
        raise ConfigError(f"a chroma `{method}` action needs `collection:`", **positions.where(path),
                          hint="e.g. `collection: docs`.")
    if "filter" in fields:
        check_filter(fields["filter"], path + ("filter",), positions)


def implicit_actions(existing: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """For each method no action is named after: an action of that method that reads the job's input."""
    return {m: {"method": m, "request": "${input}"} for m in METHODS if m not in existing}
