"""face-embedding: ``image:`` (one or a list) -> the image's faces ``[{bbox, score, landmarks, embedding}]``
(a list of such lists for a list of images); embeddings are L2-normalised, so the dot product of two is
their cosine. A backend's :meth:`generate` gives each image's faces.
"""

from __future__ import annotations

from typing import Any, Dict

from ..catalog import Task
from .base import Call, ModelTask
from .image_to_text import image_items


class FaceEmbeddingTask(ModelTask):
    task = Task.FACE_EMBEDDING

    def prepare(self, fields: Dict[str, Any]) -> Call:
        import numpy as np

        images, many = image_items(fields, self.task, "RGB")
        return Call([np.asarray(im) for im in images], many, None, self.batch_size(fields))
