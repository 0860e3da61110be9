"""``driver: llamacpp``: GGUF models through llama-cpp-python, for text-generation and chat-completion.

``model:`` is a local ``.gguf`` path (``format: gguf``) or a hub repository with ``filename``
(:func:`mc_jupyter.drivers.sources.model_path`). llama.cpp's own settings go under ``options:``
(``n_ctx``, ``n_gpu_layers``, ``n_threads``, ``n_batch``, ... any ``llama_cpp.Llama`` argument).
The task (:mod:`mc_jupyter.tasks.text_generation`) owns prompts, messages and parameters; they map
onto llama.cpp's with :func:`completion_kwargs` (``temperature: 0`` is greedy). A conversation is
handed to ``create_chat_completion``, which applies the GGUF's own chat template. Streaming yields
llama.cpp's chunks and stops at the next one once asked to.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Iterator, List

from ..catalog import Device
from ..errors import ModelLoadError
from ..secrets import scrub
from ..tasks.text_generation import ChatCompletionTask, GenerationParams, TextGenerationTask
from .sources import model_path

#: The spec's parameter -> llama.cpp's name (``max_tokens`` and ``stop`` are every engine's).
NAMES = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
         "repetition_penalty": "repeat_penalty", "seed": "seed"}

#: llama.cpp's context when ``options:`` gives no ``n_ctx`` (llama-cpp-python's own default is 512).
DEFAULT_N_CTX = 2048


def completion_kwargs(params: GenerationParams) -> Dict[str, Any]:
    """``Llama.create_completion`` / ``create_chat_completion`` arguments from the generation parameters."""
    return params.engine(NAMES)


class _LlamaCpp(TextGenerationTask):
    def load(self) -> None:
        import llama_cpp
        from llama_cpp import Llama

        model = self.config.model
        path = model_path(model)
        if not path or not os.path.isfile(path):
            raise ModelLoadError(f"the llamacpp driver needs a .gguf file; `{scrub(str(path or model))}` is not one.\n"
                                 f"  Give `model: {{provider: local, path: model.gguf, format: gguf}}`, or a hub "
                                 f"`repository:` with `filename: model.Q4_K_M.gguf`.")
        options = dict(self.config.options or {})
        options.setdefault("n_ctx", DEFAULT_N_CTX)
        gpu = self.config.device != Device.CPU and llama_cpp.llama_supports_gpu_offload()
        options.setdefault("n_gpu_layers", -1 if gpu else 0)
        try:
            self.llm = Llama(model_path=path, verbose=False, **options)
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"llama.cpp could not load {path}: {e}\n  Check that it is a GGUF file llama.cpp "
                                 f"supports, and the `options:` given.") from None
        self.source_description = f"gguf: {path}"
        self.device = "llama.cpp · " + ("gpu" if options["n_gpu_layers"] else "cpu")
        self.dtype = "gguf"
        self.memory_bytes = os.path.getsize(path)

    def generate(self, items: List[Any], params: GenerationParams) -> List[str]:
        kwargs = completion_kwargs(params)
        return [self.complete(item, kwargs) for item in items]

    def generate_stream(self, item: Any, params: GenerationParams, stop: threading.Event) -> Iterator[str]:
        chunks = self.complete_stream(item, completion_kwargs(params))
        try:
            for text in chunks:
                if stop.is_set():
                    break
                if text:
                    yield text
        finally:
            chunks.close()

    def unload(self) -> None:
        if hasattr(self, "llm"):
            self.llm.close() if hasattr(self.llm, "close") else None
            del self.llm

    # -- what llama.cpp is handed ----------------------------------------------------------------
    def complete(self, item: Any, kwargs: Dict[str, Any]) -> str:
        raise NotImplementedError

    def complete_stream(self, item: Any, kwargs: Dict[str, Any]) -> Iterator[str]:
        raise NotImplementedError


class LlamaCppTextGeneration(_LlamaCpp):
    def complete(self, prompt: str, kwargs: Dict[str, Any]) -> str:
        return self.llm.create_completion(prompt, **kwargs)["choices"][0]["text"]

    def complete_stream(self, prompt: str, kwargs: Dict[str, Any]) -> Iterator[str]:
        return (c["choices"][0]["text"] for c in self.llm.create_completion(prompt, stream=True, **kwargs))


class LlamaCppChatCompletion(ChatCompletionTask, _LlamaCpp):
    def complete(self, messages: List[Dict[str, str]], kwargs: Dict[str, Any]) -> str:
        return self.llm.create_chat_completion(messages, **kwargs)["choices"][0]["message"]["content"] or ""

    def complete_stream(self, messages: List[Dict[str, str]], kwargs: Dict[str, Any]) -> Iterator[str]:
        return (c["choices"][0]["delta"].get("content", "")
                for c in self.llm.create_chat_completion(messages, stream=True, **kwargs))
