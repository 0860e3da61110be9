"""Dense vision (object detection, segmentation, depth, background removal) against plain transformers on
the same tiny models and pictures; the filters, batching, errors, model-compose's file shape, and the
pictures the renderers draw."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from PIL import Image

import mc_jupyter as mc
from mc_jupyter.display import dense_vision
from mc_jupyter.errors import ConfigError, InputError, ModelLoadError
from mc_jupyter.tasks.object_detection import pixel_box
from tests import tiny_vision as tv

PICTURES = tv.scenes(3)
ODD = tv.scene(7, size=(72, 80))     # another size: a batch holding it runs it on its own


@pytest.fixture(scope="module")
def vision(hub_cache, tmp_path_factory) -> Dict[str, Path]:
    """The tiny vision models' folders by real repo id; the hub cache holds them under those ids."""
    return tv.build_all(tmp_path_factory.mktemp("vision"), hub_cache)


def component(task: str, model: str, image: str = "${input.image as image}", extra: str = "", params: str = "") -> str:
    return f"""
component:
  type: model
  task: {task}
  model: {model}
  device: cpu
  image: {image}{extra}
  params: {{{params}}}
"""


def run(registry, image: Any, **inputs: Any) -> Any:
    return mc.run(inputs={"image": image, **inputs}, registry=registry).output


def registry_state(registry):
    return registry.snapshot(), {cid: id(e.driver) for cid, e in registry.entries.items()}


# ------------------------------------------------------------------------------------------------
# Plain transformers, as the model cards show it


def raw_detections(folder: Path, image: Image.Image, threshold: float) -> Dict[str, torch.Tensor]:
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    processor, model = AutoImageProcessor.from_pretrained(folder), AutoModelForObjectDetection.from_pretrained(folder)
    with torch.no_grad():
        outputs = model.eval()(**processor(images=image, return_tensors="pt"))
    return processor.post_process_object_detection(outputs, threshold=threshold,
                                                   target_sizes=[(image.height, image.width)])[0]


def iou(a: List[float], b: List[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def reference_nms(boxes: List[List[float]], scores: List[float], labels: List[int], threshold: float,
                  agnostic: bool) -> List[int]:
    """Greedy NMS written the plain way: best first, drop what overlaps a kept box (of its class) too much."""
    kept: List[int] = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if all(iou(boxes[i], boxes[k]) <= threshold for k in kept if agnostic or labels[k] == labels[i]):
            kept.append(i)
    return kept


def expected_objects(raw: Dict[str, torch.Tensor], kept: List[int], width: int, height: int,
                     padding: float = 0.0) -> List[Dict[str, Any]]:
    return [{"label": tv.DETECTOR_CLASSES[int(raw["labels"][i])], "label_id": int(raw["labels"][i]),
             "score": pytest.approx(float(raw["scores"][i]), abs=1e-5),
             "bounding_box": pixel_box(*raw["boxes"][i].tolist(), width, height, padding)} for i in kept]


def raw_sam_boxes(folder: Path, image: Image.Image, corners: List[List[int]]):
    from transformers import AutoProcessor, SamModel

    processor, model = AutoProcessor.from_pretrained(folder), SamModel.from_pretrained(folder).eval()
    inputs = processor(images=image, input_boxes=[corners], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs, multimask_output=False)
    masks = processor.image_processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"],
                                                         inputs["reshaped_input_sizes"])[0][:, 0].numpy()
    return masks, outputs.iou_scores[0, :, 0].tolist()


def raw_semantic(folder: Path, image: Image.Image) -> np.ndarray:
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    processor = AutoImageProcessor.from_pretrained(folder)
    model = AutoModelForSemanticSegmentation.from_pretrained(folder).eval()
    with torch.no_grad():
        outputs = model(**processor(images=image, return_tensors="pt"))
    return processor.post_process_semantic_segmentation(outputs, target_sizes=[(image.height, image.width)])[0].numpy()


def raw_depth(folder: Path, image: Image.Image, **processor_kwargs) -> np.ndarray:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    processor, model = AutoImageProcessor.from_pretrained(folder), AutoModelForDepthEstimation.from_pretrained(folder)
    with torch.no_grad():
        outputs = model.eval()(**processor(images=image, return_tensors="pt", **processor_kwargs))
    return processor.post_process_depth_estimation(outputs, target_sizes=[(image.height, image.width)])[0][
        "predicted_depth"].numpy()


def stretched(depth: np.ndarray, invert: bool = False) -> np.ndarray:
    """model-compose's depth image from a float map: min-max to 0..1, inverted if asked, x255, cut."""
    scaled = (depth - depth.min()) / (depth.max() - depth.min())
    return ((1 - scaled if invert else scaled) * 255).astype(np.uint8)


def raw_foreground(folder: Path, image: Image.Image) -> np.ndarray:
    """A semantic model's foreground, 1 - P(background), at the image's size, as model-compose's mask levels."""
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    processor = AutoImageProcessor.from_pretrained(folder)
    model = AutoModelForSemanticSegmentation.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(**processor(images=image, return_tensors="pt")).logits
    up = torch.nn.functional.interpolate(logits, size=(image.height, image.width), mode="bilinear", align_corners=False)
    return ((1 - up.softmax(1)[0, 0]) * 255).clamp(0, 255).to(torch.uint8).numpy()


def raw_birefnet(folder: Path, image: Image.Image, side: int) -> np.ndarray:
    """model-compose's BiRefNet call (its torchvision Resize/ToTensor/Normalize written with PIL and numpy)."""
    from transformers import AutoModelForImageSegmentation

    model = AutoModelForImageSegmentation.from_pretrained(folder, trust_remote_code=True).eval()
    x = np.asarray(image.resize((side, side), Image.BILINEAR), np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1))[None])[-1]
    mask = Image.fromarray((torch.sigmoid(logits)[0, 0] * 255).clamp(0, 255).to(torch.uint8).numpy())
    return np.asarray(mask.resize(image.size, Image.BILINEAR))


