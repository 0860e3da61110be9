"""The transformers backend of text-generation and chat-completion: a causal LM's ``generate``.

The task (:mod:`mc_jupyter.tasks.text_generation`) owns the prompts, the messages and the parameters;
this backend loads the model (:class:`HFDriver`), checks that prompt + ``max_output_length`` fit the
model's positions before anything is generated, and generates: list inputs in batches padded on the
left, ``${result}`` the new text only. ``fast_decode: true`` takes the fused decode step of
:mod:`fast_decode` where it applies. Streaming runs ``generate`` in a thread: its exceptions reach
the caller, and a set ``stop`` event (a kernel interrupt) ends it at the next token.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import InputError, ModelLoadError
from ..tasks.base import Call
from ..tasks.text_generation import ChatCompletionTask, GenerationParams, TextGenerationTask, chat_prompt
from .hf_common import HFDriver

def seed_torch(params: GenerationParams) -> None:
    """With ``seed``, torch seeded (once per call, before its first batch)."""
    if params.seed is not None:
        import torch
        torch.manual_seed(params.seed)


#: Config fields that give a model's most positions, in the order looked at.
POSITION_FIELDS = ("n_positions", "max_position_embeddings", "max_sequence_length", "seq_length", "n_ctx")


def max_positions(model: Any) -> Optional[Tuple[int, str]]:
    """(most positions, the config field saying so) of the model's (text decoder's) config, if it says."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    for name in POSITION_FIELDS:
        value = getattr(text, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, name
    return None


def check_length(model: Any, prompt_tokens: int, max_new_tokens: int, which: str = "the prompt") -> None:
    """An InputError, before ``generate``, when prompt + ``max_output_length`` pass the model's positions
    (a learned position table would fail with an IndexError mid-generation; rotary ones run off what
    they were trained for)."""
    found = max_positions(model)
    if found is None or prompt_tokens + max_new_tokens <= found[0]:
        return
    limit, field = found
    room = limit - prompt_tokens
    fix = (f"lower `max_output_length` to {room} or less, or shorten the prompt" if room > 0 else
           f"shorten the prompt to fewer than {limit} tokens (and keep `max_output_length` within what is left)")
    raise InputError(f"{which} has {prompt_tokens} tokens, and with `max_output_length` {max_new_tokens} that makes "
                     f"{prompt_tokens + max_new_tokens} positions, more than the {limit} this model takes "
                     f"(`{field}` in its config).\n  Fix: {fix}.")


def group_sequences(decoded: List[str], n: int) -> List[Any]:
    """``num_return_sequences: n`` gives n texts per input: one list per input when n > 1."""
    return decoded if n == 1 else [decoded[i:i + n] for i in range(0, len(decoded), n)]


def stream_generate(driver: Any, inputs: Dict[str, Any], kwargs: Dict[str, Any],
                    stop: threading.Event, counted: int = 0) -> Iterator[str]:
    """``driver.model.generate(**inputs, **kwargs)`` on a thread, its new text as chunks (the prompt, or an
    encoder-decoder's start token, skipped): a set ``stop`` ends it at the next token, an exception on
    the thread reaches the caller, and ``driver.tokens_generated`` counts the steps (on from ``counted``: the
    tokens of the stream's earlier generations, a recording's earlier clips). Every transformers backend that
    streams (text-generation, chat-completion, text-to-text, speech-to-text) goes through here."""
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    driver.tokens_generated = counted

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            import torch
            driver.tokens_generated += 1
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

    streamer = TextIteratorStreamer(driver.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=0.1)
    failure: List[BaseException] = []

    def work() -> None:
        import torch
        try:
            with torch.inference_mode():
                driver.model.generate(**inputs, **kwargs, streamer=streamer,
                                      stopping_criteria=StoppingCriteriaList([_Stop()]))
        except BaseException as e:  # handed to the caller's thread below
            failure.append(e)
            streamer.end()

    thread = threading.Thread(target=work, name=f"mc_jupyter-generate-{driver.component_id}", daemon=True)
    thread.start()
    try:
        while True:
            try:
                chunk = next(streamer)
            except StopIteration:
                break
            except queue.Empty:
                if not thread.is_alive() and streamer.text_queue.empty():
                    break
                continue
            if chunk:
                yield chunk
    finally:
        stop.set()
        thread.join()
    if failure:
        raise failure[0]


class _Transformers(HFDriver, TextGenerationTask):
    """What both tasks share on transformers: the fast path, batches, the position check, streaming."""

    auto_class = "AutoModelForCausalLM"
    default_batch_size = 8
    fast = None      # a FastDecoder with `fast_decode: true`
    max_input_length: Optional[int] = None   # the running call's `max_input_length` (tokens kept), set by check

    def after_load(self) -> None:
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        if self.config.fast_decode:
            from .fast_decode import FastDecoder, check_supported
            check_supported(self.model, self.config, self.component_id)
            quantization = str(self.config.quantization)
            self.fast = FastDecoder(self.model, quantization=None if quantization == "none" else quantization)
            if self.fast.quantization:        # the linears are packed now (not parameters: counted apart)
                from ..devices import module_bytes, release_memory
                from .quant_weights import quantized_bytes
                self.memory_bytes = module_bytes(self.model) + quantized_bytes(self.model)
                release_memory()                # the plain weights' memory back to the device

    def unload(self) -> None:
        self.fast = None      # its static caches and CUDA graphs
        super().unload()

    # -- what the engine is handed ---------------------------------------------------------------
    def engine_text(self, item: Any) -> str:
        """The text the tokenizer gets for one item: the prompt (the chat task: the chat template applied)."""
        return item

    def tokenize(self, items: List[Any]) -> Dict[str, Any]:
        """A left-padded batch on the model's device (a chat template carries its own special tokens)."""
        texts = [self.engine_text(item) for item in items]
        cut = self.max_input_length                     # the call's `max_input_length` (set by check)
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self.chat,
                              truncation=cut is not None, max_length=cut).to(self.model.device)

    # -- before anything is generated ------------------------------------------------------------
    def check(self, call: Call) -> None:
        """Every prompt against the model's positions (the longest one, in a list, named), then torch seeded."""
        texts = [self.engine_text(item) for item in call.items]
        self.max_input_length = call.params.max_input_length
        counts = [min(len(ids), self.max_input_length or len(ids))
                  for ids in self.tokenizer(texts, add_special_tokens=not self.chat)["input_ids"]]
        for index, count in enumerate(counts, 1):
            which = ("the conversation (chat template applied)" if self.chat else
                     f"prompt #{index} of the list" if call.many else "the prompt")
            check_length(self.model, count, call.params.max_output_length, which)
        seed_torch(call.params)

    # -- the backend's hooks ---------------------------------------------------------------------
    def _fast_args(self, kwargs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """``generate``'s keyword arguments for the fast path, or None where it does not apply
        (``stop_sequences``, ``num_return_sequences``): those calls run through ``generate``."""
        if self.fast is None or kwargs.get("stop_strings") or int(kwargs.get("num_return_sequences", 1)) != 1 \
                or int(kwargs.get("num_beams", 1)) != 1:
            return None
        g = self.model.generation_config
        sample = bool(kwargs.get("do_sample", g.do_sample))

        def value(name: str) -> Any:     # what generate would use: the call's, else the model's config
            return kwargs[name] if name in kwargs else getattr(g, name, None)

        return dict(pad_token_id=kwargs.get("pad_token_id"), do_sample=sample,
                    temperature=value("temperature") if sample else None,
                    top_k=value("top_k") if sample else None, top_p=value("top_p") if sample else None,
                    repetition_penalty=value("repetition_penalty"),
                    min_new_tokens=int(value("min_new_tokens") or 0))

    def generate(self, items: List[Any], params: GenerationParams) -> List[Any]:
        import torch

        kwargs = params.transformers(self.tokenizer)
        fast = self._fast_args(kwargs)
        enc = self.tokenize(items)
        if fast is not None:
            new = self.fast.generate_ids(enc["input_ids"], enc["attention_mask"], kwargs["max_new_tokens"], **fast)
        else:
            with torch.inference_mode():
                out = self.model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
        decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return group_sequences(decoded, params.sequences)

    def _fast_stream(self, enc: Dict[str, Any], max_new: int, fast: Dict[str, Any],
                     stop: threading.Event) -> Iterator[str]:
        """The fast path's tokens as text chunks (each step read back: streaming needs them at once).

        Each chunk is handed on when the next one is ready, and the last after the final token, so the
        token count shown with the last chunk is the whole count (as with ``generate``'s streamer)."""
        ids: List[int] = []
        shown, pending = "", ""
        self.tokens_generated = 0
        eos = set(self.fast.eos_ids.tolist())
        for step in self.fast.generate(enc["input_ids"], enc["attention_mask"], max_new, stop=stop, **fast):
            token = int(step[0])
            self.tokens_generated += 1
            if token in eos:
                break
            ids.append(token)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd") or len(text) <= len(shown):   # half a character, or nothing new yet
                continue
            if pending:
                yield pending
            pending, shown = text[len(shown):], text
        final = self.tokenizer.decode(ids, skip_special_tokens=True)
        pending += final[len(shown):] if final.startswith(shown) else ""
        if pending:
            yield pending

    def generate_stream(self, item: Any, params: GenerationParams, stop: threading.Event) -> Iterator[str]:
        kwargs = params.transformers(self.tokenizer)
        enc = self.tokenize([item])
        fast = self._fast_args(kwargs)
        if fast is not None:
            try:
                yield from self._fast_stream(enc, kwargs["max_new_tokens"], fast, stop)
            finally:
                stop.set()
            return

        yield from stream_generate(self, enc, kwargs, stop)


class TextGeneration(_Transformers):
    """``text:`` (or ``prompt:``) -> continuation."""


class ChatCompletion(ChatCompletionTask, _Transformers):
    """``messages:`` -> the assistant's reply, through the tokenizer's chat template."""

    def after_load(self) -> None:
        super().after_load()
        if not (getattr(self.tokenizer, "chat_template", None) or self.config.chat_template):
            raise ModelLoadError(f"the tokenizer of `{self.source.location}` has no chat template, so it cannot do "
                                 f"chat-completion.\n  Use a chat/instruct model, give the component a `chat_template:` "
                                 f"(a Jinja text), or use `task: text-generation`.")

    def engine_text(self, item: Any) -> str:
        return chat_prompt(self.tokenizer, item, self.config.chat_template)
