"""image-embedding: ``image:`` (one or a list) -> ``{embedding: [floats], dimensions}`` (a list for a list).

The result has text-embedding's shape, so a CLIP or SigLIP image vector and the same model's text vector
(``task: text-embedding``, ``architecture: clip``) compare by their dot product. ``params.pooling`` (cls,
mean, max; model-compose's default cls) says how a model without a projection head (DINOv2) makes one
vector of its patch tokens; CLIP and SigLIP ignore it (their projection gives the vector).
``params.normalize`` (default true) L2-normalises each vector. ``batch_size`` defaults to 8, as in
model-compose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

from ..catalog import Task
from ..config.positions import clip
from ..errors import InputError
from ..secrets import scrub
from .image_to_text import named_image
from .base import Call, ModelTask, flag_param, param, single_or_list

POOLINGS = ("cls", "mean", "max")


@dataclass(frozen=True)
class ImageEmbeddingParams:
    pooling: str = "cls"
    normalize: bool = True


class ImageEmbeddingTask(ModelTask):
    """Backends fill :meth:`load` and :meth:`generate` (a vector per image, pooled as asked)."""

    task = Task.IMAGE_EMBEDDING
    default_batch_size = 8

    def prepare(self, fields: Dict[str, Any]) -> Call:
        if fields.get("image") is None:
            raise InputError("image-embedding got no image: give `image:`, e.g. `image: ${input.image as image}` "
                             "(one image or a list).")
        items, many = single_or_list(fields["image"])
        images = [named_image(item, f"`image[{i}]`" if many else "`image`") for i, item in enumerate(items)]
        pooling = param(fields, "pooling", "cls")
        if pooling not in POOLINGS:
            raise InputError(f"`pooling` must be one of {', '.join(POOLINGS)}, not {clip(scrub(repr(pooling)), 60)}."
                             f"\n  Write e.g. `params: {{pooling: mean}}` (CLIP and SigLIP ignore it).")
        params = ImageEmbeddingParams(pooling, flag_param(fields, "normalize", True))
        return Call(images, many, params, self.batch_size(fields))

    def finish(self, outputs: List[Any], call: Call) -> Any:
        vectors = [{"embedding": list(row), "dimensions": len(row)} for row in outputs]
        return super().finish(vectors, call)


