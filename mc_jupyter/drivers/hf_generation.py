"""text-generation and chat-completion through a causal LM's ``generate``.

``${result}`` is the generated text only (not the prompt); a list input gives a list, run in
batches padded on the left. ``temperature: 0`` means greedy. Streaming runs ``generate`` in a
thread: its exceptions reach the caller, and a set ``stop`` event (a kernel interrupt) ends it at
the next token.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import InputError, ModelLoadError
from .base import Driver
from .hf_common import HFDriver

DEFAULT_MAX_NEW_TOKENS = 256


def generate_kwargs(driver: Driver, fields: Dict[str, Any], tokenizer: Any,
                    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Dict[str, Any]:
    """The spec's generation parameters (``max_output_length``, ``temperature: 0`` = greedy, ...) as
    keyword arguments of transformers' ``generate``; with ``seed``, torch is seeded here.
    ``max_new_tokens`` is the length without ``max_output_length``."""
    p = lambda name, default=None: driver.param(fields, name, default)  # noqa: E731
    n = lambda name, cast=int, minimum=None: driver.number(fields, name, None, cast, minimum)  # noqa: E731
    kwargs: Dict[str, Any] = {"max_new_tokens": driver.number(fields, "max_output_length", max_new_tokens, int, 1)}
    if p("min_output_length") is not None:
        kwargs["min_new_tokens"] = n("min_output_length", int, 0)
    temperature = n("temperature", float, 0)
    do_sample = p("do_sample")
    if temperature is not None and temperature == 0.0:
        do_sample = False
    elif temperature is not None:
        kwargs["temperature"] = temperature
        do_sample = True if do_sample is None else do_sample
    if do_sample is not None:
        kwargs["do_sample"] = bool(do_sample)
    if kwargs.get("do_sample"):
        for name, cast in (("top_p", float), ("top_k", int)):
            if p(name) is not None:
                kwargs[name] = n(name, cast, 0)
    elif kwargs.get("do_sample") is False:
        # greedy: neutralise sampling defaults a model's generation_config may carry
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if p("repetition_penalty") is not None:
        kwargs["repetition_penalty"] = n("repetition_penalty", float, 0)
    if p("num_return_sequences") is not None:
        kwargs["num_return_sequences"] = n("num_return_sequences", int, 1)
    stops = p("stop_sequences")
    if stops:
        kwargs["stop_strings"] = [stops] if isinstance(stops, str) else list(stops)
        kwargs["tokenizer"] = tokenizer
    kwargs["pad_token_id"] = tokenizer.pad_token_id
    if p("seed") is not None:
        import torch
        torch.manual_seed(n("seed"))
    return kwargs


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


class _Generation(HFDriver):
    auto_class = "AutoModelForCausalLM"
    streams = True

    fast = None      # a FastDecoder with `fast_decode: true`

    def after_load(self) -> None:
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        if self.settings.get("fast_decode"):
            from .fast_decode import FastDecoder, check_supported
            check_supported(self.model, dict(self.settings, id=self.component_id))
            self.fast = FastDecoder(self.model)

    def unload(self) -> None:
        self.fast = None      # its static caches and CUDA graphs
        super().unload()

    def _fast_args(self, kwargs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """``generate``'s keyword arguments for the fast path, or None where it does not apply
        (``stop_sequences``, ``num_return_sequences``): those calls run through ``generate``."""
        if self.fast is None or kwargs.get("stop_strings") or int(kwargs.get("num_return_sequences", 1)) != 1:
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

    def run(self, fields: Dict[str, Any]) -> Any:
        import torch

        prompts, many = self.prompts(fields)
        kwargs = generate_kwargs(self, fields, self.tokenizer)
        n = int(kwargs.get("num_return_sequences", 1))
        fast = self._fast_args(kwargs)
        texts: List[Any] = []
        encoded = [self.tokenize(batch) for batch in self.batches(prompts, fields, default=8)]
        self._check_lengths(encoded, kwargs["max_new_tokens"], many)
        for enc in encoded:
            if fast is not None:
                new = self.fast.generate_ids(enc["input_ids"], enc["attention_mask"], kwargs["max_new_tokens"], **fast)
            else:
                with torch.inference_mode():
                    out = self.model.generate(**enc, **kwargs)
                new = out[:, enc["input_ids"].shape[1]:]
            decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            texts.extend(group_sequences(decoded, n))
        return texts if many else texts[0]

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

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        prompts, many = self.prompts(fields)
        if many and len(prompts) != 1:
            raise InputError("streaming takes one prompt, not a list.\n  Set `streaming: false` for list inputs.")
        kwargs = generate_kwargs(self, fields, self.tokenizer)
        enc = self.tokenize(prompts)
        self._check_lengths([enc], kwargs["max_new_tokens"], False)
        fast = self._fast_args(kwargs)
        if fast is not None:
            try:
                yield from self._fast_stream(enc, kwargs["max_new_tokens"], fast, stop)
            finally:
                stop.set()
            return

        driver = self
        self.tokens_generated = 0

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                import torch
                driver.tokens_generated += 1
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=0.1)
        failure: List[BaseException] = []

        def work() -> None:
            import torch
            try:
                with torch.inference_mode():
                    self.model.generate(**enc, **kwargs, streamer=streamer,
                                        stopping_criteria=StoppingCriteriaList([_Stop()]))
            except BaseException as e:  # handed to the caller's thread below
                failure.append(e)
                streamer.end()

        thread = threading.Thread(target=work, name=f"mc_jupyter-generate-{self.component_id}", daemon=True)
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

    def _check_lengths(self, encoded: List[Dict[str, Any]], max_new: int, many: bool) -> None:
        """:func:`check_length` for every prompt of every batch (the longest one, in a list, named)."""
        index = 0
        for enc in encoded:
            lengths = enc["attention_mask"].sum(-1).tolist()
            for length in lengths:
                index += 1
                which = f"prompt #{index} of the list" if many else "the prompt"
                if self.settings.get("task") == "chat-completion":
                    which = "the conversation (chat template applied)"
                check_length(self.model, int(length), max_new, which)

    # -- what each task fills -------------------------------------------------------------------
    def prompts(self, fields: Dict[str, Any]) -> tuple[List[Any], bool]:
        """The prompts of this action, and whether the input was a list."""
        raise NotImplementedError

    def tokenize(self, prompts: List[Any]) -> Dict[str, Any]:
        """A left-padded batch on the model's device."""
        raise NotImplementedError


