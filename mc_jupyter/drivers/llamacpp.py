"""``driver: llamacpp``: GGUF models through llama-cpp-python, for text-generation, chat-completion and
text-embedding.

``model:`` is a local ``.gguf`` path (``format: gguf``) or a hub repository with ``filename``
(:func:`mc_jupyter.drivers.sources.model_path`). llama.cpp's own settings go under ``options:``
(``n_ctx``, ``n_gpu_layers``, ``n_threads``, ``n_batch``, ... any ``llama_cpp.Llama`` argument).
The task (:mod:`mc_jupyter.tasks.text_generation`) owns prompts, messages and parameters; they map
onto llama.cpp's with :func:`completion_kwargs` (``temperature: 0`` is greedy). A conversation is
handed to ``create_chat_completion``, which applies the GGUF's own chat template. Streaming yields
llama.cpp's chunks and stops at the next one once asked to.

text-embedding (:class:`LlamaCppTextEmbedding`) loads the GGUF with ``embedding=True`` and embeds each
text with ``Llama.embed``. A GGUF that pools its own vectors (a BERT-family embedding model carries its
``pooling_type``; ``options: {pooling_type: N}`` overrides it with llama.cpp's numbers) gives one vector
per text, used as it is; one that does not (``pooling_type`` none, as a Llama GGUF) gives a vector per
token, pooled here as ``params.pooling`` says (mean, the default; cls, the first token; max). The vector
is L2-normalised unless ``normalize: false``. ``max_input_length`` keeps the text's first tokens; a text
longer than the context is cut to it (``n_ctx``, 512 by default for embeddings).
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any, Dict, Iterator, List, Optional

from ..catalog import Device
from ..errors import InputError, ModelLoadError
from ..secrets import scrub
from ..tasks.embedding import EmbeddingParams, TextEmbeddingTask
from ..tasks.text_generation import ChatCompletionTask, GenerationParams, TextGenerationTask
from .sources import model_path

#: The spec's parameter -> llama.cpp's name (``max_tokens`` and ``stop`` are every engine's).
NAMES = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
         "repetition_penalty": "repeat_penalty", "seed": "seed"}

#: llama.cpp's context when ``options:`` gives no ``n_ctx`` (llama-cpp-python's own default is 512).
DEFAULT_N_CTX = 2048

#: An embedding model's context without ``n_ctx`` (BERT-family embedding models are trained on 512).
DEFAULT_EMBEDDING_N_CTX = 512


def completion_kwargs(params: GenerationParams) -> Dict[str, Any]:
    """``Llama.create_completion`` / ``create_chat_completion`` arguments from the generation parameters."""
    return params.engine(NAMES)


class _Gguf:
    """A GGUF loaded through ``llama_cpp.Llama`` (``self.llm``), shared by every llamacpp task: ``options:``
    are llama.cpp's own arguments, over :meth:`llama_options`' defaults."""

    config: Any
    component_id: str

    def llama_options(self, options: Dict[str, Any]) -> None:
        """Fill the task's defaults into ``options`` (what the user gave wins)."""
        options.setdefault("n_ctx", DEFAULT_N_CTX)

    def load(self) -> None:
        import llama_cpp
        from llama_cpp import Llama

        model = self.config.model
        path = model_path(model, component=self.component_id)
        if not path or not os.path.isfile(path):
            raise ModelLoadError(f"the llamacpp driver needs a .gguf file; `{scrub(str(path or model))}` is not one.\n"
                                 f"  Give `model: {{provider: local, path: model.gguf, format: gguf}}`, or a hub "
                                 f"`repository:` with `filename: model.Q4_K_M.gguf`.")
        options = dict(self.config.options or {})
        self.llama_options(options)
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

    def unload(self) -> None:
        if hasattr(self, "llm"):
            self.llm.close() if hasattr(self.llm, "close") else None
            del self.llm


class _LlamaCpp(_Gguf, TextGenerationTask):
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


#: llama.cpp's pooling types (``LLAMA_POOLING_TYPE_*``) by number, as ``options.pooling_type`` takes them.
POOLING_NAMES = {-1: "unspecified", 0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


class LlamaCppTextEmbedding(_Gguf, TextEmbeddingTask):
    """text-embedding from a GGUF embedding model (see the module's docstring for pooling)."""

    def llama_options(self, options: Dict[str, Any]) -> None:
        options["embedding"] = True
        options.setdefault("n_ctx", DEFAULT_EMBEDDING_N_CTX)
        options.setdefault("n_batch", options["n_ctx"])     # a whole text in one batch (Llama.embed's limit)
        options.setdefault("n_ubatch", options["n_batch"])  # non-causal models decode a text in one ubatch

    def load(self) -> None:
        super().load()
        self.model_pooling = POOLING_NAMES.get(int(self.llm.pooling_type()), "unspecified")
        if self.model_pooling in ("mean", "cls", "last", "rank"):     # the model pools: its way by default
            self.default_pooling = self.model_pooling if self.model_pooling in ("mean", "cls") else None

    def generate(self, texts: List[str], params: EmbeddingParams) -> List[Any]:
        return [self.embed(text, params) for text in texts]

    def embed(self, text: str, params: EmbeddingParams) -> List[float]:
        """One text's vector: llama.cpp's own when the model pools, else its token vectors pooled here."""
        text = self.clip(text, params.max_input_length)
        out = self.llm.embed(text, normalize=False, truncate=True)
        if not out:
            raise InputError(f"component `{self.component_id}`: the text gives no tokens to embed.")
        if isinstance(out[0], list):          # pooling none: a vector per token
            vector = pool_tokens(out, params.pooling)
        else:
            if params.pooling not in (None, self.model_pooling):
                raise InputError(
                    f"component `{self.component_id}`: this GGUF pools its own vectors ({self.model_pooling}), so "
                    f"`pooling: {params.pooling}` cannot be applied.\n  Drop `pooling:`, or load it with "
                    f"`options: {{pooling_type: 0}}` (llama.cpp's none) to pool the token vectors here.")
            vector = list(out)
        return l2_normalize(vector) if params.normalize else vector

    def clip(self, text: str, max_tokens: Optional[int]) -> str:
        """``text`` cut to its first ``max_tokens`` tokens (llama.cpp's own tokenizer)."""
        if not max_tokens:
            return text
        tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=False)
        if len(tokens) <= max_tokens:
            return text
        return self.llm.detokenize(tokens[:max_tokens]).decode("utf-8", errors="ignore")


def pool_tokens(rows: List[List[float]], mode: str) -> List[float]:
    """Token vectors pooled: ``mean`` (the default), ``cls`` (the first token) or ``max`` (per dimension)."""
    if mode == "cls":
        return list(rows[0])
    if mode == "max":
        return [max(column) for column in zip(*rows)]
    n = len(rows)
    return [math.fsum(column) / n for column in zip(*rows)]


def l2_normalize(vector: List[float]) -> List[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 1e-12 else list(vector)
