"""image-generation: ``prompt:`` (or ``text:``; one or a list) -> an image, or a list of ``num_images``.

The task reads the parameters (:data:`IMAGE_PARAMS`, numbers checked) and groups the images per
prompt; a backend's :meth:`generate` gives, for each prompt of a batch, its ``num_images`` images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..catalog import Task
from ..errors import InputError
from .base import Call, ModelTask, number_param, param, single_or_list

#: ``params:`` name -> its type (whole numbers at least 1, numbers at least 0, text).
IMAGE_PARAMS: Dict[str, type] = {"width": int, "height": int, "num_inference_steps": int, "guidance_scale": float,
                                 "negative_prompt": str, "num_images": int}


@dataclass
class ImageParams:
    count: int                                  # images per prompt
    values: Dict[str, Any]                      # the IMAGE_PARAMS given, checked
    seed: Optional[int] = None
    backend: Dict[str, Any] = field(default_factory=dict)   # what the backend makes of them, once per action


class ImageGenerationTask(ModelTask):
    """Backends fill :meth:`load`, :meth:`check` (the values as their own arguments) and :meth:`generate`."""

    task = Task.IMAGE_GENERATION
    default_batch_size = 1

    def prepare(self, fields: Dict[str, Any]) -> Call:
        prompt = fields.get("prompt") if fields.get("prompt") is not None else fields.get("text")
        if prompt is None:
            raise InputError("image-generation got no prompt: give `prompt:`, e.g. `prompt: ${input.prompt as text}`.")
        items, many = single_or_list(prompt)
        count = number_param(fields, "num_images", 1, int, 1) or 1
        values: Dict[str, Any] = {}
        for name, cast in IMAGE_PARAMS.items():
            value = param(fields, name)
            if value is not None:
                values[name] = number_param(fields, name, None, cast, 1 if cast is int else 0) \
                    if cast in (int, float) else cast(value)
        params = ImageParams(count, values, number_param(fields, "seed"))
        return Call([str(p) for p in items], many, params, self.batch_size(fields))

    def finish(self, outputs: List[Any], call: Call) -> Any:
        return super().finish([group if call.params.count > 1 else group[0] for group in outputs], call)
