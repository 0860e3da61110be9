"""depth-estimation: ``image:`` (one or a list) -> a depth image per input (a list for a list).

The result is model-compose 0.4.120's: a grey (mode ``L``) image of the input's size, the model's depth
stretched to 0..255 per image (its smallest value black, its largest white), so it shows relative depth,
not metres. Depth Anything and DPT (MiDaS) predict inverse depth, so near is bright; ``invert: true``
turns it round (far is bright). ``params.image_size`` resizes the input to that many pixels a side
before the model (default: the model's own size); ``batch_size`` is 1 unless given.

A backend's :meth:`~DepthEstimationTask.generate` returns, per image, the model's depth as a float numpy
array of the image's size; this task stretches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..catalog import Task
from .base import Call, ModelTask, flag_param, number_param
from .image_to_text import image_items


@dataclass(frozen=True)
class DepthParams:
    invert: bool = False
    image_size: Optional[int] = None      # pixels a side the model sees; None: the processor's own size


def depth_image(depth: Any, invert: bool = False) -> Any:
    """A float depth array as model-compose's grey image: min-max stretched, inverted when asked,
    times 255 and cut to whole levels (a flat map is black)."""
    import numpy as np
    from PIL import Image

    depth = np.asarray(depth, dtype=np.float32)
    low, high = float(depth.min()), float(depth.max())
    scaled = (depth - low) / (high - low) if high > low else np.zeros_like(depth)
    if invert:
        scaled = 1.0 - scaled
    return Image.fromarray(np.clip(scaled * 255.0, 0, 255).astype(np.uint8))


class DepthEstimationTask(ModelTask):
    """Backends fill :meth:`load` and :meth:`generate` (a float depth array per image, at its size)."""

    task = Task.DEPTH_ESTIMATION
    default_batch_size = 1          # model-compose's

    def prepare(self, fields: Dict[str, Any]) -> Call:
        images, many = image_items(fields, self.task, "RGB")
        params = DepthParams(flag_param(fields, "invert", False), number_param(fields, "image_size", None, int, 1))
        return Call(images, many, params, self.batch_size(fields))

    def finish(self, outputs: List[Any], call: Call) -> Any:
        return super().finish([depth_image(depth, call.params.invert) for depth in outputs], call)