# ------------------------------------------------------------------------------------------------
# object-detection


def compose_detector(registry, params: str = "min_confidence: 0.0, iou_threshold: 1.0", extra: str = "",
                     image: str = "${input.image as image}") -> None:
    mc.compose(component("object-detection", tv.YOLOS, image=image, extra=extra, params=params), registry=registry)


def test_detections_equal_the_processors_post_processing_best_first_in_model_composes_shape(registry, vision):
    compose_detector(registry)           # no threshold, no suppression: every box transformers gives
    out = run(registry, PICTURES[0])
    raw = raw_detections(vision[tv.YOLOS], PICTURES[0], 0.0)
    order = sorted(range(len(raw["scores"])), key=lambda i: -float(raw["scores"][i]))
    assert out == {"objects": expected_objects(raw, order, 96, 64), "width": 96, "height": 64}
    assert len(out["objects"]) == 12 and len({o["label"] for o in out["objects"]}) > 1
    assert set(out["objects"][0]) == {"label", "label_id", "score", "bounding_box"}


def test_an_rt_detr_detects_as_its_processor_post_processes_and_batches_equal_one_by_one(registry, vision):
    """RT-DETR (sigmoid class scores, the processor's top-k over queries x classes) through the same driver."""
    mc.compose(component("object-detection", tv.RT_DETR, image="${input.image}",
                         params="min_confidence: 0.0, iou_threshold: 1.0, batch_size: 2"), registry=registry)
    singles = [run(registry, picture) for picture in PICTURES]
    for picture, out in zip(PICTURES, singles):
        raw = raw_detections(vision[tv.RT_DETR], picture, 0.0)
        order = sorted(range(len(raw["scores"])), key=lambda i: -float(raw["scores"][i]))
        assert out == {"objects": expected_objects(raw, order, *picture.size), "width": picture.width,
                       "height": picture.height}
    assert len({o["label"] for o in singles[0]["objects"]}) > 1
    assert len({round(o["score"], 3) for o in singles[0]["objects"]}) > 6     # queries score apart
    batched = run(registry, PICTURES)      # (a batched forward differs from a single one in the 7th digit)
    assert batched == [{**one, "objects": [{**o, "score": pytest.approx(o["score"], abs=1e-5)} for o in one["objects"]]}
                       for one in singles]


def test_min_confidence_is_the_threshold_and_defaults_to_model_composes_0_25(registry, vision):
    compose_detector(registry, params="min_confidence: 0.45, iou_threshold: 1.0")
    scores = [o["score"] for o in run(registry, PICTURES[1])["objects"]]
    raw = raw_detections(vision[tv.YOLOS], PICTURES[1], 0.45)
    assert scores == sorted(scores, reverse=True) and len(scores) == len(raw["scores"]) and min(scores) > 0.45
    assert len(scores) < 12                                          # some fell below the threshold
    compose_detector(registry, params="iou_threshold: 1.0")
    assert len(run(registry, PICTURES[1])["objects"]) == len(raw_detections(vision[tv.YOLOS], PICTURES[1], 0.25)["scores"])


