"""depth-estimation through transformers (the task: :mod:`mc_jupyter.tasks.depth_estimation`).

As model-compose's huggingface driver: ``AutoModelForDepthEstimation`` (Depth Anything, DPT, GLPN...) and
its image processor (``params.image_size`` becomes the processor's ``size``), then ``predicted_depth``
brought to the image's size by bicubic interpolation, as the processor's ``post_process_depth_estimation``
does for DPT and Depth Anything. ``architecture:`` (``dpt``, ``depth-anything``) is checked against the
model's config.json and may be left out.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from ..tasks.depth_estimation import DepthEstimationTask, DepthParams
from .hf_common import checked_architecture
from .hf_vision_common import VisionDriver, by_size, has_head, wrong_model
from .sources import ModelSource

#: ``architecture:`` -> config.json's ``model_type`` (model-compose's words).
ARCHITECTURE_TYPES: Dict[str, Tuple[str, ...]] = {"dpt": ("dpt",), "depth-anything": ("depth_anything",)}


class DepthEstimation(VisionDriver, DepthEstimationTask):
    """``image:`` (one or a list) -> a depth image."""

    auto_class = "AutoModelForDepthEstimation"

    def choose_model(self, model_json: Dict[str, Any], source: ModelSource) -> None:
        if not has_head(model_json, "ForDepthEstimation"):
            raise wrong_model(source, model_json, self.task, "a depth estimator (`*ForDepthEstimation`)",
                              "depth-anything/Depth-Anything-V2-Small-hf or Intel/dpt-large")
        checked_architecture(self.config.architecture, model_json.get("model_type") or "unknown", ARCHITECTURE_TYPES,
                             source.location)

    def generate(self, images: List[Any], params: DepthParams) -> List[Any]:
        return by_size(images, lambda group: self.estimate(group, params))

    def estimate(self, images: List[Any], params: DepthParams) -> List[Any]:
        import torch
        import torch.nn.functional as F

        size = {"size": {"height": params.image_size, "width": params.image_size}} if params.image_size else {}
        inputs = self.on_model(self.processor(images=images, return_tensors="pt", **size))
        with torch.inference_mode():
            predicted = self.model(**inputs).predicted_depth.float()
        if predicted.ndim == 3:
            predicted = predicted[:, None]
        return [F.interpolate(depth[None], size=(image.height, image.width), mode="bicubic",
                              align_corners=False)[0, 0].cpu().numpy() for depth, image in zip(predicted, images)]
