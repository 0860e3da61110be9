"""ONNX text models through onnxruntime, as ``driver: custom`` classes (``format: onnx``).

    component:
      type: model
      task: text-classification            # or text-embedding with OnnxTextEmbedding
      driver: custom
      model: {provider: local, path: ./sst2/model.onnx, format: onnx}
      class: mc_jupyter.custom.onnx:OnnxTextClassifier
      options: {tokenizer: ./sst2}         # a folder with the tokenizer (and config.json for labels)
      text: ${input.text}

The ONNX graph takes ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` if it declares
it) and returns logits (classifier) or the last hidden state (embedder), as exported from a
transformers model with ``torch.onnx.export``. The classes fill ``generate(texts, params)`` (see
:mod:`mc_jupyter.drivers.custom`): the task layer reads ``text:``, lists and ``batch_size`` and gives
results the Hugging Face driver's shapes.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from ..catalog import Device
from ..drivers.custom import CustomModel
from ..errors import MissingPackageError, ModelLoadError


class _OnnxText(CustomModel):
    def load(self) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise MissingPackageError("the ONNX custom model", ["onnxruntime"], "onnxruntime") from None
        from transformers import AutoTokenizer

        if not self.model_path or not os.path.exists(self.model_path):
            raise ModelLoadError(f"no ONNX file at `{self.model_path}`: give `model: {{provider: local, path: "
                                 f"model.onnx, format: onnx}}`.")
        tokenizer = self.options.get("tokenizer") or os.path.dirname(self.model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(os.path.expanduser(tokenizer))
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if str(self.config.device).split(":")[0] == Device.CUDA \
            else ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(self.model_path, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: List[str], max_length: Any = None):
        """The tokenizer's arrays for a batch, and the graph's first output for them."""
        enc = self.tokenizer(texts, return_tensors="np", padding=True, truncation=True, max_length=max_length)
        feed = {name: enc[name].astype("int64") for name in self.input_names if name in enc}
        return enc, self.session.run(None, feed)[0]

    def info(self) -> Dict[str, Any]:
        return {"device": "onnxruntime · " + self.session.get_providers()[0].replace("ExecutionProvider", "").lower(),
                "dtype": "onnx", "memory_bytes": os.path.getsize(self.model_path)}

    def unload(self) -> None:
        self.session = None


class OnnxTextClassifier(_OnnxText):
    """logits -> ``{label, score, label_id, scores}`` (labels: ``options.labels`` or config.json)."""

    def load(self) -> None:
        super().load()
        labels = self.options.get("labels") or self.config.labels
        config = os.path.join(os.path.dirname(self.model_path), "config.json")
        if not labels and os.path.exists(config):
            with open(config) as f:
                id2label = json.load(f).get("id2label") or {}
            labels = [id2label[k] for k in sorted(id2label, key=int)]
        self.labels = [labels[i] for i in sorted(labels)] if isinstance(labels, dict) else labels

    def generate(self, texts: List[str], params: Any) -> List[List[float]]:
        """A row of softmax probabilities per text."""
        import numpy as np

        _, logits = self.encode(texts, params.max_input_length)
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).tolist()


class OnnxTextEmbedding(_OnnxText):
    """last hidden state -> pooled (``params.pooling``, mean by default), L2-normalised ``{embedding, dimensions}``."""

    def generate(self, texts: List[str], params: Any) -> List[List[float]]:
        """A pooled (mean, cls or max) and, unless ``normalize: false``, L2-normalised vector per text."""
        import numpy as np

        enc, hidden = self.encode(texts, params.max_input_length)
        mask = enc["attention_mask"][..., None].astype(hidden.dtype)
        if params.pooling == "cls":
            pooled = hidden[:, 0]
        elif params.pooling == "max":
            pooled = np.where(mask > 0, hidden, np.finfo(hidden.dtype).min).max(axis=1)
        else:
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        if params.normalize:
            pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.tolist()
