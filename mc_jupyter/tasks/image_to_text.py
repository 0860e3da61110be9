"""image-to-text: ``image:`` (one or a list) and an optional ``prompt:`` -> a caption (a list for a list).

A ``prompt:`` is one text prefix every caption continues (conditional captioning). The generation
parameters are those of text-generation (:class:`~mc_jupyter.tasks.text_generation.GenerationParams`;
without ``max_output_length`` a caption has at most 50 tokens); the backend turns them into its own
``generate`` arguments once per action (:meth:`ImageToTextTask.generation_arguments`: a ``seed`` seeds
once, not per batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..catalog import Task
from ..errors import InputError
from ..media import load_image
from .base import Call, ModelTask, single_or_list
from .text_generation import GenerationParams

DEFAULT_CAPTION_TOKENS = 50   # a caption is a sentence: without `max_output_length`, stop here


def image_items(fields: Dict[str, Any], task: str, mode: Optional[str] = None) -> tuple[List[Any], bool]:
    """The action's ``image:`` (one or a list) as PIL images (from anything ``as image`` reads), converted to
    ``mode`` when given, and whether it was a list."""
    image = fields.get("image")
    if image is None:
        raise InputError(f"{task} got no image: give `image:`, e.g. `image: ${{input.image as image}}`.")
    items, many = single_or_list(image)
    images = [load_image(item) for item in items]
    return ([im.convert(mode) for im in images] if mode else images), many


def named_image(value: Any, where: str) -> Any:
    """An RGB PIL image from anything :func:`~mc_jupyter.media.load_image` reads; its error names the field
    (``where``: `image[2]`) it came from."""
    try:
        return load_image(value).convert("RGB")
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


@dataclass(frozen=True)
class CaptionParams:
    prompt: Optional[str]      # the prefix every caption continues, or None
    generation: Any            # the backend's ``generate`` arguments


class ImageToTextTask(ModelTask):
    """Backends fill :meth:`load`, :meth:`generation_arguments` and :meth:`generate` (a caption per image,
    or a list of ``num_return_sequences`` captions)."""

    task = Task.IMAGE_TO_TEXT
    default_batch_size = 8

    def prepare(self, fields: Dict[str, Any]) -> Call:
        images, many = image_items(fields, self.task, "RGB")
        prompt = fields.get("prompt", fields.get("text"))
        if prompt is not None and not isinstance(prompt, str):
            raise InputError(f"image-to-text takes one `prompt:` text for every image, not a "
                             f"{type(prompt).__name__}.\n  Give a text such as `a photo of`, or leave it out.")
        generation = GenerationParams.read(fields, DEFAULT_CAPTION_TOKENS)
        params = CaptionParams(prompt or None, self.generation_arguments(generation))
        return Call(images, many, params, self.batch_size(fields))

    def generation_arguments(self, generation: GenerationParams) -> Any:
        """The generation parameters as the backend's ``generate`` arguments (called once per action)."""
        return generation
