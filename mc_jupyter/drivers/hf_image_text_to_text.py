"""image-text-to-text through transformers: ``AutoProcessor`` and ``AutoModelForImageTextToText``.

The task (:mod:`mc_jupyter.tasks.image_text_to_text`) turns the fields into conversations whose images are
PIL images inside the messages. The processor's ``apply_chat_template(..., tokenize=True, return_dict=True)``
makes the model's inputs from them (the template's text, each image's tokens expanded, the pixel values),
a batch padded on the left. Generation is text-generation's (:class:`~.hf_generation._Transformers`): the
same ``generate`` with the same parameters, only the new tokens decoded, and the same streaming (a thread,
a stop event checked at every token). Only how a batch is tokenized differs, so only that is here.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..errors import InputError, ModelLoadError
from ..secrets import scrub
from ..tasks.base import Call
from ..tasks.image_text_to_text import Conversation, ImageTextToTextTask
from .hf_common import _from_pretrained, checked_architecture, model_type_of
from .hf_generation import _Transformers, check_length, seed_torch
from .sources import ModelSource, config_source, processor_kwargs

#: ``architecture:`` -> the ``model_type`` values of config.json it names (SmolVLM 1 is Idefics3).
ARCHITECTURE_TYPES: Dict[str, tuple] = {
    "qwen2-vl": ("qwen2_vl",), "qwen2.5-vl": ("qwen2_5_vl",), "llava": ("llava",), "llava-next": ("llava_next",),
    "idefics3": ("idefics3",), "internvl": ("internvl",), "lighton-ocr": ("lighton_ocr",),
}


class ImageTextToText(ImageTextToTextTask, _Transformers):
    """Images and a prompt (or ``messages:``) -> the reply, on any model of ``AutoModelForImageTextToText``."""

    auto_class = "AutoModelForImageTextToText"
    architecture: Optional[str] = None

    def load(self) -> None:
        self.architecture = self._architecture(config_source(self.config))
        super().load()

    def _architecture(self, source: ModelSource) -> Optional[str]:
        """The ``architecture:`` asked for, checked against the model's config (None where the table has no
        name for a vision-language model transformers loads all the same)."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        model_type = model_type_of(source)
        if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            raise ModelLoadError(f"`{source.location}` is a `{model_type}` model, not a vision-language model: "
                                 f"image-text-to-text loads models of transformers' AutoModelForImageTextToText "
                                 f"(e.g. {', '.join(ARCHITECTURE_TYPES)}).\n  Give such a model (e.g. "
                                 f"HuggingFaceTB/SmolVLM-256M-Instruct), or the task this model does.")
        return checked_architecture(self.config.architecture, model_type, ARCHITECTURE_TYPES, source.location)

    def _load_tokenizer(self, source: ModelSource) -> Any:
        from transformers import AutoProcessor

        try:
            self.processor = _from_pretrained(AutoProcessor, source, processor_kwargs(source))
        except ImportError as e:      # e.g. Qwen2-VL's processor holds a video processor that needs torchvision
            detail = scrub(str(e)).strip().splitlines()
            raise ModelLoadError(f"could not load the processor of `{source.location}`: "
                                 f"{detail[0] if detail else type(e).__name__}\n  This model's processor needs a "
                                 f"package that is not installed (transformers names it above): install it "
                                 f"(e.g. `%pip install torchvision` matching your torch), then compose again.") from None
        return self.processor.tokenizer

    def after_load(self) -> None:
        super().after_load()          # left padding, a pad token
        if not (getattr(self.processor, "chat_template", None) or self.config.chat_template):
            raise ModelLoadError(f"the processor of `{self.source.location}` has no chat template, so it cannot "
                                 f"turn images and a prompt into the model's input.\n  Use an instruct/chat model "
                                 f"(e.g. HuggingFaceTB/SmolVLM-256M-Instruct) or give the component a "
                                 f"`chat_template:` (a Jinja text).")

    def unload(self) -> None:
        if hasattr(self, "processor"):
            del self.processor
        super().unload()

    # -- what generate is handed -----------------------------------------------------------------
    def tokenize(self, items: List[Conversation]) -> Dict[str, Any]:
        """The conversations through the processor's chat template: a left-padded batch on the model's device,
        pixel values in the model's dtype."""
        done = getattr(self, "_checked", {}).pop(id(items[0]), None) if len(items) == 1 else None
        if done is not None and done[0] is items[0]:        # processed once already, by `check`
            return done[1]
        template = {"chat_template": self.config.chat_template} if self.config.chat_template else {}
        # the processor rewrites each message's `content` list: it gets copies of the messages (not of the images)
        conversations = [[dict(message) for message in item] for item in items]
        batch = self.processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=True,
                                                   return_dict=True, return_tensors="pt",
                                                   processor_kwargs={"padding": True}, **template)
        return batch.to(self.model.device).to(self.model.dtype)

    def check(self, call: Call) -> None:
        """Each conversation's tokens (images included) against ``max_input_length`` and the model's positions,
        before anything is generated; then torch seeded."""
        limit = call.params.max_input_length
        self._checked = {}
        for index, item in enumerate(call.items, 1):
            batch = self.tokenize([item])
            count = int(batch["input_ids"].shape[1])
            if len(call.items) == 1:     # one conversation (a question, a chat turn): generate reuses its inputs
                self._checked[id(item)] = (item, batch)       # (a list's are made again, batch by batch)
            which = (f"conversation #{index} of the list" if call.many else "the conversation") + \
                " (chat template and image tokens included)"
            if limit is not None and count > limit:
                raise InputError(f"{which} has {count} tokens, more than `max_input_length: {limit}`.\n  Raise "
                                 f"`max_input_length`, shorten the prompt, or give fewer or smaller images (a "
                                 f"prompt is not cut: cutting would split an image's tokens).")
            check_length(self.model, count, call.params.max_output_length, which)
        seed_torch(call.params)