@pytest.mark.parametrize("agnostic", [False, True])
def test_non_maximum_suppression_drops_overlapping_boxes_per_class_or_across_classes(registry, vision, agnostic):
    compose_detector(registry, params=f"min_confidence: 0.0, iou_threshold: 0.5, agnostic_nms: {str(agnostic).lower()}")
    out = run(registry, PICTURES[0])["objects"]
    raw = raw_detections(vision[tv.YOLOS], PICTURES[0], 0.0)
    boxes, scores, labels = raw["boxes"].tolist(), raw["scores"].tolist(), raw["labels"].tolist()
    kept = reference_nms(boxes, scores, labels, 0.5, agnostic)
    assert out == expected_objects(raw, kept, 96, 64)
    assert len(kept) < len(scores)                                   # the threshold suppressed some
    same_class = reference_nms(boxes, scores, labels, 0.5, False)
    assert (len(kept) < len(same_class)) if agnostic else (len(kept) == len(same_class))


def test_labels_keep_only_those_classes_and_an_unknown_one_is_named(registry, vision):
    compose_detector(registry, params="min_confidence: 0.0, iou_threshold: 1.0, labels: [cat, car]")
    out = run(registry, PICTURES[0])["objects"]
    raw = raw_detections(vision[tv.YOLOS], PICTURES[0], 0.0)
    wanted = [i for i in sorted(range(12), key=lambda i: -float(raw["scores"][i])) if int(raw["labels"][i]) in (1, 3)]
    assert out == expected_objects(raw, wanted, 96, 64) and 0 < len(out) < 12
    compose_detector(registry, params="min_confidence: 0.0, labels: [cat, zebra]")
    with pytest.raises(InputError) as error:
        run(registry, PICTURES[0])
    assert str(error.value) == ("`labels`: `zebra` is not a class of this model.\n  "
                                "Its classes: person, cat, dog, car.")


def test_max_object_count_keeps_the_best_and_padding_grows_boxes_within_the_image(registry, vision):
    compose_detector(registry, params="min_confidence: 0.0, iou_threshold: 1.0, max_object_count: 3, "
                                      "bounding_box_padding: 0.25")
    out = run(registry, PICTURES[2])["objects"]
    raw = raw_detections(vision[tv.YOLOS], PICTURES[2], 0.0)
    best = sorted(range(12), key=lambda i: -float(raw["scores"][i]))[:3]
    assert out == expected_objects(raw, best, 96, 64, padding=0.25)
    plain = expected_objects(raw, best, 96, 64)
    assert all(o["bounding_box"]["width"] >= p["bounding_box"]["width"] for o, p in zip(out, plain))
    assert any(o["bounding_box"] != p["bounding_box"] for o, p in zip(out, plain))
    assert all(b["x"] >= 0 and b["y"] >= 0 and b["x"] + b["width"] <= 96 and b["y"] + b["height"] <= 64
               for b in (o["bounding_box"] for o in out))


def test_pixel_box_follows_model_compose_padding_and_clipping():
    assert pixel_box(10.7, 5.2, 30.9, 25.0, 100, 100) == {"x": 10, "y": 5, "width": 20, "height": 20}
    assert pixel_box(10, 10, 30, 20, 100, 100, padding=0.5) == {"x": 0, "y": 5, "width": 40, "height": 20}
    assert pixel_box(-3.5, -1.0, 120.0, 40.0, 100, 30) == {"x": 0, "y": 0, "width": 100, "height": 30}


def test_a_list_of_images_in_batches_equals_one_by_one(registry, vision):
    compose_detector(registry, image="${input.image}", params="min_confidence: 0.3, batch_size: 2")
    images = [PICTURES[0], ODD, PICTURES[1]]
    batched = run(registry, images)
    assert batched == [run(registry, image) for image in images]
    assert [(r["width"], r["height"]) for r in batched] == [(96, 64), (72, 80), (96, 64)]
    assert batched[0] != batched[2]


@pytest.mark.parametrize("params, message", [
    ("min_confidence: 1.5", "`params.min_confidence` must be between 0 and 1, not 1.5."),
    ("iou_threshold: -0.1", "`params.iou_threshold` must be between 0 and 1, not -0.1."),
    ("max_object_count: 0", "`max_object_count` must be a whole number of at least 1, not 0."),
    ("bounding_box_padding: -1", "`bounding_box_padding` must be a number of at least 0, not -1."),
])
def test_a_bad_detection_parameter_is_named(registry, vision, params, message):
    compose_detector(registry, params=params)
    with pytest.raises(InputError) as error:
        run(registry, PICTURES[0])
    assert str(error.value).startswith(message)


