"""face-embedding: every face of an image, found, aligned and embedded by an InsightFace pack.

``model: buffalo_l`` (any pack name) is looked for in ``$INSIGHTFACE_HOME/models/`` and
``~/.insightface/models/``; a path, or ``{provider: local, path: ...}``, names the folder itself.
``${result}`` is a list of faces ``{bbox, score, landmarks, embedding}`` (a list of such lists for
a list of images); embeddings are L2-normalised, so the dot product of two is their cosine.
"""

from __future__ import annotations

import os
from typing import Any, Dict

import numpy as np

from ..errors import DeviceError, InputError, ModelLoadError
from ..media import load_image
from .base import Driver
from .face_models import FacePack, find_pack
from .sources import is_local_path, provider_of

#: ``device:`` -> the onnxruntime execution provider that runs it.
PROVIDERS = {"cuda": "CUDAExecutionProvider", "mps": "CoreMLExecutionProvider", "cpu": "CPUExecutionProvider"}


class FaceEmbedding(Driver):
    def load(self) -> None:

        folder, self.source_description = pack_folder(self.settings.get("model") or "buffalo_l")
        requested = resolve_provider(self.settings)
        self.pack = FacePack(folder, list(dict.fromkeys([PROVIDERS[requested], PROVIDERS["cpu"]])))
        self.device, self.dtype = requested, "float32"
        self.memory_bytes = sum(os.path.getsize(path) for path in self.pack.files.values())

    def run(self, fields: Dict[str, Any]) -> Any:
        image = fields.get("image")
        if image is None:
            raise InputError("face-embedding got no image: give `image:`, e.g. `image: ${input.image as image}`.")
        if isinstance(image, list):
            return [self.pack.faces(_rgb(item)) for item in image]
        return self.pack.faces(_rgb(image))

    def unload(self) -> None:
        self.__dict__.pop("pack", None)


def resolve_provider(settings: Dict[str, Any]) -> str:
    """The device onnxruntime runs the pack on (``auto``: cuda when it offers CUDA); DeviceError when the
    one asked for is not offered. Loads and ``--dry-run`` both check it here."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    requested = settings.get("device")
    if requested in (None, "auto"):
        requested = "cuda" if PROVIDERS["cuda"] in available else "cpu"
    if PROVIDERS.get(requested) not in available:
        raise DeviceError(f"`device: {requested}` was asked for, but onnxruntime here offers only "
                          f"{', '.join(available)}.\n  Use `device: cpu`, or install onnxruntime-gpu for CUDA.")
    return requested


def pack_folder(model: Any) -> tuple[str, str]:
    """(folder, description) for a pack name, a path, or a ``{provider: local, path}`` mapping."""
    if isinstance(model, dict):
        if provider_of(model) != "local":
            raise ModelLoadError(f"face-embedding reads InsightFace packs from local folders, not `{model}`.\n  "
                                 f"Give `model: buffalo_l` or `model: {{provider: local, path: /folder}}`.")
        model = str(model["path"])
    if not is_local_path(model):
        return find_pack(model), f"insightface: {model}"
    folder = os.path.abspath(os.path.expanduser(model))
    if not os.path.isdir(folder):
        raise ModelLoadError(f"the face model folder `{model}` does not exist (looked at {folder}).\n  "
                             f"Check the path; it should hold the pack's ONNX files (det_10g.onnx, w600k_r50.onnx).")
    return folder, f"local: {model}"


def _rgb(value: Any) -> np.ndarray:
    return np.asarray(load_image(value).convert("RGB"))
