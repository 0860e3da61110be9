"""image-upscale: ``image:`` (one or a list) -> the image ``params.scale`` times larger (a list for a list).

The backend upscales by its ``native_scale``; a different ``scale`` resizes its output with Lanczos
to ``int(size * scale)``, as Real-ESRGAN's ``--outscale`` does, and an input's transparency is put
back, resized. ``tile_size`` (default 256, 0 for none) bounds the memory a network takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..catalog import Task
from ..errors import InputError
from ..secrets import scrub
from .base import Call, ModelTask, number_param, param
from .image_to_text import image_items

TILE_SIZE = 256


@dataclass(frozen=True)
class UpscaleParams:
    scale: float
    tile_size: int = TILE_SIZE


class ImageUpscaleTask(ModelTask):
    """Backends fill :meth:`load` (setting ``native_scale``) and :meth:`generate` (each image at the
    backend's own scale)."""

    task = Task.IMAGE_UPSCALE
    default_batch_size = 1
    native_scale: Optional[float] = None     # the backend's own scale, set at load
    backend_attributes = ("native_scale", "default_batch_size")

    def prepare(self, fields: Dict[str, Any]) -> Call:
        images, many = image_items(fields, self.task)
        scale = positive_scale(param(fields, "scale", self.native_scale))
        for image in images:
            if int(image.width * scale) < 1 or int(image.height * scale) < 1:
                raise InputError(f"`params.scale: {scale:g}` makes the {image.width}×{image.height} image "
                                 f"{int(image.width * scale)}×{int(image.height * scale)} pixels, an empty image.\n  "
                                 f"Give a larger scale (the network's own is {self.native_scale}).")
        tile = number_param(fields, "tile_size", TILE_SIZE, int, 0) or 0
        return Call(images, many, UpscaleParams(scale, tile), self.batch_size(fields))

    def finish(self, outputs: List[Any], call: Call) -> Any:
        return super().finish([at_scale(up, image, call.params.scale) for up, image in zip(outputs, call.items)], call)


def positive_scale(value: Any) -> float:
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = 0.0
    if isinstance(value, bool) or not scale > 0:
        raise InputError(f"`params.scale` must be a positive number, not {scrub(repr(value))}.\n  "
                         f"Write e.g. `scale: 4`.")
    return scale


def at_scale(upscaled: Any, original: Any, scale: float) -> Any:
    """The output at exactly ``scale`` times the input (Lanczos when the network's scale differs), with the
    input's transparency, resized, put back."""
    from PIL import Image
    size = (int(original.width * scale), int(original.height * scale))
    if upscaled.size != size:
        upscaled = upscaled.resize(size, Image.LANCZOS)
    if "A" in original.getbands() or "transparency" in original.info:
        upscaled = upscaled.convert("RGBA")
        upscaled.putalpha(original.convert("RGBA").getchannel("A").resize(size, Image.LANCZOS))
    return upscaled
