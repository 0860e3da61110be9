"""A custom mc_jupyter model that runs a TensorRT engine (``format: tensorrt``).

    component:
      type: model
      task: text-classification
      driver: custom
      model: {provider: local, path: ./sst2.plan, format: tensorrt}
      class: ./tensorrt_engine.py:TensorRTTextClassifier
      options: {tokenizer: ./sst2, labels: [NEGATIVE, POSITIVE]}
      text: ${input.text}

Build the engine on the GPU that will run it (engines are tied to a GPU model and TensorRT version),
from an ONNX export of the classifier (see tests/test_custom_driver.py for the export):

    trtexec --onnx=sst2.onnx --saveEngine=sst2.plan \
            --minShapes=input_ids:1x1,attention_mask:1x1 \
            --optShapes=input_ids:8x128,attention_mask:8x128 \
            --maxShapes=input_ids:32x512,attention_mask:32x512

Needs `pip install tensorrt` and a CUDA GPU. This file is an example of the custom-driver protocol
(mc_jupyter.drivers.custom): it is documented, not run in CI (no GPU there), and was not run on the
project's H200 either (TensorRT is not installed there).
"""

from __future__ import annotations

from typing import Any, Dict

from mc_jupyter.drivers.custom import CustomModel


class TensorRTTextClassifier(CustomModel):
    def load(self) -> None:
        import tensorrt as trt
        import torch
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.options["tokenizer"])
        self.labels = self.options.get("labels")
        logger = trt.Logger(trt.Logger.WARNING)
        with open(self.model_path, "rb") as f:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(f.read())
        self.context = self.engine.create_execution_context()
        self.torch = torch

    def run(self, fields: Dict[str, Any]) -> Any:
        torch = self.torch
        text = fields["text"]
        texts = text if isinstance(text, list) else [text]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
        inputs = {name: enc[name].to("cuda", torch.int64).contiguous() for name in ("input_ids", "attention_mask")}
        for name, tensor in inputs.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        logits = torch.empty((len(texts), len(self.labels)), device="cuda", dtype=torch.float32)
        self.context.set_tensor_address("logits", logits.data_ptr())
        stream = torch.cuda.current_stream()
        self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        probs = torch.softmax(logits, dim=-1).cpu().tolist()
        results = []
        for row in probs:
            best = max(range(len(row)), key=row.__getitem__)
            results.append({"label": self.labels[best], "score": row[best], "label_id": best,
                            "scores": dict(zip(self.labels, row))})
        return results if isinstance(text, list) else results[0]

    def unload(self) -> None:
        self.context = self.engine = None

    def info(self) -> Dict[str, Any]:
        return {"device": "cuda · tensorrt", "dtype": "tensorrt"}
