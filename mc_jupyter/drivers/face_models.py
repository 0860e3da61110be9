"""InsightFace model packs (``buffalo_l``) run through onnxruntime, without the insightface package.

A pack is a folder of ONNX files. Each file's role is read from its signature, as insightface's
``model_zoo`` routes them: a model with 9 or 15 outputs is an SCRFD face detector (scores, boxes
and five landmarks per stride), one whose input is 112x112 is an ArcFace recogniser; the pack's
other models (gender/age, 106 and 68 landmarks) are not needed here and are never opened once both
roles are found. The steps follow insightface's ``SCRFD.detect``, ``face_align.norm_crop`` and
``ArcFaceONNX.get_feat``: an image read by OpenCV is BGR and insightface swaps it to RGB for the
networks (``swapRB=True``), so a PIL image, already RGB, goes in as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import ModelLoadError
from .sources import GET_PACK

#: Where the five ArcFace landmarks (eyes, nose tip, mouth corners) sit in a 112x112 crop.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
CROP_SIZE = 112
DETECTION_SIZE = (640, 640)          # (width, height) for detectors with a dynamic input size
SCORE_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4
#: SCRFD output layouts with landmarks: number of outputs -> (strides, anchors per location).
SCRFD_LAYOUTS = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}
#: Files of the published packs, tried first so the large models a pack also ships stay closed.
KNOWN_FILES = ("det_10g.onnx", "w600k_r50.onnx", "det_500m.onnx", "w600k_mbf.onnx",
               "scrfd_10g_bnkps.onnx", "glintr100.onnx")
DETECTOR = "SCRFD face detector (an ONNX model with 9 or 15 outputs: scores, boxes, landmarks per stride)"
RECOGNIZER = "ArcFace recogniser (an ONNX model with a 1x3x112x112 input and one output)"


@dataclass
class Face:
    bbox: np.ndarray        # x1, y1, x2, y2 in the image's pixels
    score: float
    landmarks: np.ndarray   # 5 x 2: eyes, nose tip, mouth corners

    def as_result(self, embedding: np.ndarray) -> Dict[str, Any]:
        return {"bbox": [float(v) for v in self.bbox], "score": float(self.score),
                "landmarks": self.landmarks.astype(float).tolist(), "embedding": embedding.astype(float).tolist()}


class FacePack:
    """A detector and a recogniser from one folder; :meth:`faces` gives every face of an RGB image."""

    def __init__(self, folder: str, providers: Sequence[str]):
        import onnxruntime

        self.detector = self.recognizer = None
        self.files: Dict[str, str] = {}     # role -> path of the ONNX file that fills it
        seen: List[str] = []
        for name in _candidates(folder):
            path = os.path.join(folder, name)
            try:
                session = onnxruntime.InferenceSession(path, providers=list(providers))
            except Exception as e:   # onnxruntime raises its own exception types for unreadable files
                lines = str(e).strip().splitlines()
                detail = f"{os.path.getsize(path)} bytes; {lines[0] if lines else type(e).__name__}"
                raise ModelLoadError(f"`{path}` is not a readable ONNX model: truncated or corrupt ({detail}).\n  "
                                     f"Download the pack again and replace the file with the one from its zip: "
                                     + GET_PACK.format(name=os.path.basename(folder))) from None
            role = _role(session)
            seen.append(f"{name} ({role or 'not used'})")
            if role and role not in self.files:
                setattr(self, role, session)
                self.files[role] = path
            if self.detector is not None and self.recognizer is not None:
                break
        missing = [what for what, session in ((DETECTOR, self.detector), (RECOGNIZER, self.recognizer))
                   if session is None]
        if missing:
            raise ModelLoadError(f"the folder `{folder}` holds no {' and no '.join(missing)}; its ONNX files: "
                                 f"{', '.join(seen) or 'none'}.\n  " + GET_PACK.format(name="buffalo_l"))
        shape = self.detector.get_inputs()[0].shape
        fixed = all(isinstance(d, int) for d in shape[2:4])
        self.detection_size = (shape[3], shape[2]) if fixed else DETECTION_SIZE
        self.strides, self.anchors = SCRFD_LAYOUTS[len(self.detector.get_outputs())]

    def faces(self, rgb: np.ndarray) -> List[Dict[str, Any]]:
        return [face.as_result(self.embed(rgb, face.landmarks)) for face in self.detect(rgb)]

    def detect(self, rgb: np.ndarray) -> List[Face]:
        """SCRFD on the image resized, aspect kept, into the top-left of the detection canvas."""
        width, height = self.detection_size
        ratio = rgb.shape[0] / rgb.shape[1]
        if ratio > height / width:
            new_h, new_w = height, int(height / ratio)
        else:
            new_h, new_w = int(width * ratio), width
        det_scale = new_h / rgb.shape[0]
        canvas = np.zeros((height, width, 3), dtype=np.float32)
        canvas[:new_h, :new_w] = resize(rgb, new_w, new_h)
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None].astype(np.float32)
        outputs = [o[0] if o.ndim == 3 else o
                   for o in self.detector.run(None, {self.detector.get_inputs()[0].name: blob})]
        n = len(self.strides)
        scores, boxes, points = [], [], []
        for i, stride in enumerate(self.strides):
            centers = anchor_centers(height // stride, width // stride, stride, self.anchors)
            keep = np.where(outputs[i][:, 0] >= SCORE_THRESHOLD)[0]
            scores.append(outputs[i][keep, 0])
            boxes.append(distance2bbox(centers, outputs[i + n] * stride)[keep])
            points.append(distance2kps(centers, outputs[i + 2 * n] * stride)[keep])
        score = np.concatenate(scores)
        order = score.argsort()[::-1]
        box = np.concatenate(boxes)[order] / det_scale
        kps = np.concatenate(points)[order] / det_scale
        keep = nms(box, score[order], NMS_THRESHOLD)
        return [Face(box[k], float(score[order][k]), kps[k]) for k in keep]

    def embed(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The L2-normalised ArcFace vector of the face aligned onto the 112x112 template."""
        crop = norm_crop(rgb, landmarks)
        blob = ((crop - 127.5) / 127.5).transpose(2, 0, 1)[None].astype(np.float32)
        vector = self.recognizer.run(None, {self.recognizer.get_inputs()[0].name: blob})[0].reshape(-1)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _candidates(folder: str) -> List[str]:
    rank = {name: i for i, name in enumerate(KNOWN_FILES)}
    return sorted((f for f in os.listdir(folder) if f.endswith(".onnx")), key=lambda f: (rank.get(f, len(rank)), f))


