"""image-text-to-text (vision-language chat): images and a question in, the model's reply out.

Every input becomes a *conversation*: chat messages whose ``content`` is a list of parts, text
``{"type": "text", "text": ...}`` and images ``{"type": "image", "image": <PIL image>}``, the form
transformers' processors take (``processor.apply_chat_template``). Two ways to write one::

    prompt: What is in the picture?          messages:
    image: ${input.image as image}             - role: user
    system_prompt: Answer briefly.               content:
                                                   - {type: image, image: ${input.image as image}}
                                                   - {type: text, text: What is in the picture?}
                                               - {role: assistant, content: A cat on a sofa.}
                                               - {role: user, content: What colour is the cat?}

``prompt:`` (model-compose's form; one text or a list) pairs with ``image:``: one image goes with every
prompt; a list of images with one prompt is one question about all of them (model-compose's multi-image
prompt); a list of images with a list of prompts as long pairs them in order; a list of lists gives each
prompt its own images. ``messages:`` carries a conversation with its images inside, so a chat can go on
about the same picture; an image part may be a PIL image, a path, a URL, bytes or base64 (also OpenAI's
``{type: image_url, image_url: {url: ...}}``), and ``image:`` beside ``messages:`` fills the image parts
written without one, or opens the first user message. ``${result}`` is the reply (a list for a list of
prompts; ``num_return_sequences`` > 1 gives a list of replies per input).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..catalog import Task
from ..errors import InputError
from .image_to_text import named_image
from .base import Call, ModelTask, number_param
from .text_generation import DEFAULT_MAX_OUTPUT_LENGTH, GenerationParams, _shown

Conversation = List[Dict[str, Any]]

NO_IMAGE = ("image-text-to-text got no image: give `image:` (e.g. `image: ${input.image as image}`), or images "
            "inside `messages:` (`{type: image, image: ...}` parts).")
_MESSAGES_EXAMPLE = ("Write e.g. `messages: [{role: user, content: [{type: image, image: ${input.image}}, "
                     "{type: text, text: ${input.question}}]}]`.")


@dataclass(frozen=True)
class VisionGenerationParams(GenerationParams):
    """text-generation's parameters plus model-compose's ``no_repeat_ngram_size`` for this task."""

    no_repeat_ngram_size: Optional[int] = None

    @classmethod
    def read(cls, fields: Dict[str, Any], max_output_length: int = DEFAULT_MAX_OUTPUT_LENGTH) -> "VisionGenerationParams":
        """The parameters with model-compose's defaults for this task: it samples (temperature 1.0, top-k 50,
        top-p 0.9) unless ``do_sample: false`` or ``temperature: 0`` asks for greedy decoding."""
        base = super().read(fields, max_output_length)
        base = replace(base, no_repeat_ngram_size=number_param(fields, "no_repeat_ngram_size", None, int, 1))
        greedy = base.do_sample is False or base.temperature == 0.0
        if greedy:
            return base
        return replace(base, do_sample=True, temperature=1.0 if base.temperature is None else base.temperature,
                       top_k=50 if base.top_k is None else base.top_k, top_p=0.9 if base.top_p is None else base.top_p)

    def transformers(self, tokenizer: Any) -> Dict[str, Any]:
        kwargs = super().transformers(tokenizer)
        if self.no_repeat_ngram_size is not None:
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        return kwargs


def _image_part(part: Mapping[str, Any], where: str) -> Optional[Any]:
    """The image of an image part (None for a placeholder part that names none)."""
    if part.get("type") == "image_url":
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, Mapping) else url
        if url is None:
            raise InputError(f"{where} is an `image_url` part without a url: {_shown(dict(part))}.\n  Write "
                             f"`{{type: image_url, image_url: {{url: ...}}}}`, or `{{type: image, image: ...}}`.")
        return named_image(url, where)
    for key in ("image", "url", "path", "base64"):
        if part.get(key) is not None:
            return named_image(part[key], where)
    return None


def _content(content: Any, where: str) -> List[Dict[str, Any]]:
    """A message's content as parts: text as ``{type: text}``, images read (placeholders kept as ``{type: image}``)."""
    items = content if isinstance(content, (list, tuple)) else [content]
    parts: List[Dict[str, Any]] = []
    for number, part in enumerate(items, 1):
        at = f"{where}, part #{number}" if isinstance(content, (list, tuple)) else where
        if isinstance(part, str):
            parts.append({"type": "text", "text": part})
        elif isinstance(part, Mapping) and part.get("type") == "text" and part.get("text") is not None:
            parts.append({"type": "text", "text": str(part["text"])})
        elif isinstance(part, Mapping) and part.get("type") in ("image", "image_url"):
            image = _image_part(part, at)
            parts.append({"type": "image"} if image is None else {"type": "image", "image": image})
        elif type(part).__module__.startswith("PIL."):
            parts.append({"type": "image", "image": named_image(part, at)})
        else:
            raise InputError(f"{at} is {_shown(part)}: a content part is a text, `{{type: text, text: ...}}` or "
                             f"`{{type: image, image: ...}}`.\n  {_MESSAGES_EXAMPLE}")
    return parts


