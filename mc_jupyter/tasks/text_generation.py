"""text-generation and chat-completion, whatever the backend: prompts, messages, generation parameters.

::

    fields ──► TextGenerationTask.prepare ──► Call(items = prompts (str) | [messages], params = GenerationParams)
                 prompts:   ``text:`` (or ``prompt:``), one or a list, each ``str()``
                 messages:  :func:`normalise_messages` (the one rule for every backend)
                 params:    :meth:`GenerationParams.read` (``params:`` or the action's own fields)
           backend.generate(batch, params)   ──► transformers: :meth:`GenerationParams.transformers`
                                                 llama.cpp, vLLM: :meth:`GenerationParams.engine`

A backend (``drivers/hf_generation.py``, ``llamacpp.py``, ``vllm_driver.py``, ``unsloth_driver.py``)
subclasses :class:`TextGenerationTask` or :class:`ChatCompletionTask` and fills only ``load``,
``generate``, ``generate_stream`` and ``unload``. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..config.positions import clip
from ..errors import InputError
from ..secrets import scrub
from .base import Call, ModelTask, flag, number_param, param

DEFAULT_MAX_OUTPUT_LENGTH = 256

NO_PROMPT = ("text-generation got no prompt: give `text:` (or `prompt:`) in the component, "
             "e.g. `text: ${input.prompt}`.")
NO_MESSAGES = "chat-completion got no messages: give `messages:` with `role` and `content`."
_MESSAGE_EXAMPLE = "Write e.g. `messages: [{role: system, content: ...}, {role: user, content: ${input.prompt}}]`."


def _shown(value: Any) -> str:
    """A value for an error message: its repr, any ``${env.*}`` secret masked, cut short."""
    return clip(scrub(repr(value)), 80)


def prompts_of(fields: Dict[str, Any]) -> Tuple[List[str], bool]:
    """The prompts of an action (``text:``, else ``prompt:``), each as text, and whether it was a list."""
    text = fields.get("text")
    if text is None:
        text = fields.get("prompt")
    if text is None:
        raise InputError(NO_PROMPT)
    if isinstance(text, (list, tuple)):
        return [str(t) for t in text], True
    return [str(text)], False


def normalise_messages(messages: Any) -> List[Dict[str, str]]:
    """The conversation every backend hands its engine: a list of ``{"role", "content"}`` with text content.

    ``messages`` is one mapping or a list of them. A message whose ``content`` is None is skipped (an
    optional system prompt left unset); anything that is not a mapping with a ``role`` and a ``content``
    is an InputError naming the message (secrets masked); other keys are dropped."""
    if messages is None or (isinstance(messages, (list, tuple, Mapping, str)) and not messages):
        raise InputError(NO_MESSAGES)
    if isinstance(messages, Mapping):
        messages = [messages]
    elif not isinstance(messages, (list, tuple)):
        raise InputError(f"`messages:` must be a list of mappings with `role` and `content`, not "
                         f"{type(messages).__name__} {_shown(messages)}.\n  {_MESSAGE_EXAMPLE}")
    out: List[Dict[str, str]] = []
    for number, message in enumerate(messages, 1):
        where = f"message #{number} of `messages:`"
        if not isinstance(message, Mapping):
            raise InputError(f"a chat message must be a mapping with `role` and `content`; {where} is "
                             f"{_shown(message)}.\n  {_MESSAGE_EXAMPLE}")
        role = message.get("role")
        if not isinstance(role, str) or not role.strip():
            what = "has no `role`" if role is None else f"has the role {_shown(role)}, not a name"
            raise InputError(f"a chat message must be a mapping with `role` and `content`; {where} {what}: "
                             f"{_shown(dict(message))}.\n  Give it `role: system`, `user` or `assistant`.")
        if "content" not in message:
            raise InputError(f"a chat message must be a mapping with `role` and `content`; {where} has no "
                             f"`content`: {_shown(dict(message))}.\n  {_MESSAGE_EXAMPLE}")
        if message["content"] is None:
            continue      # an unset optional message (e.g. a system prompt not given)
        out.append({"role": role, "content": str(message["content"])})
    if not out:
        raise InputError(NO_MESSAGES + "\n  Every message given has `content` unset (None).")
    return out


def chat_prompt(tokenizer: Any, messages: List[Dict[str, str]], template: Optional[str] = None) -> str:
    """The conversation through a Hugging Face tokenizer's chat template (or the component's own
    ``chat_template:``, a Jinja text), ready for the reply: the text the transformers and vLLM backends hand
    their engines (llama.cpp applies the GGUF's template itself)."""
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                         **({"chat_template": template} if template else {}))


def _stops(value: Any) -> Tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(s) for s in value if s is not None and str(s) != "")
    raise InputError(f"`stop_sequences` must be a text or a list of texts, not {_shown(value)}.\n"
                     f"  Write e.g. `stop_sequences: [\"###\"]`.")


