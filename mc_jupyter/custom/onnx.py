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
transformers model with ``torch.onnx.export``. Results have the Hugging Face driver's shapes.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from ..drivers.custom import CustomModel
from ..errors import InputError, MissingPackageError, ModelLoadError


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
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.settings.get("device") == "cuda" \
            else ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(self.model_path, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def outputs(self, texts: List[str], fields: Dict[str, Any]):
        size = int((fields.get("params") or {}).get("batch_size") or self.settings.get("batch_size") or 32)
        for start in range(0, len(texts), size):
            enc = self.tokenizer(texts[start:start + size], return_tensors="np", padding=True, truncation=True)
            feed = {name: enc[name].astype("int64") for name in self.input_names if name in enc}
            yield enc, self.session.run(None, feed)[0]

    def texts(self, fields: Dict[str, Any]) -> tuple[List[str], bool]:
        text = fields.get("text")
        if text is None:
            raise InputError("this ONNX model got no text: give `text:`, e.g. `text: ${input.text}`.")
        return ([str(t) for t in text], True) if isinstance(text, list) else ([str(text)], False)

    def info(self) -> Dict[str, Any]:
        return {"device": "onnxruntime · " + self.session.get_providers()[0].replace("ExecutionProvider", "").lower(),
                "dtype": "onnx", "memory_bytes": os.path.getsize(self.model_path)}

    def unload(self) -> None:
        self.session = None


class OnnxTextClassifier(_OnnxText):
    """logits -> ``{label, score, label_id, scores}`` (labels: ``options.labels`` or config.json)."""

    def load(self) -> None:
        super().load()
        labels = self.options.get("labels") or self.settings.get("labels")
        config = os.path.join(os.path.dirname(self.model_path), "config.json")
        if not labels and os.path.exists(config):
            with open(config) as f:
                id2label = json.load(f).get("id2label") or {}
            labels = [id2label[k] for k in sorted(id2label, key=int)]
        self.labels = labels

    def run(self, fields: Dict[str, Any]) -> Any:
        import numpy as np

        texts, many = self.texts(fields)
        results = []
        for _, logits in self.outputs(texts, fields):
            e = np.exp(logits - logits.max(axis=-1, keepdims=True))
            probs = e / e.sum(axis=-1, keepdims=True)
            names = self.labels or [f"LABEL_{i}" for i in range(probs.shape[-1])]
            for row in probs.tolist():
                best = int(np.argmax(row))
                results.append({"label": names[best], "score": row[best], "label_id": best,
                                "scores": dict(zip(names, row))})
        return results if many else results[0]


class OnnxTextEmbedding(_OnnxText):
    """last hidden state -> mean pooled, L2-normalised ``{embedding, dimensions}``."""

    def run(self, fields: Dict[str, Any]) -> Any:
        import numpy as np

        texts, many = self.texts(fields)
        normalize = (fields.get("params") or {}).get("normalize", True)
        vectors = []
        for enc, hidden in self.outputs(texts, fields):
            mask = enc["attention_mask"][..., None].astype(hidden.dtype)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            if normalize:
                pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            vectors += [{"embedding": row, "dimensions": len(row)} for row in pooled.tolist()]
        return vectors if many else vectors[0]
