"""A tiny stand-in for InsightFace's buffalo_l pack, with the same ONNX signatures.

``det_10g.onnx`` (input ``input.1``, 1x3xHxW with dynamic H and W; nine outputs: scores, boxes,
landmarks at strides 8, 16, 32 with two anchors per location, shapes [K*2, 1], [K*2, 4],
[K*2, 10]) "sees" a face where a bright :data:`FACE` x :data:`FACE` square fills the 64x64 window
around a stride-32 anchor of the 640x640 canvas, and puts its box on that window and its five
landmarks where the ArcFace template puts them in a square face. ``w600k_r50.onnx`` (input
``input.1``, 1x3x112x112, one 1x512 output) is a seeded two-layer conv net.

With an image of :data:`IMAGE_SIZE` (scaled by 2 onto the canvas), a face drawn by
:func:`draw_face` at a multiple of 16 pixels is found at exactly ``expected_bbox``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from torch import nn

from mc_jupyter.drivers.face_models import ARCFACE_TEMPLATE

FACE = 32                      # side of a face in the test images' pixels
IMAGE_SIZE = (320, 240)        # width, height: letterboxed onto the 640x640 canvas at scale 2
CANVAS_FACE = 64               # side of a face on the canvas = the 64x64 window of a stride-32 anchor
STRIDES = (8, 16, 32)


class TinyDetector(nn.Module):
    """Score = sigmoid(gain * (mean of the window around each anchor - 0.5)); constant distances."""

    def __init__(self):
        super().__init__()
        for stride in STRIDES:
            self.register_buffer(f"kps_{stride}", torch.tensor(landmark_offsets(stride)))

    def forward(self, x: torch.Tensor):
        brightness = x.mean(dim=1, keepdim=True)
        scores, boxes, points = [], [], []
        for stride in STRIDES:
            window = nn.functional.avg_pool2d(brightness, 2 * stride, stride, padding=stride)[:, :, :-1, :-1]
            gain, bias = (20.0, 0.0) if stride == 32 else (0.0, -10.0)   # only stride 32 sees faces
            score = torch.sigmoid(gain * (window - 0.5) + bias).permute(0, 2, 3, 1).reshape(-1, 1)
            score = torch.cat([score, 0.9 * score], dim=1).reshape(-1, 1)   # 2nd anchor: same box, lower
            zero = score * 0
            boxes.append(zero + torch.full((4,), CANVAS_FACE / 2 / stride))
            points.append(zero + getattr(self, f"kps_{stride}"))
            scores.append(score)
        return (*scores, *boxes, *points)


def landmark_offsets(stride: int) -> List[float]:
    """The template's landmarks in a face square, from the square's centre, in stride units."""
    return ((ARCFACE_TEMPLATE - 56.0) * (CANVAS_FACE / 112.0) / stride).reshape(-1).astype(np.float32).tolist()


class TinyRecognizer(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                      nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(256, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_pack(folder: Path) -> Path:
    """Write det_10g.onnx and w600k_r50.onnx into ``folder`` (created); return it."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in STRIDES]
    torch.onnx.export(TinyDetector(), (torch.zeros(1, 3, 640, 640),), str(folder / "det_10g.onnx"),
                      input_names=["input.1"], output_names=names, dynamic_axes={"input.1": {2: "h", 3: "w"}},
                      opset_version=17, dynamo=False)
    torch.onnx.export(TinyRecognizer().eval(), (torch.zeros(1, 3, 112, 112),), str(folder / "w600k_r50.onnx"),
                      input_names=["input.1"], output_names=["embedding"], opset_version=17, dynamo=False)
    return folder


def draw_face(image: np.ndarray, left: int, top: int, seed: int) -> None:
    """A bright square of 8x8-pixel blocks (values 180..255, seeded) with its top-left corner at (left, top)."""
    blocks = np.random.default_rng(seed).integers(180, 256, size=(FACE // 8, FACE // 8, 3))
    pattern = blocks.repeat(8, axis=0).repeat(8, axis=1)
    image[top:top + FACE, left:left + FACE] = pattern


def image_with_faces(*faces: Tuple[int, int, int]) -> np.ndarray:
    """A black IMAGE_SIZE RGB image with a face (left, top, seed) drawn for each triple."""
    image = np.zeros((IMAGE_SIZE[1], IMAGE_SIZE[0], 3), dtype=np.uint8)
    for left, top, seed in faces:
        draw_face(image, left, top, seed)
    return image


def expected_bbox(left: int, top: int) -> List[float]:
    return [left, top, left + FACE, top + FACE]


def expected_landmarks(left: int, top: int) -> np.ndarray:
    return ARCFACE_TEMPLATE * (FACE / 112.0) + [left, top]