def test_a_model_of_another_task_is_refused_and_the_registry_stays_as_it_was(registry, vision):
    compose_detector(registry)
    before = registry_state(registry)
    with pytest.raises(ModelLoadError) as error:
        mc.compose(component("object-detection", tv.DEPTH_ANYTHING), registry=registry)
    assert str(error.value).startswith(f"`{tv.DEPTH_ANYTHING}` is a `DepthAnythingForDepthEstimation` model, not an "
                                       f"object detector (`*ForObjectDetection`): object-detection cannot run it.")
    assert "hustvl/yolos-tiny" in str(error.value)
    assert registry_state(registry) == before


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed here")
def test_a_detr_with_a_timm_backbone_asks_for_timm(registry, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["DetrForObjectDetection"], "model_type": "detr",
                                                      "use_timm_backbone": True, "backbone": "resnet50"}))
    with pytest.raises(ModelLoadError) as error:
        mc.compose(component("object-detection", str(tmp_path)), registry=registry)
    assert str(error.value) == (f"`{tmp_path}` is a `DetrForObjectDetection` model whose backbone comes from timm, "
                                f"which is not installed.\n  Install it (`pip install timm`), or give a model with a "
                                f"transformers backbone, such as hustvl/yolos-tiny or PekingU/rtdetr_r18vd.")
    assert registry.snapshot() == []


def test_precision_is_honoured(registry, vision):
    compose_detector(registry, extra="\n  precision: bfloat16", params="min_confidence: 0.3")
    [row] = registry.snapshot()
    assert row["dtype"] == "bfloat16"
    assert next(registry.entries["default"].driver.model.parameters()).dtype == torch.bfloat16
    out = run(registry, PICTURES[0])["objects"]
    assert out and all(0.3 < o["score"] <= 1 for o in out)


# ------------------------------------------------------------------------------------------------
# image-segmentation


def compose_segmenter(registry, model: str = tv.SAM, params: str = "min_confidence: 0.0", extra: str = "",
                      image: str = "${input.image as image}") -> None:
    mc.compose(component("image-segmentation", model, image=image, extra=extra, params=params), registry=registry)


BOXES = [{"x": 8, "y": 6, "width": 40, "height": 30}, {"x": 50, "y": 20, "width": 40, "height": 40}]
CORNERS = [[8, 6, 48, 36], [50, 20, 90, 60]]


def test_sam_with_box_prompts_equals_sam_processor_and_post_process_masks(registry, vision):
    compose_segmenter(registry, extra="\n  box_prompt: ${input.boxes}")
    out = run(registry, PICTURES[0], boxes=BOXES)
    masks, scores = raw_sam_boxes(vision[tv.SAM], PICTURES[0], CORNERS)
    assert (out["width"], out["height"]) == (96, 64) and len(out["segments"]) == 2
    assert [s["score"] for s in out["segments"]] == pytest.approx(sorted(scores, reverse=True), abs=1e-5)
    for segment in out["segments"]:
        index = segment["prompt_index"]
        expected = masks[index]
        assert segment["score"] == pytest.approx(scores[index], abs=1e-5)
        assert segment["mask"].mode == "L" and segment["mask"].size == (96, 64)
        assert np.array_equal(np.asarray(segment["mask"]) > 0, expected)
        assert set(np.unique(np.asarray(segment["mask"]))) <= {0, 255}
        assert segment["area"] == int(expected.sum())
        rows, cols = np.flatnonzero(expected.any(1)), np.flatnonzero(expected.any(0))
        assert segment["bounding_box"] == {"x": int(cols[0]), "y": int(rows[0]), "width": int(cols[-1] - cols[0] + 1),
                                           "height": int(rows[-1] - rows[0] + 1)}


def test_one_box_prompt_as_a_mapping_and_the_filters(registry, vision):
    compose_segmenter(registry, extra="\n  box_prompt: ${input.boxes}\n  return_mask: false")
    [only] = run(registry, PICTURES[1], boxes=BOXES[0])["segments"]
    masks, scores = raw_sam_boxes(vision[tv.SAM], PICTURES[1], CORNERS[:1])
    assert set(only) == {"score", "bounding_box", "area", "prompt_index"} and only["prompt_index"] == 0
    assert only["area"] == int(masks[0].sum())
    compose_segmenter(registry, extra="\n  box_prompt: ${input.boxes}\n  max_segment_count: 1")
    [best] = run(registry, PICTURES[0], boxes=BOXES)["segments"]
    both_masks, both = raw_sam_boxes(vision[tv.SAM], PICTURES[0], CORNERS)
    assert best["prompt_index"] == int(np.argmax(both))
    compose_segmenter(registry, params=f"min_confidence: {min(both) + 1e-4:.6f}", extra="\n  box_prompt: ${input.boxes}")
    assert [s["prompt_index"] for s in run(registry, PICTURES[0], boxes=BOXES)["segments"]] == [int(np.argmax(both))]
    areas = [int(m.sum()) for m in both_masks]
    compose_segmenter(registry, params=f"min_confidence: 0.0, min_area: {min(areas) + 1}",
                      extra="\n  box_prompt: ${input.boxes}")
    assert [s["area"] for s in run(registry, PICTURES[0], boxes=BOXES)["segments"]] == [max(areas)]


