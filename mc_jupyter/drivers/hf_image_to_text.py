"""image-to-text through a captioning model's own ``generate`` (the task: :mod:`mc_jupyter.tasks.image_to_text`).

transformers 5 has no image-to-text pipeline, so this is the pipeline: the image processor makes
``pixel_values``, the model generates, and the caption is the new tokens decoded (without the
prompt). The generation parameters are those of text-generation (``GenerationParams.transformers``):
``temperature: 0`` is greedy; without ``max_output_length`` a caption has at most 50 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ModelLoadError
from ..tasks.image_to_text import CaptionParams, ImageToTextTask
from ..tasks.text_generation import GenerationParams
from .hf_common import HFDriver, _from_pretrained, checked_architecture, model_type_of
from .hf_generation import check_length, group_sequences, seed_torch
from .sources import ModelSource, config_source, processor_kwargs


@dataclass(frozen=True)
class Architecture:
    model_type: str      # ``model_type`` in the model's config.json
    model_class: str     # the transformers class that loads it
    prompt_key: str      # the ``generate`` argument that takes the decoder's first tokens


ARCHITECTURE_CLASSES: Dict[str, Architecture] = {
    "blip": Architecture("blip", "BlipForConditionalGeneration", "input_ids"),
    "git": Architecture("git", "GitForCausalLM", "input_ids"),
    "vit-gpt2": Architecture("vision-encoder-decoder", "VisionEncoderDecoderModel", "decoder_input_ids"),
}


class ImageToText(HFDriver, ImageToTextTask):
    """``image:`` (one or a list) and an optional ``prompt:`` -> caption text."""

    architecture: str

    def load(self) -> None:
        source = config_source(self.config)
        self.architecture = self._architecture(source)
        self.auto_class = ARCHITECTURE_CLASSES[self.architecture].model_class
        super().load()

    def _architecture(self, source: ModelSource) -> str:
        """The ``architecture:`` asked for, checked against the model's config; inferred without one."""
        model_type = model_type_of(source)
        table = {name: (arch.model_type,) for name, arch in ARCHITECTURE_CLASSES.items()}
        found = checked_architecture(None, model_type, table, source.location)     # (None: only looked up)
        expected = ", ".join(f"{name} (model_type `{arch.model_type}`)" for name, arch in ARCHITECTURE_CLASSES.items())
        if found is None:
            raise ModelLoadError(f"`{source.location}` is a `{model_type}` model, not an image captioner: "
                                 f"image-to-text expects {expected}.\n  Give a captioning model such as "
                                 f"Salesforce/blip-image-captioning-large, or the task this model does.")
        return checked_architecture(self.config.architecture, model_type, table, source.location)

    def _load_tokenizer(self, source: ModelSource) -> Any:
        from transformers import AutoImageProcessor

        self.image_processor = _from_pretrained(AutoImageProcessor, source, processor_kwargs(source))
        return super()._load_tokenizer(source)

    def unload(self) -> None:
        if hasattr(self, "image_processor"):
            del self.image_processor
        super().unload()

    def generation_arguments(self, generation: GenerationParams) -> Dict[str, Any]:
        seed_torch(generation)
        kwargs = generation.transformers(self.tokenizer)
        if self.architecture == "blip":
            del kwargs["pad_token_id"]   # BLIP's generate passes its own
        return kwargs

    def generate(self, images: List[Any], params: CaptionParams) -> List[Any]:
        import torch

        kwargs = params.generation
        inputs, prefix = self.encode(images, params.prompt)
        check_length(self.model, prefix, kwargs["max_new_tokens"])
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        n = int(kwargs.get("num_return_sequences", 1))
        return group_sequences(self.tokenizer.batch_decode(out[:, prefix:], skip_special_tokens=True), n)

    def encode(self, images: List[Any], prompt: Optional[str]) -> Tuple[Dict[str, Any], int]:
        """``generate``'s inputs for a batch, and how many leading output tokens are not the caption."""
        import torch

        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        inputs: Dict[str, Any] = {"pixel_values": pixels.to(self.model.device, self.model.dtype)}
        if not prompt:
            return inputs, 1   # the decoder's start token
        config = self.model.generation_config
        start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.bos_token_id
        prefix = [start] + self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        # BLIP's generate drops the last prompt token (the [SEP] its processor appends)
        ids = prefix + [self.tokenizer.sep_token_id] if self.architecture == "blip" else prefix
        inputs[ARCHITECTURE_CLASSES[self.architecture].prompt_key] = torch.tensor([ids] * len(images),
                                                                                  device=self.model.device)
        return inputs, len(prefix)
