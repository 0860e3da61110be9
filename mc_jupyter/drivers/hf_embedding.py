"""text-embedding through a transformers encoder (the task: :mod:`mc_jupyter.tasks.embedding`): pooled
(mean, cls or max) and, by default, L2-normalised sentence vectors. For a
sentence-transformers folder the pooling mode and normalisation are read from its own files, so
all-MiniLM-L6-v2 gives the vectors sentence-transformers gives.
"""

from __future__ import annotations

import json
import os
from typing import Any, List, Optional

from ..tasks.embedding import EmbeddingParams, TextEmbeddingTask
from .hf_common import HFDriver
from .sources import local_file


class TextEmbedding(HFDriver, TextEmbeddingTask):
    auto_class = "AutoModel"

    def after_load(self) -> None:
        modules = local_file(self.source, "modules.json")
        folder = os.path.dirname(modules) if modules else None
        self.default_pooling, self.default_normalize = _sentence_transformers_defaults(folder)

    def generate(self, texts: List[str], params: EmbeddingParams) -> List[Any]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                             max_length=params.max_input_length).to(self.model.device)
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state.float()
        pooled = pool(hidden, enc["attention_mask"], params.pooling)
        if params.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled.cpu().tolist()


def pool(hidden, mask, mode: str):
    import torch

    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def _sentence_transformers_defaults(folder: Optional[str]) -> tuple[str, bool]:
    """(pooling, normalize) from a sentence-transformers folder; ('mean', True) otherwise."""
    pooling, normalize = "mean", True
    if not folder or not os.path.isdir(folder):
        return pooling, normalize
    modules_file = os.path.join(folder, "modules.json")
    if os.path.exists(modules_file):
        with open(modules_file) as f:
            modules = json.load(f)
        normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        for m in modules:
            if m.get("type", "").endswith("Pooling"):
                with open(os.path.join(folder, m.get("path", ""), "config.json")) as f:
                    cfg = json.load(f)
                if cfg.get("pooling_mode_cls_token"):
                    pooling = "cls"
                elif cfg.get("pooling_mode_max_tokens"):
                    pooling = "max"
    return pooling, normalize
