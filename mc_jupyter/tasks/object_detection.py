"""object-detection: ``image:`` (one or a list) -> ``{objects, width, height}`` per image (a list for a list).

Each object is ``{label, label_id, score, bounding_box: {x, y, width, height}}`` in pixels of the input
image, best score first: model-compose 0.4.120's result. The action's keys are model-compose's:
``labels`` (keep only these class names), ``max_object_count`` (300), ``bounding_box_padding`` (a ratio
of the box's size added on each side, 0.0), ``batch_size`` (1) and ``params.min_confidence`` (0.25),
``params.iou_threshold`` (0.7: non-maximum suppression drops a box overlapping a better one of its class
by more than this) and ``params.agnostic_nms`` (false: suppression across classes when true).

A backend's :meth:`~ObjectDetectionTask.generate` returns, per image, its :class:`Detection` list with the
threshold, the class filter, suppression and the count already applied, in that order (as Ultralytics
does); this task checks the parameters and turns boxes into model-compose's integer pixel boxes.
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


@dataclass(frozen=True)
class Detection:
    """One box as a backend finds it: corners in pixels (x1, y1, x2, y2), score, class index."""

    box: Tuple[float, float, float, float]
    score: float
    label_id: int


@dataclass(frozen=True)
class DetectionParams:
    min_confidence: float = 0.25
    iou_threshold: float = 0.7
    agnostic_nms: bool = False
    max_object_count: int = 300
    bounding_box_padding: float = 0.0
    label_ids: Optional[Tuple[int, ...]] = None   # the classes kept (``labels:`` resolved), None for all


def fraction_param(fields: Dict[str, Any], name: str, default: float) -> float:
    """A parameter between 0 and 1 (a confidence, an IoU); anything else is an InputError naming it."""
    value = number_param(fields, name, default, float)
    if not 0.0 <= value <= 1.0:
        raise InputError(f"`params.{name}` must be between 0 and 1, not {value:g}.\n  Write e.g. "
                         f"`{name}: {default}`.")
    return value


def pixel_box(x1: float, y1: float, x2: float, y2: float, width: int, height: int,
              padding: float = 0.0) -> Dict[str, int]:
    """Corners as model-compose's ``{x, y, width, height}``: grown by ``padding`` times the box's size on each
    side, cut to whole pixels (``int``, as model-compose does) and clipped to the image."""
    if padding > 0.0:
        grow_x, grow_y = (x2 - x1) * padding, (y2 - y1) * padding
        x1, y1, x2, y2 = x1 - grow_x, y1 - grow_y, x2 + grow_x, y2 + grow_y
    left, top = max(0, int(x1)), max(0, int(y1))
    right, bottom = min(width, int(x2)), min(height, int(y2))
    return {"x": left, "y": top, "width": right - left, "height": bottom - top}


class ObjectDetectionTask(ModelTask):
    """Backends fill :meth:`load` (setting ``labels``, the class names by index) and :meth:`generate`."""

    task = Task.OBJECT_DETECTION
    default_batch_size = 1          # model-compose's
    #: The class names by index (set by the backend at load).
    labels: Optional[List[str]] = None
    backend_attributes = ("labels", "default_batch_size")

    def prepare(self, fields: Dict[str, Any]) -> Call:
        images, many = image_items(fields, self.task, "RGB")
        params = DetectionParams(
            min_confidence=fraction_param(fields, "min_confidence", 0.25),
            iou_threshold=fraction_param(fields, "iou_threshold", 0.7),
            agnostic_nms=flag_param(fields, "agnostic_nms", False),
            max_object_count=number_param(fields, "max_object_count", 300, int, 1),
            bounding_box_padding=number_param(fields, "bounding_box_padding", 0.0, float, 0.0),
            label_ids=self.label_ids(param(fields, "labels")))
        return Call(images, many, params, self.batch_size(fields))

    def label_ids(self, labels: Any) -> Optional[Tuple[int, ...]]:
        """``labels:`` (a name or a list of names) as class indices; a name the model lacks is an InputError."""
        if labels is None or labels == []:
            return None
        names = [labels] if isinstance(labels, str) else labels
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, int)) for n in names):
            raise InputError(f"`labels` must be a class name or a list of them, not "
                             f"{clip(scrub(repr(labels)), 80)}.\n  Write e.g. `labels: [person, dog]`.")
        index = {name: i for i, name in enumerate(self.labels or [])}
        unknown = [str(n) for n in names if str(n) not in index]
        if unknown:
            known = ", ".join(self.labels or []) or "none"
            raise InputError(f"`labels`: {', '.join(f'`{clip(scrub(n), 40)}`' for n in unknown)} "
                             f"{'is not a class' if len(unknown) == 1 else 'are not classes'} of this model.\n  "
                             f"Its classes: {clip(known, 600)}.")
        return tuple(index[str(n)] for n in names)

    def finish(self, outputs: List[Sequence[Detection]], call: Call) -> Any:
        results = [self.result(found, image.width, image.height, call.params)
                   for found, image in zip(outputs, call.items)]
        return super().finish(results, call)

    def result(self, found: Sequence[Detection], width: int, height: int, params: DetectionParams) -> Dict[str, Any]:
        names = self.labels or []
        objects = [{"label": names[d.label_id] if 0 <= d.label_id < len(names) else None,
                    "label_id": int(d.label_id), "score": float(d.score),
                    "bounding_box": pixel_box(*d.box, width, height, params.bounding_box_padding)}
                   for d in sorted(found, key=lambda d: -d.score)]
        return {"objects": objects, "width": width, "height": height}
