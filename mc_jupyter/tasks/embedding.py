"""text-embedding: ``text:`` (one or a list) -> ``{embedding: [floats], dimensions}`` (a list for a list).

``params.pooling`` (mean, cls, max) and ``params.normalize`` (L2) default to the backend's
(``default_pooling``/``default_normalize``: a sentence-transformers folder says its own; else mean
and normalised); a backend's :meth:`generate` gives one vector per text, pooled as asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..catalog import Task
from .base import Call, ModelTask, number_param, param
from .classification import text_items


@dataclass(frozen=True)
class EmbeddingParams:
    pooling: str = "mean"
    normalize: bool = True
    max_input_length: Optional[int] = None


class TextEmbeddingTask(ModelTask):
    """Backends fill :meth:`load` and :meth:`generate` (a pooled vector per text)."""

    task = Task.TEXT_EMBEDDING
    default_pooling: str = "mean"      # without `pooling:` (a backend may read its model's own)
    default_normalize: bool = True
    backend_attributes = ("default_pooling", "default_normalize", "default_batch_size")

    def prepare(self, fields: Dict[str, Any]) -> Call:
        texts, many = text_items(fields, self.task)
        pooling = param(fields, "pooling", self.default_pooling)
        normalize = param(fields, "normalize", self.default_normalize)
        params = EmbeddingParams(pooling, normalize in (True, "true", "True"),
                                 number_param(fields, "max_input_length", None, int, 0) or None)
        return Call(texts, many, params, self.batch_size(fields))

    def finish(self, outputs: List[Any], call: Call) -> Any:
        vectors = [{"embedding": list(row), "dimensions": len(row)} for row in outputs]
        return super().finish(vectors, call)
