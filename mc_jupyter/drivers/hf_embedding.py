"""text-embedding through a transformers encoder (the task: :mod:`mc_jupyter.tasks.embedding`): pooled
(mean, cls or max) and, by default, L2-normalised sentence vectors. For a
sentence-transformers folder the pooling mode and normalisation are read from its own files, so
all-MiniLM-L6-v2 gives the vectors sentence-transformers gives.

A CLIP-family model (``architecture: clip`` or ``siglip``, or a config whose model has
``get_text_features``: CLIPModel, SiglipModel) gives its text tower's projection instead, as
model-compose does: the vector lies in the space of the same model's image vectors
(:mod:`.hf_image_embedding`), so a text finds images by cosine. Pooling is ignored there (the
projection makes the vector); SigLIP texts are padded to the tokenizer's full length, as SigLIP was
trained (its vector is the last token's).
"""

from __future__ import annotations

import json
import os
from typing import Any, List, Optional

from ..tasks.embedding import EmbeddingParams, TextEmbeddingTask
from .hf_common import HFDriver
from .hf_image_embedding import features, image_architecture
from .sources import config_source, local_file

#: ``model_type``s whose text tower was trained on texts padded to the full length (the last token pools).
_PADDED_TO_LENGTH = ("siglip", "siglip2")


class TextEmbedding(HFDriver, TextEmbeddingTask):
    auto_class = "AutoModel"
    projected: bool = False   # a CLIP-family text tower: ``get_text_features``, in its images' space

    def load(self) -> None:
        if self.config.architecture is not None:   # clip or siglip: the model must be one
            image_architecture(self.config.architecture, config_source(self.config))
        super().load()

    def after_load(self) -> None:
        modules = local_file(self.source, "modules.json")
        folder = os.path.dirname(modules) if modules else None
        self.default_pooling, self.default_normalize = _sentence_transformers_defaults(folder)
        self.projected = self.config.architecture is not None or hasattr(self.model, "get_text_features")

    def generate(self, texts: List[str], params: EmbeddingParams) -> List[Any]:
        import torch

        padding = "max_length" if self.projected and self.model.config.model_type in _PADDED_TO_LENGTH else True
        enc = self.tokenizer(texts, return_tensors="pt", padding=padding, truncation=True,
                             max_length=params.max_input_length).to(self.model.device)
        with torch.inference_mode():
            if self.projected:
                vectors = features(self.model.get_text_features(**enc)).float()
            else:
                vectors = pool(self.model(**enc).last_hidden_state.float(), enc["attention_mask"], params.pooling)
        if params.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        return vectors.cpu().tolist()


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
