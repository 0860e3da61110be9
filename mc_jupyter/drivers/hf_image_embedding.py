"""image-embedding through transformers (the task: :mod:`mc_jupyter.tasks.image_embedding`).

As model-compose's driver: the model's image processor makes ``pixel_values``; a CLIP or SigLIP model
gives ``get_image_features`` (its projection into the space its text tower shares, so pooling is
ignored); DINOv2, and any model without that method, pools ``last_hidden_state`` (``cls``: the first
token; ``mean``/``max``: over every token, the class token included, as model-compose does). Without
``architecture:`` the model's config decides, as model-compose's ``auto`` does.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..tasks.image_embedding import ImageEmbeddingParams, ImageEmbeddingTask
from .hf_common import HFDriver, _from_pretrained, checked_architecture, model_type_of
from .sources import ModelSource, config_source, processor_kwargs

#: ``architecture:`` -> the config.json ``model_type`` it loads.
MODEL_TYPES: Dict[str, Tuple[str, ...]] = {"clip": ("clip",), "siglip": ("siglip",), "dinov2": ("dinov2",)}
#: The architectures whose vector is the projection (``get_image_features``).
PROJECTED = ("clip", "siglip")


class ImageEmbedding(HFDriver, ImageEmbeddingTask):
    """``image:`` (one or a list) -> a vector per image."""

    auto_class = "AutoModel"
    architecture: Optional[str]   # clip, siglip, dinov2, or None for another model (model-compose's auto)

    def load(self) -> None:
        self.architecture = image_architecture(self.config.architecture, config_source(self.config))
        super().load()
        self.projected = self.architecture in PROJECTED or (self.architecture is None
                                                            and hasattr(self.model, "get_image_features"))

    def _load_tokenizer(self, source: ModelSource) -> Any:
        """The image processor (an image embedder reads no text; its tokenizer, if any, is not loaded)."""
        from transformers import AutoImageProcessor

        self.image_processor = _from_pretrained(AutoImageProcessor, source, processor_kwargs(source))
        return None

    def unload(self) -> None:
        self.__dict__.pop("image_processor", None)
        super().unload()

    def generate(self, images: List[Any], params: ImageEmbeddingParams) -> List[List[float]]:
        import torch

        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.model.device, self.model.dtype)
        with torch.inference_mode():
            if self.projected:
                vectors = features(self.model.get_image_features(pixel_values=pixels))
            else:
                vectors = pool(self.model(pixel_values=pixels).last_hidden_state, params.pooling)
        vectors = vectors.float()
        if params.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        return vectors.cpu().tolist()


def image_architecture(asked: Optional[str], source: ModelSource) -> Optional[str]:
    """The architecture of the model at ``source`` (None for another model), which must be ``asked`` when one
    is: a ModelLoadError, before any weights load, otherwise."""
    return checked_architecture(asked, model_type_of(source), MODEL_TYPES, source.location)


def features(output: Any) -> Any:
    """``get_image_features``/``get_text_features``' vector: a tensor (transformers 4) or the
    ``pooler_output`` of the output it returns (transformers 5)."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


def pool(hidden: Any, mode: str) -> Any:
    """One vector per image from its tokens: the first (``cls``), their mean or their maximum."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.max(dim=1).values
    return hidden.mean(dim=1)