def test_sam_batches_equal_one_by_one(registry, vision):
    compose_segmenter(registry, image="${input.image}", params="min_confidence: 0.0, batch_size: 2",
                      extra="\n  box_prompt: ${input.boxes}")
    images = [PICTURES[0], ODD, PICTURES[2]]
    batched = run(registry, images, boxes=BOXES)
    singles = [run(registry, image, boxes=BOXES) for image in images]
    for b, s in zip(batched, singles):
        assert [x["prompt_index"] for x in b["segments"]] == [x["prompt_index"] for x in s["segments"]]
        for x, y in zip(b["segments"], s["segments"]):
            assert x["score"] == pytest.approx(y["score"], abs=1e-5) and x["area"] == y["area"]
            assert np.array_equal(np.asarray(x["mask"]), np.asarray(y["mask"]))


def reference_automatic(folder: Path, image: Image.Image, min_confidence: float) -> List[tuple]:
    """SAM's automatic masks the way transformers' mask-generation pipeline makes them (its torchvision NMS
    replaced by :func:`reference_nms`): every grid point's three masks at full size, then the filters."""
    from transformers import AutoProcessor, SamModel

    processor, model = AutoProcessor.from_pretrained(folder), SamModel.from_pretrained(folder).eval()
    inputs = processor(images=image, return_tensors="pt")
    h, w = inputs["reshaped_input_sizes"][0].tolist()
    steps = (np.arange(32) + 0.5) / 32
    points = torch.tensor([[x * w, y * h] for y in steps for x in steps], dtype=torch.float32)
    found = []
    with torch.no_grad():
        embeddings = model.get_image_embeddings(inputs["pixel_values"])
        for start in range(0, len(points), 64):
            batch = points[start:start + 64]
            out = model(image_embeddings=embeddings, input_points=batch[None, :, None], multimask_output=True,
                        input_labels=torch.ones(1, len(batch), 1, dtype=torch.long))
            full = processor.image_processor.post_process_masks(out.pred_masks, inputs["original_sizes"],
                                                                inputs["reshaped_input_sizes"], binarize=False)[0]
            for logits, score in zip(full.flatten(0, 1), out.iou_scores[0].flatten().tolist()):
                stable = (logits > 1).sum() / max(int((logits > -1).sum()), 1)
                mask = (logits > 0).numpy()
                if score >= min_confidence and stable > 0.95 and mask.any():
                    found.append((mask, score))
    boxes = []
    for mask, _ in found:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    kept = reference_nms(boxes, [s for _, s in found], [0] * len(found), 0.7, True)
    return [found[i] for i in kept]


def test_sam_without_a_prompt_generates_masks_over_a_point_grid(registry, vision):
    compose_segmenter(registry, params="min_confidence: 0.5")
    out = run(registry, PICTURES[0])["segments"]
    expected = reference_automatic(vision[tv.SAM], PICTURES[0], 0.5)
    assert len(out) == len(expected) >= 1
    for segment, (mask, score) in zip(out, expected):
        assert segment["score"] == pytest.approx(score, abs=1e-5)
        assert np.array_equal(np.asarray(segment["mask"]) > 0, mask)
        assert "prompt_index" not in segment


def test_a_semantic_model_gives_a_segment_per_class_with_its_label(registry, vision):
    compose_segmenter(registry, model=tv.SEGFORMER)
    out = run(registry, PICTURES[0])["segments"]
    labelled = raw_semantic(vision[tv.SEGFORMER], PICTURES[0])
    assert sorted(s["label"] for s in out) == sorted(tv.ADE_CLASSES[c] for c in np.unique(labelled))
    for segment in out:
        expected = labelled == tv.ADE_CLASSES.index(segment["label"])
        assert np.array_equal(np.asarray(segment["mask"]) > 0, expected) and segment["area"] == int(expected.sum())
        assert 1 / len(tv.ADE_CLASSES) < segment["score"] <= 1
    assert sum(s["area"] for s in out) == 96 * 64
    compose_segmenter(registry, model=tv.SEGFORMER, params="min_confidence: 0.0, max_segment_count: 2")
    assert [s["label"] for s in run(registry, PICTURES[0])["segments"]] == [s["label"] for s in out[:2]]


