"""object-detection through transformers (the task: :mod:`mc_jupyter.tasks.object_detection`).

model-compose runs YOLO through Ultralytics; here any ``*ForObjectDetection`` model of transformers runs:
YOLOS (``hustvl/yolos-tiny``), RT-DETR (``PekingU/rtdetr_r18vd``), DETR and its kin where their backbone
needs no timm. As the model card shows: the image processor, the model, then the processor's
``post_process_object_detection`` with ``min_confidence`` as its threshold; then model-compose's steps
that transformers leaves out: the ``labels`` filter, non-maximum suppression (per class unless
``agnostic_nms``) and ``max_object_count``.
"""

from __future__ import annotations

from typing import Any, Dict, List

from ..tasks.object_detection import Detection, DetectionParams, ObjectDetectionTask
from .hf_vision_common import VisionDriver, by_size, has_head, nms, wrong_model
from .sources import ModelSource


class ObjectDetection(VisionDriver, ObjectDetectionTask):
    """``image:`` (one or a list) -> ``{objects, width, height}``."""

    auto_class = "AutoModelForObjectDetection"

    def choose_model(self, model_json: Dict[str, Any], source: ModelSource) -> None:
        if not has_head(model_json, "ForObjectDetection"):
            raise wrong_model(source, model_json, self.task, "an object detector (`*ForObjectDetection`)",
                              "hustvl/yolos-tiny or PekingU/rtdetr_r18vd")

    def after_load(self) -> None:
        self.labels = self.class_names()

    def generate(self, images: List[Any], params: DetectionParams) -> List[List[Detection]]:
        return by_size(images, lambda group: self.detect(group, params))

    def detect(self, images: List[Any], params: DetectionParams) -> List[List[Detection]]:
        import torch

        inputs = self.on_model(self.processor(images=images, return_tensors="pt"))
        with torch.inference_mode():
            outputs = self.model(**inputs)
        found = self.processor.post_process_object_detection(
            outputs, threshold=params.min_confidence, target_sizes=[(image.height, image.width) for image in images])
        return [self.select(result, params) for result in found]

    @staticmethod
    def select(result: Dict[str, Any], params: DetectionParams) -> List[Detection]:
        """One image's post-processed boxes through the class filter, suppression and the count."""
        import torch

        boxes, scores, labels = result["boxes"].float().cpu(), result["scores"].float().cpu(), result["labels"].cpu()
        if params.label_ids is not None:
            wanted = torch.isin(labels, torch.tensor(params.label_ids, dtype=labels.dtype))
            boxes, scores, labels = boxes[wanted], scores[wanted], labels[wanted]
        kept = nms(boxes, scores, params.iou_threshold, None if params.agnostic_nms else labels)
        return [Detection(tuple(boxes[i].tolist()), float(scores[i]), int(labels[i]))
                for i in kept[:params.max_object_count].tolist()]