def _role(session: Any) -> Optional[str]:
    """'detector', 'recognizer' or None, from the signature as insightface's ModelRouter reads it."""
    shape = session.get_inputs()[0].shape
    if len(session.get_outputs()) in SCRFD_LAYOUTS:
        return "detector"
    if len(shape) == 4 and shape[2:4] == [CROP_SIZE, CROP_SIZE] and len(session.get_outputs()) == 1:
        return "recognizer"
    return None


def anchor_centers(rows: int, cols: int, stride: int, anchors: int) -> np.ndarray:
    """(x, y) of every anchor, row-major, each location repeated once per anchor."""
    grid = np.stack(np.mgrid[:rows, :cols][::-1], axis=-1).astype(np.float32).reshape(-1, 2) * stride
    return np.repeat(grid, anchors, axis=0)


def distance2bbox(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    return np.concatenate([points - distance[:, :2], points + distance[:, 2:4]], axis=1)


def distance2kps(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    return points[:, None, :] + distance.reshape(len(points), -1, 2)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> List[int]:
    """Indices kept by greedy non-maximum suppression (insightface's +1 pixel area convention)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = scores.argsort()[::-1], []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= threshold]
    return keep


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation+scale+translation that maps ``src`` onto ``dst`` best in least squares (Umeyama)."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(axis=0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def norm_crop(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112x112 crop whose five landmarks land on :data:`ARCFACE_TEMPLATE` (black outside the image)."""
    forward = similarity_transform(np.asarray(landmarks, dtype=np.float64), ARCFACE_TEMPLATE)
    inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
    return warp_affine(rgb, inverse, CROP_SIZE, CROP_SIZE, border="constant")


def resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize with OpenCV's INTER_LINEAR pixel-centre convention (no antialiasing)."""
    sx, sy = rgb.shape[1] / width, rgb.shape[0] / height
    inverse = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
    return warp_affine(rgb, inverse, width, height, border="edge")


def warp_affine(image: np.ndarray, inverse: np.ndarray, width: int, height: int, border: str) -> np.ndarray:
    """Bilinear sampling of ``image`` at ``inverse @ (x, y, 1)`` for every output pixel (x, y), as uint8.

    Sampling a copy padded by one pixel (zeros, or the edge repeated) makes every neighbour of a
    point outside the image read the border, as cv2.warpAffine's BORDER_CONSTANT / REPLICATE do.
    """
    padded = np.pad(image.astype(np.float32), ((1, 1), (1, 1), (0, 0)), mode=border)
    ys, xs = np.mgrid[:height, :width].astype(np.float64)
    src_x = np.clip(inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2] + 1, 0, padded.shape[1] - 1)
    src_y = np.clip(inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2] + 1, 0, padded.shape[0] - 1)
    x0 = np.minimum(np.floor(src_x).astype(int), padded.shape[1] - 2)
    y0 = np.minimum(np.floor(src_y).astype(int), padded.shape[0] - 2)
    fx, fy = (src_x - x0)[..., None], (src_y - y0)[..., None]
    top = padded[y0, x0] * (1 - fx) + padded[y0, x0 + 1] * fx
    bottom = padded[y0 + 1, x0] * (1 - fx) + padded[y0 + 1, x0 + 1] * fx
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)
