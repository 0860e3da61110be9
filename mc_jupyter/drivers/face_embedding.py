"""face-embedding through an InsightFace pack (:mod:`.face_models`, onnxruntime); the task, its images and
lists: :mod:`mc_jupyter.tasks.face_embedding`.

``model: buffalo_l`` (any pack name; ``buffalo_l`` without ``model:``) is looked for in
``$INSIGHTFACE_HOME/models/`` and ``~/.insightface/models/``; a path, or ``{provider: local, path: ...}``,
names the folder itself (:func:`~mc_jupyter.drivers.sources.pack_folder`).
"""

from __future__ import annotations

import os
from typing import Any, List

from ..catalog import Device
from ..errors import DeviceError
from ..tasks.face_embedding import FaceEmbeddingTask
from .face_models import FacePack
from .sources import pack_folder

#: ``device:`` -> the onnxruntime execution provider that runs it.
PROVIDERS = {"cuda": "CUDAExecutionProvider", "mps": "CoreMLExecutionProvider", "cpu": "CPUExecutionProvider"}


class FaceEmbedding(FaceEmbeddingTask):
    def load(self) -> None:
        folder, self.source_description = pack_folder(self.config.model)
        requested = resolve_provider(self.config)
        self.pack = FacePack(folder, list(dict.fromkeys([PROVIDERS[requested], PROVIDERS["cpu"]])))
        self.device, self.dtype = requested, "float32"
        self.memory_bytes = sum(os.path.getsize(path) for path in self.pack.files.values())

    def generate(self, images: List[Any], params: Any) -> List[Any]:
        return [self.pack.faces(rgb) for rgb in images]

    def unload(self) -> None:
        self.__dict__.pop("pack", None)


def resolve_provider(config: Any) -> str:
    """The device onnxruntime runs the pack on for a typed ``config`` (``auto``: cuda when it offers CUDA);
    DeviceError when the one asked for is not offered. Loads and ``--dry-run`` both check it here."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    requested = config.device
    if requested in (None, Device.AUTO):
        requested = "cuda" if PROVIDERS["cuda"] in available else "cpu"
    if PROVIDERS.get(str(requested).split(":")[0]) not in available:
        raise DeviceError(f"`device: {requested}` was asked for, but onnxruntime here offers only "
                          f"{', '.join(available)}.\n  Use `device: cpu`, or install onnxruntime-gpu for CUDA.")
    return str(requested)