@dataclass(frozen=True)
class GenerationParams:
    """The spec's generation parameters, checked (dialect names, model-compose's defaults).

    ``None`` means "not given": each engine then keeps its own (or the model's generation config's)
    default. ``stop_sequences`` is a tuple (the object is frozen); the engine mappings give lists."""

    max_output_length: int = DEFAULT_MAX_OUTPUT_LENGTH
    min_output_length: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    repetition_penalty: Optional[float] = None
    num_return_sequences: Optional[int] = None
    do_sample: Optional[bool] = None
    stop_sequences: Tuple[str, ...] = ()
    seed: Optional[int] = None
    batch_size: Optional[int] = None
    max_input_length: Optional[int] = None     # tokens of the prompt kept, its first ones (huggingface driver)
    num_beams: Optional[int] = None            # beam search (huggingface driver; model-compose's params)
    length_penalty: Optional[float] = None
    early_stopping: Optional[bool] = None

    @classmethod
    def read(cls, fields: Dict[str, Any], max_output_length: int = DEFAULT_MAX_OUTPUT_LENGTH) -> "GenerationParams":
        """From an action's evaluated fields: ``params:`` first, else the action's top level
        (:func:`mc_jupyter.tasks.base.param`); a value that is not a fitting number is an InputError naming
        the parameter. ``max_output_length`` is the length when none is given (captions use a shorter one)."""
        return cls(
            max_output_length=number_param(fields, "max_output_length", max_output_length, int, 1),
            min_output_length=number_param(fields, "min_output_length", None, int, 0),
            temperature=number_param(fields, "temperature", None, float, 0),
            top_p=number_param(fields, "top_p", None, float, 0),
            top_k=number_param(fields, "top_k", None, int, 0),
            repetition_penalty=number_param(fields, "repetition_penalty", None, float, 0),
            num_return_sequences=number_param(fields, "num_return_sequences", None, int, 1),
            do_sample=flag(param(fields, "do_sample"), "do_sample"),
            stop_sequences=_stops(param(fields, "stop_sequences")),
            seed=number_param(fields, "seed", None, int),
            batch_size=number_param(fields, "batch_size", None, int, 1),
            max_input_length=number_param(fields, "max_input_length", None, int, 1),
            num_beams=number_param(fields, "num_beams", None, int, 1),
            length_penalty=number_param(fields, "length_penalty", None, float),
            early_stopping=flag(param(fields, "early_stopping"), "early_stopping"),
        )

    @property
    def sequences(self) -> int:
        """How many texts each input gives (``num_return_sequences``, 1 without it)."""
        return self.num_return_sequences or 1

    def engine(self, names: Mapping[str, str]) -> Dict[str, Any]:
        """The parameters renamed for an inference engine (llama.cpp, vLLM): ``names`` maps a parameter of
        this class to the engine's name for it, and is written where that engine is. Every engine gets
        ``max_output_length`` as ``max_tokens`` and ``stop_sequences`` as ``stop``; ``temperature: 0``
        is passed as 0 (greedy in both)."""
        if (self.num_beams or 1) > 1:
            raise InputError(f"`num_beams: {self.num_beams}` (beam search) is for the huggingface driver; this "
                             f"engine samples or decodes greedily.\n  Remove `num_beams`, or use `driver: huggingface`.")
        out: Dict[str, Any] = {"max_tokens": self.max_output_length}
        for name, key in names.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = value
        if self.stop_sequences:
            out["stop"] = list(self.stop_sequences)
        return out

    def transformers(self, tokenizer: Any) -> Dict[str, Any]:
        """Keyword arguments of transformers' ``generate``. ``temperature: 0`` is greedy and, like any greedy
        call, neutralises the sampling defaults a model's generation_config may carry; a temperature alone
        turns sampling on; ``stop_sequences`` become ``stop_strings`` (which needs the tokenizer). The seed
        is not here: torch is seeded once per call by the backend."""
        kwargs: Dict[str, Any] = {"max_new_tokens": self.max_output_length}
        if self.min_output_length is not None:
            kwargs["min_new_tokens"] = self.min_output_length
        do_sample = self.do_sample
        if self.temperature is not None and self.temperature == 0.0:
            do_sample = False
        elif self.temperature is not None:
            kwargs["temperature"] = self.temperature
            do_sample = True if do_sample is None else do_sample
        if do_sample is not None:
            kwargs["do_sample"] = bool(do_sample)
        if kwargs.get("do_sample"):
            for name in ("top_p", "top_k"):
                if getattr(self, name) is not None:
                    kwargs[name] = getattr(self, name)
        elif kwargs.get("do_sample") is False:
            # greedy: neutralise sampling defaults a model's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.repetition_penalty is not None:
            kwargs["repetition_penalty"] = self.repetition_penalty
        if self.num_return_sequences is not None:
            kwargs["num_return_sequences"] = self.num_return_sequences
        for name in ("num_beams", "length_penalty", "early_stopping"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        if self.stop_sequences:
            kwargs["stop_strings"] = list(self.stop_sequences)
            kwargs["tokenizer"] = tokenizer
        kwargs["pad_token_id"] = tokenizer.pad_token_id
        return kwargs


class TextGenerationTask(ModelTask):
    """``text:`` (or ``prompt:``) -> the generated continuation (the new text only); a list gives a list.

    A backend fills ``generate(prompts, params)`` (one output per prompt: a text, or a list of
    ``num_return_sequences`` texts) and ``generate_stream(prompt, params, stop)``."""

    streams = True
    chat = False
    #: ``max_output_length`` when none is given.
    default_max_output_length: int = DEFAULT_MAX_OUTPUT_LENGTH

    def inputs(self, fields: Dict[str, Any]) -> Tuple[List[Any], bool]:
        """The items of this action (prompts), and whether the input was a list."""
        return prompts_of(fields)

    def prepare(self, fields: Dict[str, Any]) -> Call:
        items, many = self.inputs(fields)
        params = GenerationParams.read(fields, self.default_max_output_length)
        return Call(items, many, params, params.batch_size or self.default_batch_size)


class ChatCompletionTask(TextGenerationTask):
    """``messages:`` -> the assistant's reply. The one item is the conversation from
    :func:`normalise_messages`; how it becomes the engine's input (a chat template) is the backend's."""

    chat = True

    def inputs(self, fields: Dict[str, Any]) -> Tuple[List[Any], bool]:
        return [normalise_messages(fields.get("messages"))], False
