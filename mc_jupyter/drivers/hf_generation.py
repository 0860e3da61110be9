"""text-generation and chat-completion through a causal LM's ``generate``.

``${result}`` is the generated text only (not the prompt); a list input gives a list, run in
batches padded on the left. ``temperature: 0`` means greedy. Streaming runs ``generate`` in a
thread: its exceptions reach the caller, and a set ``stop`` event (a kernel interrupt) ends it at
the next token.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Dict, Iterator, List, Optional

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
    kwargs: Dict[str, Any] = {"max_new_tokens": int(p("max_output_length", max_new_tokens))}
    if p("min_output_length") is not None:
        kwargs["min_new_tokens"] = int(p("min_output_length"))
    temperature = p("temperature")
    do_sample = p("do_sample")
    if temperature is not None and float(temperature) == 0.0:
        do_sample = False
    elif temperature is not None:
        kwargs["temperature"] = float(temperature)
        do_sample = True if do_sample is None else do_sample
    if do_sample is not None:
        kwargs["do_sample"] = bool(do_sample)
    if kwargs.get("do_sample"):
        for name, cast in (("top_p", float), ("top_k", int)):
            if p(name) is not None:
                kwargs[name] = cast(p(name))
    elif kwargs.get("do_sample") is False:
        # greedy: neutralise sampling defaults a model's generation_config may carry
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if p("repetition_penalty") is not None:
        kwargs["repetition_penalty"] = float(p("repetition_penalty"))
    if p("num_return_sequences") is not None:
        kwargs["num_return_sequences"] = int(p("num_return_sequences"))
    stops = p("stop_sequences")
    if stops:
        kwargs["stop_strings"] = [stops] if isinstance(stops, str) else list(stops)
        kwargs["tokenizer"] = tokenizer
    kwargs["pad_token_id"] = tokenizer.pad_token_id
    if p("seed") is not None:
        import torch
        torch.manual_seed(int(p("seed")))
    return kwargs


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
        for batch in self.batches(prompts, fields, default=8):
            enc = self.tokenize(batch)
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
