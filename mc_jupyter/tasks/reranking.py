"""text-reranking: ``query:`` and ``documents:`` -> the documents ranked by a cross-encoder's relevance score.

The result is model-compose's: a list of ``{index, score, document}`` sorted best first (``index`` is the
document's place in ``documents:``, ``document`` the document as given, left out with
``return_documents: false``), cut by ``score_threshold`` and then ``top_k``. A list of queries, each with
its own list of documents, gives a list of such lists.

::

    fields ──► TextRerankingTask.prepare ──► Call(items = (query, document text) pairs of every query,
                                                  params = RerankParams with the documents of each query)
           backend.generate(pairs, params)  ──► one score per pair (``batch_size`` pairs at a time)
                 ◄── finish: the scores cut back per query, ranked

A document is a text, or a mapping whose ``document_field`` holds the text (a vector store's hit
metadata, a record); one document alone counts as a list of one, as in model-compose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..catalog import Task
from ..config.positions import clip
from ..errors import InputError
from ..secrets import scrub
from .base import Call, ModelTask, flag_param, number_param, param

_EXAMPLE = "Write e.g. `query: ${input.query}` and `documents: ${input.passages}` (a list of texts)."


@dataclass(frozen=True)
class RerankParams:
    documents: Tuple[Tuple[Any, ...], ...]     # each query's documents, as given (the result's `document`)
    top_k: Optional[int] = None
    score_threshold: Optional[float] = None
    return_documents: bool = True
    max_input_length: Optional[int] = None     # tokens of a (query, document) pair; None: the model's most
    normalize: bool = True                     # sigmoid on the logit: scores in [0, 1]


def document_text(document: Any, field: Optional[str], where: str) -> str:
    """The text of one document: itself, or its ``document_field`` when it is a mapping."""
    if isinstance(document, str):
        return document
    if isinstance(document, Mapping):
        if not field:
            raise InputError(f"{where} is a mapping ({clip(scrub(repr(dict(document))), 80)}): say which key holds "
                             f"its text with `document_field:`.\n  Write e.g. `document_field: text`.")
        if not isinstance(document.get(field), str):
            keys = ", ".join(f"`{k}`" for k in document) or "none"
            what = "has no" if field not in document else "has no text under"
            raise InputError(f"{where} {what} `{field}` (`document_field: {field}`); its keys: {keys}.\n  "
                             f"Set `document_field:` to the key that holds the text.")
        return document[field]
    raise InputError(f"{where} is a {type(document).__name__}, not a text or a mapping.\n  Give texts, or "
                     f"mappings with `document_field:` naming the key that holds the text.")


def _queries(fields: Dict[str, Any]) -> Tuple[List[str], List[List[Any]], bool]:
    """(queries, each query's documents, whether the query was a list)."""
    query, documents = fields.get("query"), fields.get("documents")
    if query is None:
        raise InputError(f"text-reranking got no query: give `query:`.\n  {_EXAMPLE}")
    if documents is None:
        raise InputError(f"text-reranking got no documents: give `documents:`.\n  {_EXAMPLE}")
    if not isinstance(query, (list, tuple)):
        if not isinstance(query, str):
            raise InputError(f"`query:` must be a text, not a {type(query).__name__}.\n  {_EXAMPLE}")
        return [query], [list(documents) if isinstance(documents, (list, tuple)) else [documents]], False
    if not (isinstance(documents, (list, tuple)) and all(isinstance(d, (list, tuple)) for d in documents)
            and len(documents) == len(query)):
        raise InputError(f"a list of {len(query)} queries needs a list of {len(query)} document lists, one per query "
                         f"(`documents: [[...], [...]]`).\n  Give one `query:` text to rank one list of documents.")
    for number, text in enumerate(query, 1):
        if not isinstance(text, str):
            raise InputError(f"query #{number} of `query:` is a {type(text).__name__}, not a text.")
    return list(query), [list(d) for d in documents], True


class TextRerankingTask(ModelTask):
    """Backends fill :meth:`load` and :meth:`generate` (one relevance score per (query, text) pair)."""

    task = Task.TEXT_RERANKING
    default_batch_size = 32
    backend_attributes = ("default_batch_size",)

    def prepare(self, fields: Dict[str, Any]) -> Call:
        queries, documents, many = _queries(fields)
        field = param(fields, "document_field")
        pairs = []
        for q, (query, docs) in enumerate(zip(queries, documents), 1):
            for d, document in enumerate(docs):
                where = f"document {d} of `documents:`" + (f" (query #{q})" if many else "")
                pairs.append((query, document_text(document, field, where)))
        params = RerankParams(tuple(tuple(d) for d in documents), number_param(fields, "top_k", None, int, 1),
                              number_param(fields, "score_threshold", None, float),
                              flag_param(fields, "return_documents", True),
                              number_param(fields, "max_input_length", None, int, 1),
                              flag_param(fields, "normalize", True))
        return Call(pairs, many, params, self.batch_size(fields))

    def finish(self, outputs: List[Any], call: Call) -> Any:
        params: RerankParams = call.params
        rankings, start = [], 0
        for documents in params.documents:
            scores = outputs[start:start + len(documents)]
            start += len(documents)
            rankings.append(ranked(scores, documents, params))
        return rankings if call.many else rankings[0]


def ranked(scores: List[float], documents: Tuple[Any, ...], params: RerankParams) -> List[Dict[str, Any]]:
    """model-compose's ranking: ``{index, score, document?}`` best first (ties keep the documents' order),
    those under ``score_threshold`` dropped, then the first ``top_k``."""
    items = [dict({"index": i, "score": float(s)}, **({"document": documents[i]} if params.return_documents else {}))
             for i, s in enumerate(scores)]
    items.sort(key=lambda item: item["score"], reverse=True)
    if params.score_threshold is not None:
        items = [item for item in items if item["score"] >= params.score_threshold]
    return items if params.top_k is None else items[:params.top_k]