def test_a_box_prompt_for_a_semantic_model_and_a_bad_box_are_named(registry, vision):
    compose_segmenter(registry, model=tv.SEGFORMER, extra="\n  box_prompt: ${input.boxes}")
    with pytest.raises(InputError, match=r"^`box_prompt` steers SAM, but this component's model is a semantic "
                                         r"segmentation model \(`SegformerForSemanticSegmentation`\)"):
        run(registry, PICTURES[0], boxes=BOXES[0])
    compose_segmenter(registry, extra="\n  box_prompt: ${input.boxes}")
    for boxes, message in [([BOXES[0], {"x": 1, "y": 2, "width": 3}], "`box_prompt[1]` lacks `height`."),
                           ({"x": 1, "y": "top", "width": 3, "height": 4}, "`box_prompt.y` must be a number of pixels"),
                           ([[1, 2, 3, 4]], "`box_prompt[0]` must be a mapping `{x, y, width, height}` in pixels"),
                           ({"x": 1, "y": 2, "width": 0, "height": 4}, "`box_prompt` is 0×4 pixels")]:
        with pytest.raises(InputError) as error:
            run(registry, PICTURES[0], boxes=boxes)
        assert str(error.value).startswith(message)


# ------------------------------------------------------------------------------------------------
# depth-estimation


def compose_depth(registry, model: str = tv.DEPTH_ANYTHING, params: str = "", extra: str = "",
                  image: str = "${input.image as image}") -> None:
    mc.compose(component("depth-estimation", model, image=image, extra=extra, params=params), registry=registry)


@pytest.mark.parametrize("model", [tv.DEPTH_ANYTHING, tv.DPT])
def test_depth_equals_post_process_depth_estimation_stretched_to_0_255(registry, vision, model):
    compose_depth(registry, model=model)
    out = run(registry, PICTURES[0])
    depth = raw_depth(vision[model], PICTURES[0])
    assert out.mode == "L" and out.size == (96, 64)
    expected = stretched(depth)
    assert np.abs(np.asarray(out).astype(int) - expected).max() <= 1          # float noise may cross a level
    assert (np.asarray(out) == expected).mean() > 0.99
    assert np.asarray(out).min() == 0 and np.asarray(out).max() == 255


def test_invert_and_image_size_change_the_map_as_specified(registry, vision):
    folder = vision[tv.DEPTH_ANYTHING]
    compose_depth(registry, params="image_size: 56", extra="\n  invert: true")
    out = np.asarray(run(registry, PICTURES[1])).astype(int)
    resized = raw_depth(folder, PICTURES[1], size={"height": 56, "width": 56})
    assert np.abs(out - stretched(resized, invert=True)).max() <= 1
    assert np.abs(stretched(resized).astype(int) - stretched(raw_depth(folder, PICTURES[1])).astype(int)).max() > 5
    assert np.abs(out + stretched(resized).astype(int) - 255).max() <= 1     # inverted: far is bright


def test_depth_batches_equal_one_by_one_and_the_architecture_is_checked(registry, vision):
    compose_depth(registry, image="${input.image}", params="batch_size: 3", extra="\n  architecture: depth-anything")
    images = [PICTURES[0], ODD, PICTURES[2]]
    batched, singles = run(registry, images), [run(registry, image) for image in images]
    assert [im.size for im in batched] == [(96, 64), (72, 80), (96, 64)]
    assert all(np.abs(np.asarray(b).astype(int) - np.asarray(s)).max() <= 1 for b, s in zip(batched, singles))
    before = registry_state(registry)
    with pytest.raises(ModelLoadError) as error:
        compose_depth(registry, model=tv.DEPTH_ANYTHING, extra="\n  architecture: dpt")
    assert str(error.value) == (f"`architecture: dpt` but `{tv.DEPTH_ANYTHING}` is a `depth_anything` model (expected "
                                f"model_type `dpt`).\n  Write `architecture: depth-anything`, or leave it out to "
                                f"infer it from the model.")
    assert registry_state(registry) == before


# ------------------------------------------------------------------------------------------------
# image-background-removal


def compose_remover(registry, model: str = tv.CLOTHES, params: str = "", extra: str = "",
                    image: str = "${input.image as image}") -> None:
    mc.compose(component("image-background-removal", model, image=image, extra=extra, params=params),
               registry=registry)


def test_a_semantic_model_cuts_out_all_but_its_background_class(registry, vision):
    compose_remover(registry)
    out = run(registry, PICTURES[0])
    expected = raw_foreground(vision[tv.CLOTHES], PICTURES[0])
    assert out.mode == "RGBA" and out.size == (96, 64)
    assert np.array_equal(np.asarray(out)[..., 3], expected)
    assert np.array_equal(np.asarray(out)[..., :3], np.asarray(PICTURES[0]))
    assert 0 < expected.min() < expected.max() < 255                         # a soft alpha, not a hard cut
    compose_remover(registry, extra="\n  output_format: mask")
    mask = run(registry, PICTURES[0])
    assert mask.mode == "L" and np.array_equal(np.asarray(mask), expected)


