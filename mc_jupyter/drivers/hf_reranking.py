"""text-reranking through a transformers cross-encoder (the task: :mod:`mc_jupyter.tasks.reranking`).

``AutoModelForSequenceClassification`` reads each (query, document) pair together and gives a relevance
logit (BAAI/bge-reranker-*, cross-encoder/ms-marco-*); with two or more outputs the last is "relevant",
as in model-compose. ``params.normalize`` (default true) puts it through a sigmoid. Pairs are cut to
``max_input_length`` tokens, and never past what the tokenizer and the model's positions allow
(transformers' ``longest_first``: the longer of query and document loses tokens first).
"""

from __future__ import annotations

from typing import Any, List, Tuple

from ..tasks.reranking import RerankParams, TextRerankingTask
from .hf_common import HFDriver
from .hf_generation import max_positions


class TextReranking(HFDriver, TextRerankingTask):
    """``query:`` and ``documents:`` -> ``[{index, score, document}]`` best first."""

    auto_class = "AutoModelForSequenceClassification"

    def longest_pair(self) -> int:
        """The most tokens a pair may have: the tokenizer's limit, and the model's positions where it says."""
        found = max_positions(self.model)
        return min(self.tokenizer.model_max_length, found[0]) if found else self.tokenizer.model_max_length

    def generate(self, pairs: List[Tuple[str, str]], params: RerankParams) -> List[Any]:
        import torch

        queries, texts = zip(*pairs)
        most = self.longest_pair()
        enc = self.tokenizer(list(queries), list(texts), return_tensors="pt", padding=True, truncation=True,
                             max_length=min(params.max_input_length or most, most)).to(self.model.device)
        with torch.inference_mode():
            logits = self.model(**enc).logits.float()
        scores = logits[:, -1] if logits.dim() == 2 and logits.size(-1) > 1 else logits.reshape(-1)
        if params.normalize:
            scores = torch.sigmoid(scores)
        return scores.cpu().tolist()
