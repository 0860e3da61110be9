"""text-classification through a transformers sequence classifier (the task: :mod:`mc_jupyter.tasks.classification`)."""

from __future__ import annotations

from typing import Any, List

from ..errors import ModelLoadError
from ..tasks.classification import ClassificationParams, TextClassificationTask
from .hf_common import HFDriver


class TextClassification(HFDriver, TextClassificationTask):
    auto_class = "AutoModelForSequenceClassification"

    def after_load(self) -> None:
        config = self.model.config
        n = config.num_labels
        labels = self.config.labels
        if isinstance(labels, dict):
            labels = [labels[i] for i in sorted(labels)]
        if labels is not None and len(labels) != n:
            raise ModelLoadError(f"`labels:` names {len(labels)} labels but the model has {n} outputs.\n"
                                 f"  Give exactly {n} labels, in the order of the model's outputs.")
        self.labels: List[str] = list(labels) if labels else [str(config.id2label.get(i, f"LABEL_{i}"))
                                                              for i in range(n)]
        self.multi_label = config.problem_type == "multi_label_classification"

    def generate(self, texts: List[str], params: ClassificationParams) -> List[Any]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                             max_length=params.max_input_length).to(self.model.device)
        with torch.inference_mode():
            logits = self.model(**enc).logits.float()
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probs.cpu().tolist()
