"""image-background-removal: ``image:`` (one or a list) -> the image with its background made transparent
(a list for a list).

model-compose 0.4.120's result: with ``output_format: rgba`` (the default) the input as an RGBA image whose
alpha is the foreground mask; with ``output_format: mask`` the mask alone, a grey (mode ``L``) image of the
input's size, 255 where the model is sure of foreground. ``params.image_size`` is the side of the square
the model sees (model-compose's 1024 for BiRefNet-style models; a transformers segmentation model keeps
its own size unless given); ``batch_size`` is 1 unless given.

A backend's :meth:`~BackgroundRemovalTask.generate` returns, per image, the mask as an ``L`` image of the
image's size; this task puts it on the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..catalog import Task
from ..config.positions import clip
from ..errors import InputError
from ..secrets import scrub
from .base import Call, ModelTask, number_param, param
from .image_to_text import image_items

OUTPUT_FORMATS = ("rgba", "mask")


@dataclass(frozen=True)
class BackgroundParams:
    output_format: str = "rgba"
    image_size: Optional[int] = None      # the model's input side; None: the backend's default


def cutout(image: Any, mask: Any, output_format: str) -> Any:
    """model-compose's output: the image with ``mask`` (resized bilinearly when its size differs) as
    alpha, or the mask itself."""
    from PIL import Image

    if output_format == "mask":
        return mask
    alpha = mask if mask.size == image.size else mask.resize(image.size, Image.BILINEAR)
    rgba = image.convert("RGBA")
    rgba.putalpha(alpha)
    return rgba


class BackgroundRemovalTask(ModelTask):
    """Backends fill :meth:`load` and :meth:`generate` (a foreground mask, mode ``L``, per image)."""

    task = Task.IMAGE_BACKGROUND_REMOVAL
    default_batch_size = 1          # model-compose's

    def prepare(self, fields: Dict[str, Any]) -> Call:
        images, many = image_items(fields, self.task, "RGB")
        output_format = param(fields, "output_format", "rgba")
        if output_format not in OUTPUT_FORMATS:
            raise InputError(f"`output_format` must be `rgba` or `mask`, not {clip(scrub(repr(output_format)), 60)}."
                             f"\n  `rgba`: the image with a transparent background; `mask`: the foreground mask.")
        params = BackgroundParams(output_format, number_param(fields, "image_size", None, int, 1))
        return Call(images, many, params, self.batch_size(fields))

    def finish(self, outputs: List[Any], call: Call) -> Any:
        return super().finish([cutout(image, mask, call.params.output_format)
                               for image, mask in zip(call.items, outputs)], call)
