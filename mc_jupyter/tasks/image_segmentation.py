"""image-segmentation: ``image:`` (one or a list) -> ``{segments, width, height}`` per image (a list for a list).

Each segment is ``{score, bounding_box: {x, y, width, height}, area, mask}``, best score first:
model-compose 0.4.120's result. ``mask`` is the segment's pixels as a black-and-white (mode ``L``, 0/255)
image of the input's size (model-compose's PNG; left out with ``return_mask: false``); a box-prompted
segment carries ``prompt_index`` (which ``box_prompt`` it answers), a segment of a semantic model its
class ``label``.

The keys are model-compose's: ``box_prompt`` (``{x, y, width, height}`` in pixels, or a list of them: the
same boxes for every image), ``max_segment_count`` (100), ``return_mask`` (true), ``batch_size`` (1),
``params.min_confidence`` (0.5: a segment scoring less is dropped) and ``params.min_area`` (pixels).

A backend's :meth:`~ImageSegmentationTask.generate` returns, per image, its :class:`Segment` list; this
task drops the low-scoring, small and empty ones, sorts, cuts to the count and draws the boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..catalog import Task
from ..config.positions import clip
from ..errors import InputError
from ..secrets import scrub
from .base import Call, ModelTask, flag_param, number_param, param
from .image_to_text import image_items
from .object_detection import fraction_param

BOX_KEYS = ("x", "y", "width", "height")


@dataclass
class Segment:
    """One segment as a backend finds it: a boolean numpy mask of the image's size and its score."""

    mask: Any
    score: float
    prompt_index: Optional[int] = None
    label: Optional[str] = None


@dataclass(frozen=True)
class SegmentationParams:
    box_prompts: Optional[Tuple[Dict[str, int], ...]] = None
    min_confidence: float = 0.5
    min_area: Optional[int] = None
    max_segment_count: int = 100
    return_mask: bool = True


def box_prompts(value: Any) -> Optional[Tuple[Dict[str, int], ...]]:
    """``box_prompt:`` (one ``{x, y, width, height}`` or a list, e.g. a detector's ``bounding_box`` values)
    as whole-pixel boxes; anything else is an InputError naming the entry."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        return None
    boxes = []
    for i, item in enumerate(items):
        name = f"box_prompt[{i}]" if isinstance(value, (list, tuple)) else "box_prompt"
        where = f"`{name}`"
        if not isinstance(item, dict):
            raise InputError(f"{where} must be a mapping `{{x, y, width, height}}` in pixels, not "
                             f"{clip(scrub(repr(item)), 80)}.\n  Write e.g. `box_prompt: {{x: 10, y: 20, width: 100, "
                             f"height: 80}}`, or a list of such boxes.")
        missing = [k for k in BOX_KEYS if k not in item]
        if missing:
            raise InputError(f"{where} lacks {', '.join(f'`{k}`' for k in missing)}.\n  A box prompt is "
                             f"`{{x, y, width, height}}` in pixels (x, y: its top-left corner).")
        box = {k: _as_float(item[k]) for k in BOX_KEYS}
        bad = next((k for k in BOX_KEYS if box[k] is None), None)
        if bad:
            raise InputError(f"`{name}.{bad}` must be a number of pixels, not {clip(scrub(repr(item[bad])), 60)}.")
        if box["width"] <= 0 or box["height"] <= 0:
            raise InputError(f"{where} is {box['width']:g}×{box['height']:g} pixels: a box prompt needs a "
                             f"positive width and height.")
        boxes.append({k: int(v) for k, v in box.items()})
    return tuple(boxes)


def _as_float(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def mask_box(mask: Any) -> Optional[Dict[str, int]]:
    """The smallest box holding a boolean mask's pixels (model-compose's), or None for an empty mask."""
    import numpy as np

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return {"x": int(cols[0]), "y": int(rows[0]), "width": int(cols[-1] - cols[0] + 1),
            "height": int(rows[-1] - rows[0] + 1)}


class ImageSegmentationTask(ModelTask):
    """Backends fill :meth:`load` and :meth:`generate` (a :class:`Segment` list per image)."""

    task = Task.IMAGE_SEGMENTATION
    default_batch_size = 1          # model-compose's

    def prepare(self, fields: Dict[str, Any]) -> Call:
        images, many = image_items(fields, self.task, "RGB")
        params = SegmentationParams(
            box_prompts=box_prompts(param(fields, "box_prompt")),
            min_confidence=fraction_param(fields, "min_confidence", 0.5),
            min_area=number_param(fields, "min_area", None, int, 0),
            max_segment_count=number_param(fields, "max_segment_count", 100, int, 1),
            return_mask=flag_param(fields, "return_mask", True))
        return Call(images, many, params, self.batch_size(fields))

    def finish(self, outputs: List[Sequence[Segment]], call: Call) -> Any:
        results = [self.result(found, image.width, image.height, call.params)
                   for found, image in zip(outputs, call.items)]
        return super().finish(results, call)

    def result(self, found: Sequence[Segment], width: int, height: int,
               params: SegmentationParams) -> Dict[str, Any]:
        from PIL import Image

        segments = []
        for segment in found:
            area = int(segment.mask.sum())
            box = mask_box(segment.mask)
            if segment.score < params.min_confidence or box is None or area < (params.min_area or 0):
                continue
            out: Dict[str, Any] = {"score": float(segment.score), "bounding_box": box, "area": area}
            if params.return_mask:
                out["mask"] = Image.fromarray(segment.mask.astype("uint8") * 255)   # 2-D uint8: mode L
            if segment.prompt_index is not None:
                out["prompt_index"] = segment.prompt_index
            if segment.label is not None:
                out["label"] = segment.label
            segments.append(out)
        segments.sort(key=lambda s: -s["score"])
        return {"segments": segments[:params.max_segment_count], "width": width, "height": height}
