"""image-segmentation through transformers (the task: :mod:`mc_jupyter.tasks.image_segmentation`).

Two kinds of model, told apart by their config.json:

- **SAM** (``SamModel``, e.g. ``facebook/sam-vit-base``; model-compose runs SAM through Ultralytics). With
  ``box_prompt``: one mask per box (``multimask_output=False``), scored by SAM's predicted IoU, as
  ``SamProcessor`` + ``SamModel`` + ``post_process_masks`` give it. Without: SAM's automatic mask
  generation (transformers' ``mask-generation`` pipeline, whose last step needs torchvision, written out
  here): a 32×32 grid of point prompts, three masks each; kept when the predicted IoU reaches
  ``min_confidence`` and the mask is stable (stability score > 0.95), then box non-maximum suppression
  (IoU 0.7).
- **semantic segmentation** (``*ForSemanticSegmentation``: SegFormer, DPT, MobileViT, BEiT...; e.g.
  ``nvidia/segformer-b0-finetuned-ade-512-512``): one segment per class present, as
  ``post_process_semantic_segmentation`` labels the pixels; its score is the class's mean probability
  over its pixels, its ``label`` the class name. A box prompt needs SAM.
"""

from __future__ import annotations

from typing import Any, Dict, List

from ..errors import InputError
from ..tasks.image_segmentation import ImageSegmentationTask, Segment, SegmentationParams, mask_box
from .hf_vision_common import VisionDriver, by_size, has_head, nms, upsampled, wrong_model
from .sources import ModelSource

POINTS_PER_SIDE = 32           # SAM's automatic grid (its paper's and transformers' pipeline's default)
POINTS_PER_BATCH = 64          # point prompts through the mask decoder at once
STABILITY_THRESHOLD = 0.95     # SAM's stability score: IoU of the mask cut at logit +1 and at -1
STABILITY_OFFSET = 1.0
MASKS_NMS_THRESHOLD = 0.7      # two automatic masks whose boxes overlap more are one object
UPSCALE_CHUNK = 16             # low-resolution masks brought to the image's size at once (memory)


