"""text-reranking's picture: the ranked documents as a table (rank, score bar, document text, index).

:func:`render_ranking` is the task's renderer (``TASK_RENDERERS``): it reads the job's fields for the query
(the table's title), ``document_field`` (the text of a mapping document) and ``documents`` (the text of
each index when ``return_documents: false`` left it out of the result). Static HTML and text/plain.
"""

from __future__ import annotations

import html
from typing import Any, Dict, List, Optional, Sequence

from ..tasks.base import param
from .images import BOX

Bundle = Dict[str, Any]
_KEYS = {"index", "score", "document"}
TEXT_CHARS = 400     # the most characters of a document shown in the table


def is_ranked_item(value: Any) -> bool:
    """One entry of a ranking: ``{index, score, document?}``."""
    return (isinstance(value, dict) and set(value) <= _KEYS and isinstance(value.get("index"), int)
            and not isinstance(value.get("index"), bool) and isinstance(value.get("score"), (int, float))
            and not isinstance(value.get("score"), bool))


def _is_ranking(value: Any) -> bool:
    return isinstance(value, list) and all(is_ranked_item(v) for v in value)


def _text(item: Dict[str, Any], documents: Any, field: Optional[str]) -> str:
    """The words of a ranked document: the document itself, its ``document_field``, or the job's document."""
    document = item.get("document")
    if document is None and isinstance(documents, (list, tuple)) and 0 <= item["index"] < len(documents):
        document = documents[item["index"]]
    if isinstance(document, dict):
        document = document.get(field) if field and field in document else document
    return "" if document is None else str(document)


def _bar(score: float, lo: float, hi: float) -> str:
    """Scores in [0, 1] (a sigmoid) fill the bar by their value; raw logits by their place in the ranking."""
    width = score if 0 <= lo and hi <= 1 else (score - lo) / ((hi - lo) or 1.0)
    return (f'<span style="display:inline-block;width:80px;background:#eee;height:10px;border-radius:2px;'
            f'vertical-align:middle"><span style="display:block;width:{max(width, 0) * 100:.1f}%;height:10px;'
            f'background:#2f7ed8;border-radius:2px"></span></span>')


def _table(ranking: List[Dict[str, Any]], query: Any, documents: Any, field: Optional[str]) -> Bundle:
    title = f"query: {query}" if isinstance(query, str) else None
    head = f'<div style="color:#555;margin-bottom:2px">{html.escape(title)}</div>' if title else ""
    if not ranking:
        return {"text/plain": ((title + "\n") if title else "") + "no documents ranked",
                "text/html": f'<div style="{BOX}">{head}<i>no documents ranked</i></div>'}
    scores = [item["score"] for item in ranking]
    lo, hi = min(scores), max(scores)
    rows, plain = [], []
    for rank, item in enumerate(ranking, 1):
        text = _text(item, documents, field)
        shown = text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 3] + "..."
        rows.append(f'<tr><td style="color:#777;text-align:right">{rank}</td>'
                    f'<td style="white-space:nowrap">{_bar(item["score"], lo, hi)} {item["score"]:.4f}</td>'
                    f'<td style="white-space:pre-wrap;max-width:560px">{html.escape(shown)}</td>'
                    f'<td style="color:#777;text-align:right">{item["index"]}</td></tr>')
        plain.append(f"{rank}. {item['score']:.4f}  {' '.join(text.split())[:100]}  (#{item['index']})")
    table = (f'<table style="{BOX};border-collapse:collapse"><thead><tr><th>rank</th><th>score</th>'
             f'<th>document</th><th>index</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return {"text/plain": "\n".join(([title] if title else []) + plain),
            "text/html": f'<div style="{BOX}">{head}{table}</div>'}


def render_ranking(value: Any, fields: Dict[str, Any]) -> Optional[Bundle]:
    """The ranked table of a text-reranking result (one per query for a list of queries); None when
    ``value`` is not a ranking (a workflow's output may be something else)."""
    query, documents, field = fields.get("query"), fields.get("documents"), param(fields, "document_field")
    if isinstance(query, list):
        if not (isinstance(value, list) and value and all(_is_ranking(v) for v in value)):
            return None
        documents = documents if isinstance(documents, list) and len(documents) == len(value) else [None] * len(value)
        queries: Sequence[Any] = query if len(query) == len(value) else [None] * len(value)
        parts = [_table(r, q, d, field) for r, q, d in zip(value, queries, documents)]
        return {"text/plain": "\n\n".join(p["text/plain"] for p in parts),
                "text/html": "<hr style='margin:4px 0'>".join(p["text/html"] for p in parts)}
    if not _is_ranking(value):
        return None
    return _table(value, query, documents, field)
