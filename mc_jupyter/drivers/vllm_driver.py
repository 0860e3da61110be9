"""``driver: vllm``: text-generation and chat-completion in-process through ``vllm.LLM``.

The spec's settings map onto vLLM's own (:func:`engine_args`, :func:`sampling_kwargs`):
precision -> ``dtype`` ('auto' is float16, as the spec says for GPUs), quantization -> vLLM's
methods (nf4/int4 -> in-flight ``bitsandbytes`` 4-bit, int8 -> ``fp8`` weights), ``device_mode: auto``
-> tensor parallelism over every visible GPU, ``options:`` -> any other engine argument
(``max_model_len``, ``gpu_memory_utilization``, ...). Streaming steps vLLM's engine and yields the
new text of each step. vLLM needs CUDA (and cannot be installed on CPU-only machines).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Dict, Iterator, List

from ..devices import require_cuda
from ..errors import DeviceError, InputError
from .base import Driver, engine_params

_QUANTIZATION = {"none": None, "nf4": "bitsandbytes", "int4": "bitsandbytes", "int8": "fp8"}
_DTYPE = {"auto": "float16", "float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}
_ids = itertools.count()


def engine_args(settings: Dict[str, Any], gpu_count: int) -> Dict[str, Any]:
    """``vllm.LLM(**engine_args(...))`` for a component's settings."""
    model = settings.get("model")
    args: Dict[str, Any] = {}
    if isinstance(model, dict):
        if model.get("provider", "huggingface" if "repository" in model else "local") == "local":
            args["model"] = model["path"]
        else:
            args["model"] = model["repository"]
            if model.get("revision"):
                args["revision"] = model["revision"]
            if model.get("cache_dir"):
                args["download_dir"] = model["cache_dir"]
    else:
        args["model"] = model
    if settings.get("device") == "cpu":
        raise DeviceError("the vllm driver runs on CUDA GPUs here; use `driver: huggingface` for `device: cpu`.")
    args["dtype"] = _DTYPE[settings.get("precision", "auto")]
    quantization = _QUANTIZATION[settings.get("quantization", "none")]
    if quantization:
        args["quantization"] = quantization
    args["tensor_parallel_size"] = gpu_count if settings.get("device_mode") == "auto" else 1
    if settings.get("trust_remote_code"):
        args["trust_remote_code"] = True
    args.update(settings.get("options") or {})
    return args


_NAMES = {"temperature": ("temperature", float), "top_p": ("top_p", float), "top_k": ("top_k", int),
          "repetition_penalty": ("repetition_penalty", float), "min_output_length": ("min_tokens", int),
          "num_return_sequences": ("n", int), "seed": ("seed", int)}


def sampling_kwargs(params: Dict[str, Any]) -> Dict[str, Any]:
    """``vllm.SamplingParams(**sampling_kwargs(...))`` from the spec's generation parameters (0 is greedy)."""
    return engine_params(params, _NAMES)


class _Vllm(Driver):
    streams = True
    chat = False

    def load(self) -> None:
        import torch
        from vllm import LLM

        require_cuda("vllm")
        self.llm = LLM(**engine_args(self.settings, torch.cuda.device_count()))
        self.device = f"cuda × {self.llm.llm_engine.vllm_config.parallel_config.tensor_parallel_size}" \
            if hasattr(self.llm.llm_engine, "vllm_config") else "cuda"
        self.dtype = _DTYPE[self.settings.get("precision", "auto")]

    def params(self, fields: Dict[str, Any]):
        from vllm import SamplingParams
        merged = dict(fields.get("params") or {})
        for key in ("max_output_length", "stop_sequences"):
            if fields.get(key) is not None:
                merged.setdefault(key, fields[key])
        return SamplingParams(**sampling_kwargs(merged))

    def prompt(self, fields: Dict[str, Any]) -> Any:
        if self.chat:
            messages = fields.get("messages")
            if not messages:
                raise InputError("chat-completion got no messages: give `messages:` with `role` and `content`.")
            return self.llm.get_tokenizer().apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        text = fields.get("text", fields.get("prompt"))
        if text is None:
            raise InputError("text-generation got no prompt: give `text:` (or `prompt:`).")
        return text

    def run(self, fields: Dict[str, Any]) -> Any:
        prompt = self.prompt(fields)
        many = isinstance(prompt, list)
        outputs = self.llm.generate(prompt if many else [prompt], self.params(fields), use_tqdm=False)
        texts: List[str] = [o.outputs[0].text for o in outputs]
        return texts if many else texts[0]

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[str]:
        engine = self.llm.llm_engine
        request_id = f"mc_jupyter-{next(_ids)}"
        engine.add_request(request_id, self.prompt(fields), self.params(fields))
        sent = 0
        try:
            while engine.has_unfinished_requests() and not stop.is_set():
                for output in engine.step():
                    if output.request_id != request_id:
                        continue
                    text = output.outputs[0].text
                    if len(text) > sent:
                        yield text[sent:]
                        sent = len(text)
        finally:
            if engine.has_unfinished_requests():
                engine.abort_request([request_id])

    def unload(self) -> None:
        if hasattr(self, "llm"):
            del self.llm


class VllmTextGeneration(_Vllm):
    chat = False


class VllmChatCompletion(_Vllm):
    chat = True