def conversation_of(messages: Any, images: List[Any], system_prompt: Optional[str]) -> Conversation:
    """``messages:`` as a conversation of parts: its images read, image parts written without one filled from
    ``images`` in order (the rest open the first user message), ``system_prompt`` first unless it has one."""
    if isinstance(messages, Mapping):
        messages = [messages]
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InputError(f"`messages:` must be a list of mappings with `role` and `content`, not "
                         f"{_shown(messages)}.\n  {_MESSAGES_EXAMPLE}")
    out: Conversation = []
    for number, message in enumerate(messages, 1):
        where = f"message #{number} of `messages:`"
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str) or "content" not in message:
            raise InputError(f"{where} must be a mapping with `role` and `content`, not {_shown(message)}.\n  "
                             f"{_MESSAGES_EXAMPLE}")
        if message["content"] is None:
            continue      # an unset optional message (a system prompt not given)
        out.append({"role": message["role"], "content": _content(message["content"], where)})
    if not out:
        raise InputError("`messages:` holds no message with `content`.\n  " + _MESSAGES_EXAMPLE)
    queue = list(images)
    for message in out:
        for part in message["content"]:
            if part["type"] == "image" and "image" not in part:
                if not queue:
                    raise InputError("`messages:` has an image part without an image ({type: image}) and "
                                     "`image:` has no image left for it.\n  Give the part `image: ...`, or "
                                     "give the component `image:`.")
                part["image"] = queue.pop(0)
    if queue:
        first = next((m for m in out if m["role"] == "user"), None)
        if first is None:
            raise InputError("`image:` was given but `messages:` has no user message to show it in.\n  "
                             "Add a user message.")
        first["content"][:0] = [{"type": "image", "image": image} for image in queue]
    if system_prompt and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": [{"type": "text", "text": str(system_prompt)}]})
    return out


def prompt_conversation(prompt: Optional[str], images: List[Any], system_prompt: Optional[str]) -> Conversation:
    """model-compose's own message for a prompt: the images, then the prompt's text, after any system prompt."""
    content: List[Dict[str, Any]] = [{"type": "image", "image": image} for image in images]
    if prompt:
        content.append({"type": "text", "text": prompt})
    system = [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}] if system_prompt else []
    return system + [{"role": "user", "content": content}]


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def image_groups(image: Any, prompts: int) -> Tuple[List[List[Any]], bool]:
    """The images each of ``prompts`` prompts sees (the rule in the module's docstring), read as RGB, and
    whether ``image:`` itself gave one group per prompt (a list of lists)."""
    if image is None:
        raise InputError(NO_IMAGE)
    if not _is_list(image):
        one = named_image(image, "`image:`")
        return [[one]] * prompts, False
    if not image:
        raise InputError(NO_IMAGE + "\n  `image:` is an empty list.")
    if all(_is_list(group) for group in image):
        groups = [[named_image(im, f"`image:` group #{g}, image #{i}") for i, im in enumerate(group, 1)]
                  for g, group in enumerate(image, 1)]
        return groups, True
    images = [named_image(im, f"`image:` #{i}") for i, im in enumerate(image, 1)]
    if prompts == 1 or len(images) == 1:
        return [images] * prompts if len(images) == 1 else [images], False
    if len(images) != prompts:
        raise InputError(f"`prompt:` is a list of {prompts} and `image:` a list of {len(images)}: a list of prompts "
                         f"takes one image each, in order.\n  Give as many images as prompts, or a list of lists "
                         f"(`[[a, b], [c]]`: each prompt's own images).")
    return [[im] for im in images], False


def conversations_of(fields: Dict[str, Any]) -> Tuple[List[Conversation], bool]:
    """The action's conversations (:func:`conversation_of`, :func:`prompt_conversation`; the pairing rule in the
    module's docstring), and whether the result is a list (a list of prompts, of image groups or of
    conversations)."""
    system = fields.get("system_prompt")
    if system is not None and not isinstance(system, str):
        raise InputError(f"`system_prompt:` must be a text, not {_shown(system)}.")
    messages = fields.get("messages")
    if messages is not None:
        extra = [] if fields.get("image") is None else image_groups(fields["image"], 1)[0][0]
        many = _is_list(messages) and bool(messages) and all(_is_list(m) for m in messages)   # conversations
        items = [conversation_of(m, extra, system) for m in (messages if many else [messages])]
        for number, conversation in enumerate(items, 1):
            if not any(p["type"] == "image" for m in conversation for p in m["content"]):
                raise InputError(NO_IMAGE + (f"\n  Conversation #{number} of the list has none." if many else ""))
        return items, many
    prompt = fields.get("prompt")
    prompts = list(prompt) if _is_list(prompt) else [prompt]
    if any(p is not None and not isinstance(p, str) for p in prompts):
        raise InputError(f"`prompt:` must be a text or a list of texts, not {_shown(prompt)}.")
    groups, grouped = image_groups(fields.get("image"), len(prompts))
    if grouped and len(prompts) == 1:
        prompts = prompts * len(groups)     # one question about each group of images
    elif grouped and len(groups) != len(prompts):
        raise InputError(f"`prompt:` is a list of {len(prompts)} and `image:` a list of {len(groups)} groups: "
                         f"each prompt takes one group.\n  Give as many groups as prompts.")
    items = [prompt_conversation(p, g, system) for p, g in zip(prompts, groups)]
    return items, _is_list(prompt) or grouped


class ImageTextToTextTask(ModelTask):
    """Backends fill :meth:`load`, :meth:`generate` (a reply per conversation, or a list of
    ``num_return_sequences`` replies) and :meth:`generate_stream`."""

    task = Task.IMAGE_TEXT_TO_TEXT
    streams = True
    default_batch_size = 1          # model-compose's default: vision inputs are large

    def prepare(self, fields: Dict[str, Any]) -> Call:
        items, many = conversations_of(fields)
        params = VisionGenerationParams.read(fields)
        return Call(items, many, params, params.batch_size or self.default_batch_size)
