"""vision-text-encoding through transformers (the task: :mod:`mc_jupyter.tasks.vision_text_encoding`).

As model-compose's driver: ``AutoProcessor`` and ``AutoModel`` (the base model, no language-model head),
each prompt written by the chat template (the component's ``chat_template:`` or the processor's) as one
user turn, images first, then ``model(**inputs, output_hidden_states=True)`` and the hidden states of
``params.layer``. Prompts of a batch are padded on the right, so each keeps its positions and its
tokens' states are those it has alone. ``token_types`` are the processor's ``token_type_ids``, else
transformers' ``mm_token_type_ids`` (asked for: 0 text, 1 image, 2 video; all 0 for words only; None
from a processor that gives neither).
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List

from ..errors import InputError, ModelLoadError
from ..tasks.vision_text_encoding import Encoding, EncodingParams, Prompt, VisionTextEncodingTask
from .hf_common import HFDriver, _from_pretrained
from .sources import ModelSource, processor_kwargs


class VisionTextEncoding(HFDriver, VisionTextEncodingTask):
    auto_class = "AutoModel"

    def _load_tokenizer(self, source: ModelSource) -> Any:
        from transformers import AutoProcessor

        self.processor = _from_pretrained(AutoProcessor, source, processor_kwargs(source))
        if not hasattr(self.processor, "image_processor") or getattr(self.processor, "tokenizer", None) is None:
            raise ModelLoadError(f"`{source.location}` has no vision-language processor (an image processor and a "
                                 f"tokenizer): vision-text-encoding needs a model such as Qwen/Qwen2-VL-2B-Instruct or "
                                 f"HuggingFaceTB/SmolVLM-256M-Instruct.")
        if not (self.config.chat_template or getattr(self.processor, "chat_template", None)):
            raise ModelLoadError(f"`{source.location}` has no chat template to write the prompts with.\n  Give "
                                 f"`chat_template:` on the component (a Jinja template taking image and text parts).")
        return self.processor.tokenizer

    def after_load(self) -> None:
        self.takes_types = "mm_token_type_ids" in inspect.signature(self.model.forward).parameters

    def unload(self) -> None:
        self.__dict__.pop("processor", None)
        super().unload()

    def generate(self, prompts: List[Prompt], params: EncodingParams) -> List[Encoding]:
        import torch

        if any(p.frames for p in prompts) and getattr(self.processor, "video_processor", None) is None:
            raise InputError(f"`frames` need the model's video processor, and `{self.source.location}`'s processor has "
                             f"none (transformers' video processors also need torchvision).\n  Leave `frames:` out, or "
                             f"give the frames as `images:`.")
        kwargs: Dict[str, Any] = {"text": [self._prompt(p) for p in prompts], "return_tensors": "pt",
                                  "padding": True, "padding_side": "right", "return_mm_token_type_ids": True,
                                  "add_special_tokens": params.add_special_tokens}
        if params.max_length is not None:
            kwargs.update(max_length=params.max_length, truncation=True)
        if any(p.images for p in prompts):
            kwargs["images"] = [p.images for p in prompts]
        if any(p.frames for p in prompts):
            kwargs["videos"] = [p.frames for p in prompts if p.frames]
        inputs = self.processor(**kwargs)
        types = inputs.get("token_type_ids", inputs.get("mm_token_type_ids"))
        if types is None and "images" not in kwargs and "videos" not in kwargs:
            types = torch.zeros_like(inputs["input_ids"])   # words only (a processor gives no types without images)
        if not self.takes_types:
            inputs.pop("mm_token_type_ids", None)
        inputs = {k: v.to(self.model.device, self.model.dtype) if v.is_floating_point() else v.to(self.model.device)
                  for k, v in inputs.items()}
        with torch.inference_mode():
            states = self.model(**inputs, output_hidden_states=True, return_dict=True).hidden_states
        count = len(states)
        if not -count <= params.layer < count:
            raise InputError(f"`layer: {params.layer}` is out of range: this model has {count} hidden states "
                             f"(the embeddings and {count - 1} layers).\n  Give a layer from {-count} to {count - 1} "
                             f"(-1: the last).")
        hidden = states[params.layer]
        mask = inputs.get("attention_mask")
        lengths = mask.sum(dim=1).tolist() if mask is not None else [hidden.shape[1]] * hidden.shape[0]
        dtype = str(hidden.dtype).replace("torch.", "")
        return [Encoding(hidden[i, :n].float().cpu().numpy() if dtype == "bfloat16" else hidden[i, :n].cpu().numpy(),
                         None if types is None else types[i, :n].cpu().numpy(), dtype)
                for i, n in enumerate(lengths)]

    def _prompt(self, prompt: Prompt) -> str:
        """The prompt as the chat template writes it: one user turn, images, then the video, then the text."""
        content: List[Dict[str, Any]] = [{"type": "image"} for _ in prompt.images]
        content += [{"type": "video"}] if prompt.frames else []
        content.append({"type": "text", "text": prompt.text})
        template = {"chat_template": self.config.chat_template} if self.config.chat_template else {}
        return self.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                  add_generation_prompt=False, **template)