def test_a_birefnet_style_model_runs_its_own_code_only_when_trusted(registry, vision):
    before = registry_state(registry)
    with pytest.raises(ModelLoadError) as error:
        compose_remover(registry, model=tv.BIREFNET)
    assert str(error.value) == (f"`{tv.BIREFNET}` is a `BiRefNet` model whose code comes with it (not part of "
                                f"transformers).\n  Add `trust_remote_code: true` to the component if you trust "
                                f"that repository's code.")
    assert registry_state(registry) == before
    compose_remover(registry, model=tv.BIREFNET, extra="\n  trust_remote_code: true", params="image_size: 48")
    out = run(registry, PICTURES[1])
    assert np.array_equal(np.asarray(out)[..., 3], raw_birefnet(vision[tv.BIREFNET], PICTURES[1], 48))
    compose_remover(registry, model=tv.BIREFNET, extra="\n  trust_remote_code: true\n  output_format: mask")
    mask = run(registry, PICTURES[1])                                        # model-compose's 1024 a side
    assert np.array_equal(np.asarray(mask), raw_birefnet(vision[tv.BIREFNET], PICTURES[1], 1024))


def test_background_removal_batches_a_model_without_background_and_a_bad_format(registry, vision):
    compose_remover(registry, image="${input.image}", params="batch_size: 2, image_size: 48")
    images = [PICTURES[0], ODD, PICTURES[1]]
    batched = run(registry, images)
    assert all(np.array_equal(np.asarray(b), np.asarray(run(registry, image))) for b, image in zip(batched, images))
    with pytest.raises(ModelLoadError, match=r"has no `background` class \(its classes: wall, building, sky, floor, "
                                             r"tree\): background removal keeps every pixel that is not background"):
        compose_remover(registry, model=tv.SEGFORMER)
    with pytest.raises(ConfigError, match="output_format"):
        compose_remover(registry, extra="\n  output_format: png")
    compose_remover(registry, extra="\n  output_format: ${input.format}")
    with pytest.raises(InputError, match=r"^`output_format` must be `rgba` or `mask`, not 'png'"):
        run(registry, PICTURES[0], format="png")


# ------------------------------------------------------------------------------------------------
# model-compose's file shape: detections steer the segmenter


