"""text-classification: ``text:`` (one or a list) -> ``{label, score, label_id, scores}`` (a list for a list).

A backend's :meth:`~TextClassificationTask.generate` gives one row of probabilities per text (softmax,
or sigmoid for a multi-label model), in the order of its ``labels``; this task names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..catalog import Task
from ..errors import InputError
from .base import Call, ModelTask, flag_param, number_param, single_or_list

#: What a text item may be: text, or a number (or boolean) that is written as text.
TEXT_ITEMS = (str, int, float)


def text_items(fields: Dict[str, Any], task: str) -> tuple[List[str], bool]:
    """The action's ``text:`` (one or a list) as texts, and whether it was a list. A missing ``text:``, or an
    item that is not text (a mapping, a list inside the list, an image, nothing), is an InputError."""
    text = fields.get("text")
    if text is None:
        raise InputError(f"{task} got no text: give `text:`, e.g. `text: ${{input.text}}`.")
    items, many = single_or_list(text)
    for i, item in enumerate(items):
        if not isinstance(item, TEXT_ITEMS):
            where = f"item {i} of `text:`" if many else "`text:`"
            raise InputError(f"{task} takes text, but {where} is a {type(item).__name__}.\n  Give a text or a list "
                             f"of texts, e.g. `text: ${{input.text}}` (`${{input.doc as text}}` for other values).")
    return [str(item) for item in items], many


@dataclass(frozen=True)
class ClassificationParams:
    max_input_length: Optional[int] = None     # tokens; longer texts are truncated (None: the model's own)
    return_probabilities: bool = False         # model-compose's: adds `probabilities`, the row as a list


class TextClassificationTask(ModelTask):
    """Backends fill :meth:`load`, :meth:`generate` (a probability row per text) and set ``labels``."""

    task = Task.TEXT_CLASSIFICATION
    #: The names of a probability row's columns (set by the backend at load; ``LABEL_i`` without them).
    labels: Optional[List[str]] = None
    #: What a backend that is a user's object (``driver: custom``) provides to the task.
    backend_attributes = ("labels", "default_batch_size")

    def prepare(self, fields: Dict[str, Any]) -> Call:
        texts, many = text_items(fields, self.task)
        params = ClassificationParams(number_param(fields, "max_input_length", None, int, 0) or None,
                                      flag_param(fields, "return_probabilities", False))
        return Call(texts, many, params, self.batch_size(fields))

    def finish(self, outputs: List[Any], call: Call) -> Any:
        results = [self.scored(list(row)) for row in outputs]
        if call.params.return_probabilities:      # model-compose's result key: the probabilities in label order
            for result, row in zip(results, outputs):
                result["probabilities"] = [float(p) for p in row]
        return super().finish(results, call)

    def scored(self, row: List[float]) -> Dict[str, Any]:
        """One text's result from its probabilities: the best label first, every label's score after."""
        names = self.labels or [f"LABEL_{i}" for i in range(len(row))]
        best = max(range(len(row)), key=row.__getitem__)
        return {"label": names[best], "score": row[best], "label_id": best, "scores": dict(zip(names, row))}
