"""``driver: llamacpp``: GGUF models through llama-cpp-python, for text-generation and chat-completion.

``model:`` is a local ``.gguf`` path (``format: gguf``) or a hub repository with ``filename``.
llama.cpp's own settings go under ``options:`` (``n_ctx``, ``n_gpu_layers``, ``n_threads``,
``n_batch``, ... any ``llama_cpp.Llama`` argument). The spec's parameters map onto llama.cpp's
(:func:`completion_kwargs`); ``temperature: 0`` is greedy. Streaming yields llama.cpp's chunks and
stops at the next one once asked to.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Iterator, List

from ..errors import InputError, ModelLoadError
from .base import Driver, engine_params
from .sources import model_path


_NAMES = {"temperature": ("temperature", float), "top_p": ("top_p", float), "top_k": ("top_k", int),
          "repetition_penalty": ("repeat_penalty", float), "seed": ("seed", int)}


def completion_kwargs(params: Dict[str, Any]) -> Dict[str, Any]:
    """``Llama.create_completion`` / ``create_chat_completion`` arguments from the spec's parameters."""
    return engine_params(params, _NAMES)


class _LlamaCpp(Driver):
    streams = True
    chat = False

    def load(self) -> None:
        from llama_cpp import Llama

        path = model_path(self.settings.get("model"))
        if not path or not os.path.isfile(path):
            raise ModelLoadError(f"the llamacpp driver needs a .gguf file; `{self.settings.get('model')}` is not one.\n"
                                 f"  Give `model: {{provider: local, path: model.gguf, format: gguf}}`, or a hub "
                                 f"`repository:` with `filename: model.Q4_K_M.gguf`.")
        options = dict(self.settings.get("options") or {})
        options.setdefault("n_ctx", 2048)
        import llama_cpp
        gpu = self.settings.get("device") != "cpu" and llama_cpp.llama_supports_gpu_offload()
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

    def kwargs(self, fields: Dict[str, Any]) -> Dict[str, Any]:
        params = dict(fields.get("params") or {})
        for key in ("max_output_length", "stop_sequences"):
            if fields.get(key) is not None:
                params.setdefault(key, fields[key])
        return completion_kwargs(params)

    def run(self, fields: Dict[str, Any]) -> Any:
        prompts, many = self.prompts(fields)
        texts: List[str] = [self.complete(p, self.kwargs(fields)) for p in prompts]
        return texts if many else texts[0]

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[str]:
        prompts, many = self.prompts(fields)
        if many:
            raise InputError("streaming takes one prompt, not a list.\n  Set `streaming: false` for list inputs.")
        chunks = self.complete_stream(prompts[0], self.kwargs(fields))
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


class LlamaCppTextGeneration(_LlamaCpp):
    def prompts(self, fields: Dict[str, Any]) -> tuple[List[Any], bool]:
        text = fields.get("text", fields.get("prompt"))
        if text is None:
            raise InputError("text-generation got no prompt: give `text:` (or `prompt:`).")
        return ([str(t) for t in text], True) if isinstance(text, list) else ([str(text)], False)

    def complete(self, prompt: str, kwargs: Dict[str, Any]) -> str:
        return self.llm.create_completion(prompt, **kwargs)["choices"][0]["text"]

    def complete_stream(self, prompt: str, kwargs: Dict[str, Any]):
        return (c["choices"][0]["text"] for c in self.llm.create_completion(prompt, stream=True, **kwargs))


class LlamaCppChatCompletion(_LlamaCpp):
    def prompts(self, fields: Dict[str, Any]) -> tuple[List[Any], bool]:
        messages = fields.get("messages")
        if not messages:
            raise InputError("chat-completion got no messages: give `messages:` with `role` and `content`.")
        return [[{"role": m["role"], "content": str(m["content"])} for m in messages]], False

    def complete(self, messages: Any, kwargs: Dict[str, Any]) -> str:
        return self.llm.create_chat_completion(messages, **kwargs)["choices"][0]["message"]["content"] or ""

    def complete_stream(self, messages: Any, kwargs: Dict[str, Any]):
        return (c["choices"][0]["delta"].get("content", "")
                for c in self.llm.create_chat_completion(messages, stream=True, **kwargs))
