"""vision-text-encoding: a vision-language model's hidden states for a prompt with its images.

What model-compose's task gives (a conditioning encoder for image and video generators): each ``text``
(one or a list) is put in the model's chat template as a user turn, after its images (and video
frames), and the model's hidden states at ``params.layer`` (default -1, the last; negative counts from
the top) are the result::

    {"hidden_states": <numpy array, tokens x hidden_size>,
     "token_types":   <numpy int array, one per token: 0 text, 1 image, 2 video> or None,
     "spec": {"hidden_size", "dtype", "layer", "add_special_tokens", "max_length"}}

(a list of those for a list of texts). model-compose returns torch tensors; here they are numpy arrays
(bfloat16, which numpy lacks, comes as float32; ``spec.dtype`` says what the model computed in).

``images:`` and ``frames:`` are, for one text, an image or a list of them; for a list of texts, a list of
lists (one per text, ``[]`` for none). ``params.add_special_tokens`` (default false: the chat template
writes its own) and ``params.max_length`` (tokens, truncating) go to the processor. ``batch_size``
(default 1, as in model-compose) prompts run through the model at once, padded on the right, each cut
back to its own tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..catalog import Task
from ..config.positions import clip
from ..errors import InputError
from ..secrets import scrub
from .base import Call, ModelTask, flag_param, number_param, single_or_list
from .image_to_text import named_image


@dataclass(frozen=True)
class Prompt:
    text: str
    images: List[Any]    # PIL images, in order before the text
    frames: List[Any]    # PIL images: one video's frames


@dataclass(frozen=True)
class EncodingParams:
    layer: int = -1
    add_special_tokens: bool = False
    max_length: Optional[int] = None


@dataclass(frozen=True)
class Encoding:
    """A backend's output for one prompt."""

    hidden_states: Any             # numpy array, tokens x hidden_size
    token_types: Any               # numpy int array, one per token, or None
    dtype: str                     # what the model computed in: float32, float16, bfloat16


class VisionTextEncodingTask(ModelTask):
    """Backends fill :meth:`load` and :meth:`generate` (an :class:`Encoding` per :class:`Prompt`)."""

    task = Task.VISION_TEXT_ENCODING
    default_batch_size = 1

    def prepare(self, fields: Dict[str, Any]) -> Call:
        text = fields.get("text")
        if text is None:
            raise InputError("vision-text-encoding got no text: give `text:`, e.g. `text: ${input.prompt}` "
                             "(and `images: ${input.image as image}` for its pictures).")
        texts, many = single_or_list(text)
        for i, item in enumerate(texts):
            if not isinstance(item, str):
                where = f"`text[{i}]`" if many else "`text`"
                raise InputError(f"{where} must be a text, not a {type(item).__name__} "
                                 f"({clip(scrub(repr(item)), 60)}).\n  Give a prompt such as `a red apple`.")
        images = _groups(fields.get("images"), "images", len(texts), many)
        frames = _groups(fields.get("frames"), "frames", len(texts), many)
        params = EncodingParams(number_param(fields, "layer", -1, int),
                                flag_param(fields, "add_special_tokens", False),
                                number_param(fields, "max_length", None, int, 1))
        prompts = [Prompt(t, i, f) for t, i, f in zip(texts, images, frames)]
        return Call(prompts, many, params, self.batch_size(fields))

    def finish(self, outputs: List[Any], call: Call) -> Any:
        params: EncodingParams = call.params
        results = [{"hidden_states": out.hidden_states, "token_types": out.token_types,
                    "spec": {"hidden_size": int(out.hidden_states.shape[-1]), "dtype": out.dtype,
                             "layer": params.layer, "add_special_tokens": params.add_special_tokens,
                             "max_length": params.max_length}} for out in outputs]
        return super().finish(results, call)


def _groups(value: Any, name: str, count: int, many: bool) -> List[List[Any]]:
    """``images:``/``frames:`` as one list of PIL images per text: for one text, an image or a list; for a
    list of texts, a list of lists as long as it."""
    if value is None:
        return [[] for _ in range(count)]
    if not many:
        items, _ = single_or_list(value)
        return [[named_image(item, f"`{name}[{i}]`" if len(items) > 1 else f"`{name}`")
                 for i, item in enumerate(items)]]
    if not (isinstance(value, (list, tuple)) and len(value) == count
            and all(isinstance(group, (list, tuple)) for group in value)):
        raise InputError(f"`{name}` must hold one list per text ({count} texts), e.g. "
                         f"`{name}: [[a.png], [b.png, c.png]]` (`[]` for a text without); got "
                         f"{clip(scrub(repr(value)), 80)}.")
    return [[named_image(item, f"`{name}[{i}][{j}]`") for j, item in enumerate(group)]
            for i, group in enumerate(value)]
