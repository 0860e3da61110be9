"""``driver: unsloth``: text-generation and chat-completion through Unsloth's FastLanguageModel.

Loading goes through ``FastLanguageModel.from_pretrained`` (4-bit with ``quantization: nf4``/``int4``,
8-bit with ``int8``; ``options.max_seq_length``, default 2048), then ``for_inference``; generation,
batching, streaming and LoRA adapters are the Hugging Face driver's, since Unsloth's models are
transformers models. Unsloth needs a CUDA GPU.
"""

from __future__ import annotations

from typing import Any, Dict

from ..devices import module_bytes, parameter_count, require_cuda, resolve_dtype
from .base import number
from .sources import resolve_source
from .hf_generation import ChatCompletion, TextGeneration


def load_kwargs(settings: Dict[str, Any], source_location: str, source_kwargs: Dict[str, Any], dtype: Any) -> Dict[str, Any]:
    """``FastLanguageModel.from_pretrained(**load_kwargs(...))`` for a component's settings."""
    quantization = settings.get("quantization", "none")
    kwargs: Dict[str, Any] = {"model_name": source_location,
                              "max_seq_length": number((settings.get("options") or {}).get("max_seq_length", 2048),
                                                       "options.max_seq_length", int, 1),
                              "dtype": dtype, "load_in_4bit": quantization in ("nf4", "int4"),
                              "load_in_8bit": quantization == "int8"}
    for key in ("revision", "token"):
        if source_kwargs.get(key) is not None:
            kwargs[key] = source_kwargs[key]
    if settings.get("trust_remote_code"):
        kwargs["trust_remote_code"] = True
    extra = {k: v for k, v in (settings.get("options") or {}).items() if k != "max_seq_length"}
    kwargs.update(extra)
    return kwargs


class _UnslothLoad:
    """Replaces the Hugging Face load with Unsloth's; the rest of the driver is unchanged."""

    def load(self) -> None:
        require_cuda("unsloth")
        from unsloth import FastLanguageModel

        source = resolve_source(self.settings.get("model"), self.settings["task"])
        self.source, self.source_description = source, f"unsloth: {source.description}"
        dtype = resolve_dtype(self.settings.get("precision", "auto"), "cuda")
        self.model, self.tokenizer = FastLanguageModel.from_pretrained(
            **load_kwargs(self.settings, source.location, source.kwargs, dtype))
        if self.settings.get("peft_adapters"):
            from .adapters import attach
            self.model = attach(self.model, self.settings["peft_adapters"])
        FastLanguageModel.for_inference(self.model)
        self.placement = None
        self.device, self.dtype = "cuda", str(dtype).replace("torch.", "")
        if self.settings.get("quantization", "none") != "none":
            self.dtype += f" · {self.settings['quantization']}"
        self.parameters, self.memory_bytes = parameter_count(self.model), module_bytes(self.model)
        self.after_load()


class UnslothTextGeneration(_UnslothLoad, TextGeneration):
    pass


class UnslothChatCompletion(_UnslothLoad, ChatCompletion):
    pass