class ImageSegmentation(VisionDriver, ImageSegmentationTask):
    """``image:`` (one or a list), an optional ``box_prompt`` -> ``{segments, width, height}``."""

    kind: str      # "sam" or "semantic"

    def choose_model(self, model_json: Dict[str, Any], source: ModelSource) -> None:
        if model_json.get("model_type") == "sam":
            self.kind, self.auto_class, self.processor_class = "sam", "SamModel", "AutoProcessor"
        elif has_head(model_json, "ForSemanticSegmentation"):
            self.kind, self.auto_class = "semantic", "AutoModelForSemanticSegmentation"
        else:
            raise wrong_model(source, model_json, self.task, "SAM or a semantic segmentation model "
                              "(`*ForSemanticSegmentation`)", "facebook/sam-vit-base or "
                              "nvidia/segformer-b0-finetuned-ade-512-512")

    def generate(self, images: List[Any], params: SegmentationParams) -> List[List[Segment]]:
        if self.kind == "semantic":
            if params.box_prompts:
                raise InputError(f"`box_prompt` steers SAM, but this component's model is a semantic segmentation "
                                 f"model (`{self.model.config.architectures[0]}`).\n  Leave `box_prompt` out to get "
                                 f"a segment per class, or use a SAM model such as facebook/sam-vit-base.")
            return by_size(images, self.classes)
        if params.box_prompts:
            return self.prompted(images, params.box_prompts)
        return [self.everything(image, params.min_confidence) for image in images]

    # -- SAM with box prompts ---------------------------------------------------------------------
    def prompted(self, images: List[Any], prompts: Any) -> List[List[Segment]]:
        import torch

        corners = [[p["x"], p["y"], p["x"] + p["width"], p["y"] + p["height"]] for p in prompts]
        inputs = self.processor(images=images, input_boxes=[corners] * len(images), return_tensors="pt")
        with torch.inference_mode():
            outputs = self.model(**self.on_model(inputs), multimask_output=False)
        masks = self.processor.image_processor.post_process_masks(
            outputs.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"])
        scores = outputs.iou_scores.float().cpu()
        return [[Segment(masks[i][j, 0].numpy(), float(scores[i, j, 0]), prompt_index=j) for j in range(len(corners))]
                for i in range(len(images))]

    # -- SAM's automatic mask generation --------------------------------------------------------------
    def everything(self, image: Any, min_confidence: float) -> List[Segment]:
        import torch

        inputs = self.processor(images=[image], return_tensors="pt")
        pixels = self.on_model(inputs)["pixel_values"]
        with torch.inference_mode():
            embeddings = self.model.get_image_embeddings(pixels)
        points = self.grid(image, inputs["reshaped_input_sizes"][0].tolist())
        masks: List[Any] = []
        scores: List[float] = []
        for start in range(0, len(points), POINTS_PER_BATCH):
            batch = points[start:start + POINTS_PER_BATCH]
            with torch.inference_mode():
                out = self.model(image_embeddings=embeddings, multimask_output=True,
                                 input_points=batch[None, :, None, :].to(self.model.device, self.model.dtype),
                                 input_labels=torch.ones(1, len(batch), 1, dtype=torch.long, device=self.model.device))
            low = out.pred_masks[0].flatten(0, 1).float().cpu()        # (points x 3, h, w) logits
            iou = out.iou_scores[0].flatten().float().cpu()
            confident = iou >= min_confidence    # cheap to test at low resolution: only these are upscaled
            low, iou = low[confident], iou[confident]
            for chunk in range(0, len(low), UPSCALE_CHUNK):
                logits = self.processor.image_processor.post_process_masks(
                    [low[chunk:chunk + UPSCALE_CHUNK, None]], inputs["original_sizes"], inputs["reshaped_input_sizes"],
                    binarize=False)[0][:, 0]
                stable = stability(logits) > STABILITY_THRESHOLD
                masks += list((logits[stable] > 0).numpy())
                scores += iou[chunk:chunk + UPSCALE_CHUNK][stable].tolist()
        return self.distinct(masks, scores)

    @staticmethod
    def grid(image: Any, resized: List[int]) -> Any:
        """SAM's point grid over the image, in the resized image's pixels (where SAM's prompts live)."""
        import torch

        steps = (torch.arange(POINTS_PER_SIDE, dtype=torch.float32) + 0.5) / POINTS_PER_SIDE
        ys, xs = torch.meshgrid(steps * resized[0], steps * resized[1], indexing="ij")
        return torch.stack([xs.flatten(), ys.flatten()], dim=1)

    @staticmethod
    def distinct(masks: List[Any], scores: List[float]) -> List[Segment]:
        """The masks left after box non-maximum suppression (SAM's automatic generator's last step)."""
        import torch

        found = [(mask, score, mask_box(mask)) for mask, score in zip(masks, scores)]
        found = [f for f in found if f[2] is not None]
        if not found:
            return []
        boxes = torch.tensor([[b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"]] for _, _, b in found],
                             dtype=torch.float32)
        kept = nms(boxes, torch.tensor([s for _, s, _ in found]), MASKS_NMS_THRESHOLD)
        return [Segment(found[i][0], found[i][1]) for i in kept.tolist()]

    # -- semantic segmentation -------------------------------------------------------------------
    def classes(self, images: List[Any]) -> List[List[Segment]]:
        import torch

        names = self.class_names()
        with torch.inference_mode():
            logits = self.model(**self.on_model(self.processor(images=images, return_tensors="pt"))).logits
        out = []
        for logit, image in zip(logits.float().cpu(), images):
            scores = upsampled(logit, image)
            probabilities, labels = scores.softmax(0), scores.argmax(0)
            segments = []
            for c in labels.unique().tolist():
                mask = labels == c
                segments.append(Segment(mask.numpy(), float(probabilities[c][mask].mean()),
                                        label=names[c] if c < len(names) else None))
            out.append(segments)
        return out


def stability(logits: Any, threshold: float = 0.0, offset: float = STABILITY_OFFSET) -> Any:
    """SAM's stability score per mask: the IoU of the mask cut at ``threshold + offset`` and at
    ``threshold - offset`` (a mask that barely changes is stable)."""
    inner = (logits > threshold + offset).flatten(1).sum(1).float()
    outer = (logits > threshold - offset).flatten(1).sum(1).float()
    return inner / outer.clamp(min=1)

