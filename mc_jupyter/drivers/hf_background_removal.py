"""image-background-removal through transformers (the task: :mod:`mc_jupyter.tasks.background_removal`).

Two kinds of model, told apart by their config.json:

- **BiRefNet-style** (``ZhengPeng7/BiRefNet``, ``briaai/RMBG-2.0``: model-compose's): repository code
  loaded by ``AutoModelForImageSegmentation`` with ``trust_remote_code: true``. As model-compose: the
  image resized to ``params.image_size`` (1024) a side, ImageNet-normalised, the last output through a
  sigmoid. (Their code imports timm and kornia, and torchvision: install them where you run one.)
- **semantic segmentation** with a ``background`` class (``*ForSemanticSegmentation``, e.g.
  ``mattmdjaga/segformer_b2_clothes``, a SegFormer that separates people from the background): no
  repository code. The foreground is 1 − P(background), from the logits brought to the image's size
  (bilinear, as ``post_process_semantic_segmentation``) through a softmax.

Either way the mask is the probability times 255, cut to whole levels, at the image's size.
"""

from __future__ import annotations

from typing import Any, Dict, List

from ..errors import ModelLoadError
from ..tasks.background_removal import BackgroundParams, BackgroundRemovalTask
from .hf_vision_common import VisionDriver, by_size, has_head, upsampled, wrong_model
from .sources import ModelSource

REMOTE_SIZE = 1024                                # model-compose's params.image_size
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class BackgroundRemoval(VisionDriver, BackgroundRemovalTask):
    """``image:`` (one or a list) -> the RGBA cutout, or the mask."""

    kind: str              # "remote" or "semantic"
    background: int        # the semantic model's background class

    def choose_model(self, model_json: Dict[str, Any], source: ModelSource) -> None:
        if "AutoModelForImageSegmentation" in (model_json.get("auto_map") or {}):
            if not self.config.trust_remote_code:
                raise ModelLoadError(f"`{source.location}` is a `{model_json.get('architectures', ['?'])[0]}` model whose "
                                     f"code comes with it (not part of transformers).\n  Add `trust_remote_code: "
                                     f"true` to the component if you trust that repository's code.")
            self.kind, self.auto_class, self.processor_class = "remote", "AutoModelForImageSegmentation", None
            return
        if not has_head(model_json, "ForSemanticSegmentation"):
            raise wrong_model(source, model_json, self.task, "a background remover (BiRefNet-style, or a semantic "
                              "segmentation model with a `background` class)",
                              "mattmdjaga/segformer_b2_clothes, or ZhengPeng7/BiRefNet with `trust_remote_code: true`")
        labels = {int(i): str(name) for i, name in (model_json.get("id2label") or {}).items()}
        background = [i for i, name in labels.items() if name.strip().lower() == "background"]
        if not background:
            raise ModelLoadError(f"`{source.location}` has no `background` class (its classes: "
                                 f"{', '.join(list(labels.values())[:12]) or 'none'}{', ...' if len(labels) > 12 else ''})"
                                 f": background removal keeps every pixel that is not background.\n  Give a model "
                                 f"with one, such as mattmdjaga/segformer_b2_clothes.")
        self.kind, self.background, self.auto_class = "semantic", background[0], "AutoModelForSemanticSegmentation"

    def generate(self, images: List[Any], params: BackgroundParams) -> List[Any]:
        if self.kind == "remote":
            return self.remote(images, params.image_size or REMOTE_SIZE)
        return by_size(images, lambda group: self.semantic(group, params.image_size))

    def remote(self, images: List[Any], side: int) -> List[Any]:
        import numpy as np
        import torch
        from PIL import Image

        mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
        batch = torch.stack([torch.from_numpy(((np.asarray(image.resize((side, side), Image.BILINEAR), np.float32)
                                                / 255.0 - mean) / std).transpose(2, 0, 1)) for image in images])
        with torch.inference_mode():
            outputs = self.model(batch.to(self.model.device, self.model.dtype))
        logits = outputs[-1] if isinstance(outputs, (list, tuple)) else getattr(outputs, "logits", outputs)
        probabilities = torch.sigmoid(logits.float()).squeeze(1).cpu()
        return [as_mask(p).resize(image.size, Image.BILINEAR) for p, image in zip(probabilities, images)]

    def semantic(self, images: List[Any], side: Any) -> List[Any]:
        import torch

        size = {"size": {"height": side, "width": side}} if side else {}
        inputs = self.on_model(self.processor(images=images, return_tensors="pt", **size))
        with torch.inference_mode():
            logits = self.model(**inputs).logits.float().cpu()
        masks = []
        for logit, image in zip(logits, images):
            masks.append(as_mask(1.0 - upsampled(logit, image).softmax(0)[self.background]))
        return masks


def as_mask(probability: Any) -> Any:
    """A 2-D probability tensor as model-compose's mask: times 255, cut to whole levels, mode ``L``."""
    import torch
    from PIL import Image

    return Image.fromarray((probability * 255.0).clamp(0, 255).to(torch.uint8).numpy())
