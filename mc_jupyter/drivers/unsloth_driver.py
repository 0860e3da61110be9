"""``driver: unsloth``: text-generation and chat-completion through Unsloth's FastLanguageModel.

Only loading is Unsloth's: ``FastLanguageModel.from_pretrained`` (4-bit with ``quantization:
nf4``/``int4``, 8-bit with ``int8``; ``options.max_seq_length``, default 2048), then
``for_inference``. Generation, batching, the position check, streaming and LoRA adapters are the
transformers backend's (:mod:`hf_generation`), since Unsloth's models are transformers models.
Unsloth needs a CUDA GPU.
"""

from __future__ import annotations

from typing import Any, Dict

from ..catalog import Quantization
from ..devices import module_bytes, parameter_count, require_cuda, resolve_dtype
from .base import number
from .hf_generation import ChatCompletion, TextGeneration
from .sources import ModelSource, resolve_source

#: Unsloth's ``max_seq_length`` when ``options:`` gives none.
DEFAULT_MAX_SEQ_LENGTH = 2048


def load_kwargs(config: Any, source: ModelSource, dtype: Any) -> Dict[str, Any]:
    """``FastLanguageModel.from_pretrained(**load_kwargs(...))`` for a component's typed ``config`` and its
    resolved ``source``."""
    options = dict(config.options or {})
    kwargs: Dict[str, Any] = {"model_name": source.location,
                              "max_seq_length": number(options.pop("max_seq_length", DEFAULT_MAX_SEQ_LENGTH),
                                                       "options.max_seq_length", int, 1),
                              "dtype": dtype,
                              "load_in_4bit": config.quantization in (Quantization.NF4, Quantization.INT4),
                              "load_in_8bit": config.quantization == Quantization.INT8}
    for key in ("revision", "token"):
        if source.kwargs.get(key) is not None:
            kwargs[key] = source.kwargs[key]
    if config.trust_remote_code:
        kwargs["trust_remote_code"] = True
    kwargs.update(options)
    return kwargs


class _UnslothLoad:
    """Replaces the transformers backend's load with Unsloth's; the rest of the backend is unchanged."""

    def load(self) -> None:
        require_cuda("unsloth")
        from unsloth import FastLanguageModel

        config = self.config
        source = resolve_source(config.model, config.task)
        self.source, self.source_description = source, f"unsloth: {source.description}"
        dtype = resolve_dtype(config.precision, "cuda")
        self.model, self.tokenizer = FastLanguageModel.from_pretrained(**load_kwargs(config, source, dtype))
        if config.peft_adapters:
            from .adapters import attach
            self.model = attach(self.model, config.peft_adapters)
        FastLanguageModel.for_inference(self.model)
        self.placement = None
        self.device, self.dtype = "cuda", str(dtype).replace("torch.", "")
        if config.quantization != Quantization.NONE:
            self.dtype += f" · {config.quantization}"
        self.parameters, self.memory_bytes = parameter_count(self.model), module_bytes(self.model)
        self.after_load()


class UnslothTextGeneration(_UnslothLoad, TextGeneration):
    pass


class UnslothChatCompletion(_UnslothLoad, ChatCompletion):
    pass
