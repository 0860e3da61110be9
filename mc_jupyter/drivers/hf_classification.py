"""text-classification: ``${result}`` is ``{label, score, label_id, scores}`` (a list for a list)."""

from __future__ import annotations

from typing import Any, Dict, List

from ..errors import InputError, ModelLoadError
from .hf_common import HFDriver


class TextClassification(HFDriver):
    auto_class = "AutoModelForSequenceClassification"

    def after_load(self) -> None:
        config = self.model.config
        n = config.num_labels
        labels = self.settings.get("labels")
        if isinstance(labels, dict):
            labels = [labels[i] for i in sorted(labels)]
        if labels is not None and len(labels) != n:
            raise ModelLoadError(f"`labels:` names {len(labels)} labels but the model has {n} outputs.\n"
                                 f"  Give exactly {n} labels, in the order of the model's outputs.")
        self.labels: List[str] = list(labels) if labels else [str(config.id2label.get(i, f"LABEL_{i}"))
                                                              for i in range(n)]
        self.multi_label = config.problem_type == "multi_label_classification"

    def run(self, fields: Dict[str, Any]) -> Any:
        import torch

        text = fields.get("text")
        if text is None:
            raise InputError("text-classification got no text: give `text:`, e.g. `text: ${input.text}`.")
        many = isinstance(text, list)
        texts = [str(t) for t in text] if many else [str(text)]
        max_len = self.number(fields, "max_input_length", None, int, 0) or None
        results: List[Dict[str, Any]] = []
        for batch in self.batches(texts, fields):
            enc = self.tokenizer(batch, return_tensors="pt", padding=True, truncation=True,
                                 max_length=max_len).to(self.model.device)
            with torch.inference_mode():
                logits = self.model(**enc).logits.float()
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
            for row in probs.cpu().tolist():
                best = max(range(len(row)), key=row.__getitem__)
                results.append({"label": self.labels[best], "score": row[best], "label_id": best,
                                "scores": dict(zip(self.labels, row))})
        return results if many else results[0]