class TextGeneration(_Generation):
    """``text:`` (or ``prompt:``) -> continuation."""

    def prompts(self, fields: Dict[str, Any]) -> tuple[List[Any], bool]:
        text = fields.get("text", fields.get("prompt"))
        if text is None:
            raise InputError("text-generation got no prompt: give `text:` (or `prompt:`) in the component, "
                             "e.g. `text: ${input.prompt}`.")
        many = isinstance(text, list)
        return ([str(t) for t in text] if many else [str(text)]), many

    def tokenize(self, prompts: List[Any]) -> Dict[str, Any]:
        return self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.model.device)


class ChatCompletion(_Generation):
    """``messages:`` -> the assistant's reply, through the tokenizer's chat template."""

    def after_load(self) -> None:
        super().after_load()
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelLoadError(f"the tokenizer of `{self.settings.get('model')}` has no chat template, so it "
                                 f"cannot do chat-completion.\n  Use a chat/instruct model, or `task: text-generation`.")

    def prompts(self, fields: Dict[str, Any]) -> tuple[List[Any], bool]:
        messages = fields.get("messages")
        if not messages:
            raise InputError("chat-completion got no messages: give `messages:` with `role` and `content`.")
        if isinstance(messages, dict):
            messages = [messages]
        clean = []
        for m in messages:
            if isinstance(m, dict) and m.get("content") is None:
                continue   # an unset optional message (e.g. a system prompt not given)
            if not isinstance(m, dict) or "role" not in m:
                raise InputError(f"a chat message must be a mapping with `role` and `content`, not {m!r}")
            clean.append({"role": m["role"], "content": str(m["content"])})
        return [clean], False

    def tokenize(self, prompts: List[Any]) -> Dict[str, Any]:
        texts = [self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
