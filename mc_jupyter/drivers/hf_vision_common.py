"""What the dense-vision backends share (object detection, segmentation, depth, background removal).

:class:`VisionDriver` is :class:`~mc_jupyter.drivers.hf_common.HFDriver` with images in place of text: the
model's ``config.json`` is read first (as transformers reads it: the hub cache, revision, token; no
repository code runs), a backend's :meth:`~VisionDriver.choose_model` picks the transformers class from it
or refuses the model with what to give instead, and the image processor takes the tokenizer's place.
The rest is small tools the backends need: inputs on the model's device and dtype, batches split by
image size (so a batch gives what each image gives alone), and non-maximum suppression in torch
(torchvision, whose ``nms`` transformers would use, is not installed here).
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import ModelLoadError
from .hf_common import HFDriver, _from_pretrained
from .sources import ModelSource, processor_kwargs


class ConfigJson:
    """A model's ``config.json`` as a dict, through ``_from_pretrained`` (its errors, the offline cache)."""

    @staticmethod
    def from_pretrained(location: str, **kwargs: Any) -> Dict[str, Any]:
        from transformers import PretrainedConfig

        return PretrainedConfig.get_config_dict(location, **kwargs)[0]


def read_config(source: ModelSource) -> Dict[str, Any]:
    kwargs = {k: v for k, v in processor_kwargs(source).items() if k != "trust_remote_code"}
    return _from_pretrained(ConfigJson, source, kwargs)


def model_name(model_json: Dict[str, Any]) -> str:
    """What a config.json says the model is: its first architecture, else its ``model_type``."""
    return (model_json.get("architectures") or [None])[0] or model_json.get("model_type") or "unknown"


def has_head(model_json: Dict[str, Any], *heads: str) -> bool:
    return any(arch.endswith(heads) for arch in model_json.get("architectures") or [])


def wrong_model(source: ModelSource, model_json: Dict[str, Any], task: str, wanted: str, example: str) -> ModelLoadError:
    return ModelLoadError(f"`{source.location}` is a `{model_name(model_json)}` model, not {wanted}: {task} cannot "
                          f"run it.\n  Give a model such as {example}, or the task this model does.")


class VisionDriver(HFDriver):
    """An HF backend over images: ``choose_model`` sets ``auto_class`` (and ``processor_class``, None for a
    model without a processor) from the model's config.json; ``processor`` is loaded in the tokenizer's place."""

    processor_class: Optional[str] = "AutoImageProcessor"

    def choose_model(self, model_json: Dict[str, Any], source: ModelSource) -> None:
        """Check ``model_json`` (the model's config.json) and set the classes that load it; a ModelLoadError
        names a model this task cannot run."""
        raise NotImplementedError

    def _load_tokenizer(self, source: ModelSource) -> Any:
        # HFDriver's first step, before the weights: the class to load them with is decided here
        import transformers

        model_json = read_config(source)
        self.choose_model(model_json, source)
        if model_json.get("use_timm_backbone") and importlib.util.find_spec("timm") is None:
            raise ModelLoadError(f"`{source.location}` is a `{model_name(model_json)}` model whose backbone comes "
                                 f"from timm, which is not installed.\n  Install it (`pip install timm`), or give a "
                                 f"model with a transformers backbone, such as hustvl/yolos-tiny or "
                                 f"PekingU/rtdetr_r18vd.")
        self.processor = None
        if self.processor_class is not None:
            self.processor = _from_pretrained(getattr(transformers, self.processor_class), source,
                                              processor_kwargs(source))
        return None

    def unload(self) -> None:
        if hasattr(self, "processor"):
            del self.processor
        super().unload()

    def on_model(self, inputs: Any) -> Dict[str, Any]:
        """A processor's output on the model's device, its floating tensors in the model's dtype."""
        return {k: (v.to(self.model.device, self.model.dtype) if v.is_floating_point() else v.to(self.model.device))
                if hasattr(v, "is_floating_point") else v for k, v in dict(inputs).items()}

    def class_names(self) -> List[str]:
        """The model's class names by index (``config.id2label``)."""
        id2label = self.model.config.id2label or {}
        return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(len(id2label))]


def by_size(images: Sequence[Any], run: Callable[[List[Any]], List[Any]]) -> List[Any]:
    """``run`` over the images of each size in turn (a processor resizes a batch alike but pads or keeps
    aspect ratios, which would make a batched image differ from the same image alone); outputs in order."""
    groups: Dict[Any, List[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.size, []).append(i)
    outputs: List[Any] = [None] * len(images)
    for indices in groups.values():
        for i, output in zip(indices, run([images[i] for i in indices])):
            outputs[i] = output
    return outputs


def upsampled(logits: Any, image: Any) -> Any:
    """One image's ``[classes, h, w]`` logits at the image's own size (bilinear, as transformers'
    ``post_process_semantic_segmentation``)."""
    import torch.nn.functional as F
    return F.interpolate(logits[None], size=(image.height, image.width), mode="bilinear", align_corners=False)[0]


def nms(boxes: Any, scores: Any, iou_threshold: float, classes: Optional[Any] = None) -> Any:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms`` (``batched_nms`` with ``classes``): the
    indices of the boxes kept, best score first; a box whose IoU with a kept, better box exceeds
    ``iou_threshold`` is dropped. With ``classes``, boxes of different classes never suppress each other.
    ``boxes`` are (N, 4) corners x1, y1, x2, y2."""
    import torch

    boxes = boxes.float()
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if classes is not None:   # move each class's boxes apart, so no two classes overlap
        span = float(boxes.max() - boxes.min()) + 1.0
        boxes = boxes + (classes.to(boxes.dtype) * span)[:, None]
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = torch.sort(scores.float(), descending=True, stable=True).indices
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        width = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        height = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = width * height
        union = areas[i] + areas - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long)