def test_a_model_compose_workflow_detects_then_segments_each_box(registry, vision):
    text = f"""
components:
  - id: detector
    type: model
    task: object-detection
    driver: huggingface
    model: {tv.YOLOS}
    action:
      image: ${{input.image as image}}
      max_object_count: 2
      params:
        min_confidence: 0.3
        iou_threshold: 0.5
  - id: segmenter
    type: model
    task: image-segmentation
    driver: huggingface
    model: {tv.SAM}
    action:
      image: ${{input.image as image}}
      box_prompt: ${{input.boxes}}
      params:
        min_confidence: 0.0
workflow:
  jobs:
    - id: detect
      component: detector
      input:
        image: ${{input.image}}
    - id: segment
      component: segmenter
      depends_on: [detect]
      input:
        image: ${{input.image}}
        boxes: ${{jobs.detect.output.objects[*].bounding_box}}
"""
    mc.compose(text, registry=registry)
    result = mc.run(inputs={"image": PICTURES[0]}, registry=registry)
    boxes = [o["bounding_box"] for o in result.jobs["detect"]["objects"]]
    assert len(boxes) == 2
    masks, scores = raw_sam_boxes(vision[tv.SAM], PICTURES[0],
                                  [[b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"]] for b in boxes])
    segments = result.output["segments"]
    assert sorted(s["prompt_index"] for s in segments) == [0, 1]
    for segment in segments:
        assert np.array_equal(np.asarray(segment["mask"]) > 0, masks[segment["prompt_index"]])
        assert segment["score"] == pytest.approx(scores[segment["prompt_index"]], abs=1e-5)


# ------------------------------------------------------------------------------------------------
# What the renderers draw


def png(bundle: Dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).convert("RGB")


def test_detections_are_boxes_in_their_class_colour_on_the_input_with_a_table(registry, vision):
    compose_detector(registry, params="min_confidence: 0.3, iou_threshold: 0.5, max_object_count: 2")
    result = mc.run(inputs={"image": PICTURES[0]}, registry=registry)
    bundle = result._repr_mimebundle_()
    objects = result.output["objects"]
    drawn = np.asarray(png(bundle))
    assert drawn.shape == (64, 96, 3)
    last = objects[-1]      # drawn last: its left edge shows its colour along its height
    box = last["bounding_box"]
    edge = drawn[box["y"] + box["height"] // 2, box["x"]]
    assert tuple(edge) == dense_vision.colour(last["label_id"])
    far = (95, 63) if box["x"] < 40 else (0, 63)
    assert tuple(drawn[far[1], far[0]]) == PICTURES[0].getpixel(far)       # away from boxes: the input itself
    lines = bundle["text/plain"].splitlines()
    assert lines[0] == "2 objects"
    assert lines[1] == f"  {objects[0]['label']} {objects[0]['score']:.3f} at ({objects[0]['bounding_box']['x']}, " \
                       f"{objects[0]['bounding_box']['y']}) {objects[0]['bounding_box']['width']}×" \
                       f"{objects[0]['bounding_box']['height']}"
    assert f"rgb{dense_vision.colour(last['label_id'])}" in bundle["text/html"]
    assert dense_vision.render_detections("some text", {}) is None
    assert dense_vision.render_detections({"objects": []}, {}) is None


def test_segments_are_coloured_overlays_and_a_list_shows_each_image(vision):
    mask = np.zeros((64, 96), bool)
    mask[10:30, 20:50] = True
    segment = {"score": 0.9, "bounding_box": {"x": 20, "y": 10, "width": 30, "height": 20}, "area": 600,
               "mask": Image.fromarray(mask.astype(np.uint8) * 255), "prompt_index": 0}
    value = {"segments": [segment], "width": 96, "height": 64}
    bundle = dense_vision.render_segments(value, {"image": PICTURES[0]})
    drawn = np.asarray(png(bundle)).astype(int)
    inside = np.asarray(PICTURES[0])[20, 35].astype(int)
    blended = np.round(0.5 * inside + 0.5 * np.array(dense_vision.colour(0)))
    assert np.abs(drawn[20, 35] - blended).max() <= 1                          # half the input, half the colour
    assert tuple(drawn[20, 20]) == dense_vision.colour(0)                       # the box's left edge
    assert tuple(drawn[50, 80]) == PICTURES[0].getpixel((80, 50))               # outside: untouched
    assert bundle["text/plain"] == "1 segment\n  box 0 0.900, 600 px at (20, 10) 30×20"
    two = dense_vision.render_segments([value, value], {"image": [PICTURES[0], PICTURES[1]]})
    assert "image/png" not in two and two["text/html"].count("<img") == 2
    assert two["text/plain"].startswith("image #1: 1 segment")


def test_depth_is_coloured_beside_its_image(registry, vision):
    compose_depth(registry)
    result = mc.run(inputs={"image": PICTURES[0]}, registry=registry)
    bundle = result._repr_mimebundle_()
    shown = np.asarray(png(bundle))
    assert shown.shape == (64, 192, 3)
    assert np.array_equal(shown[:, :96], np.asarray(PICTURES[0]))              # the input on the left
    depth = np.asarray(result.output)
    y, x = np.unravel_index(depth.argmax(), depth.shape)
    assert tuple(shown[y, 96 + x]) == dense_vision.DEPTH_COLOURS[-1]           # the highest level: the last colour
    y, x = np.unravel_index(depth.argmin(), depth.shape)
    assert tuple(shown[y, 96 + x]) == dense_vision.DEPTH_COLOURS[0]
    assert bundle["text/plain"] == "depth map 96x64, levels 0-255"


def test_a_cutout_shows_over_a_checkerboard(vision):
    image = PICTURES[0].convert("RGBA")
    alpha = np.zeros((64, 96), np.uint8)
    alpha[:, 48:] = 255
    image.putalpha(Image.fromarray(alpha))
    bundle = dense_vision.render_cutout(image, {"image": PICTURES[0]})
    shown = np.asarray(png(bundle))
    assert tuple(shown[0, 0]) == dense_vision.CHECKER[0] and tuple(shown[0, 8]) == dense_vision.CHECKER[1]
    assert tuple(shown[30, 70]) == PICTURES[0].getpixel((70, 30))             # the foreground as it was
    assert bundle["text/plain"] == "cutout 96x64, 50% foreground"
    mask = dense_vision.render_cutout(Image.fromarray(alpha), {"image": PICTURES[0]})
    assert png(mask).size == (192, 64) and mask["text/plain"] == "mask 96x64, 50% foreground"
    assert dense_vision.render_cutout(PICTURES[0], {}) is None                 # an RGB image is not a cutout
    assert dense_vision.render_depth(PICTURES[0], {}) is None

