"""image-generation through diffusers: ``${result}`` is a PIL image (a list when more are asked for).

``architecture:`` picks the pipeline class (sdxl, flux, hunyuan); without it the folder's
``model_index.json`` names it, and any diffusers text-to-image pipeline loads.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional

from ..devices import module_bytes, parameter_count
from ..errors import InputError, ModelLoadError, NotAvailableError
from .base import Driver, number
from .hf_common import _from_pretrained, _placement
from .sources import resolve_source

#: ``architecture:`` -> the diffusers pipeline class its checkpoints are saved with.
PIPELINES: Dict[str, str] = {"sdxl": "StableDiffusionXLPipeline", "flux": "FluxPipeline",
                             "hunyuan": "HunyuanDiTPipeline"}

#: ``params:`` name -> (pipeline ``__call__`` argument, cast)
_CALL_PARAMS = {"width": ("width", int), "height": ("height", int), "num_inference_steps": ("num_inference_steps", int),
                "guidance_scale": ("guidance_scale", float), "negative_prompt": ("negative_prompt", str),
                "num_images": ("num_images_per_prompt", int)}


class ModelIndex:
    """A pipeline folder's ``model_index.json``, read (or fetched) before any weights."""

    @staticmethod
    def from_pretrained(location: str, **kwargs: Any) -> Dict[str, Any]:
        from diffusers import DiffusionPipeline
        return DiffusionPipeline.load_config(location, **kwargs)


def refusal(settings: Dict[str, Any]) -> Optional[NotAvailableError]:
    """What image-generation refuses in these settings before loading (a ``--dry-run`` says it too)."""
    if settings.get("quantization", "none") != "none":
        return NotAvailableError(f"`quantization: {settings['quantization']}` is not built for image-generation.\n"
                                 f"  Remove it, or use `precision: float16` to halve the memory.")
    return None


class ImageGeneration(Driver):
    def load(self) -> None:
        import diffusers
        import torch

        from .placement import load_plan

        refused = refusal(self.settings)
        if refused is not None:
            raise refused
        source = resolve_source(self.settings.get("model"), self.settings["task"])
        self.source_description = source.description
        if source.kwargs.get("use_safetensors") is False:   # a pipeline's weights sit in subfolders, which
            del source.kwargs["use_safetensors"]            # resolve_source does not look in: let diffusers pick
        plan = load_plan(self.settings)
        found = _from_pretrained(ModelIndex, source, dict(source.kwargs)).get("_class_name", "")
        architecture = self.settings.get("architecture")
        if architecture and found != PIPELINES[architecture]:
            raise ModelLoadError(
                f"`architecture: {architecture}` loads a {PIPELINES[architecture]}, but `{source.location}` holds "
                f"a {found or 'folder without a pipeline class'} (model_index.json `_class_name`).\n"
                f"  Give the architecture that matches the model, or leave `architecture:` out to load the "
                f"folder's own pipeline class.")
        cls = getattr(diffusers, PIPELINES[architecture]) if architecture else diffusers.DiffusionPipeline
        kwargs: Dict[str, Any] = dict(source.kwargs, dtype=plan["dtype"])
        if not plan["single"] and plan["device"] == "cuda":   # diffusers spreads whole components, "balanced"
            kwargs.update(device_map="balanced", max_memory=plan["kwargs"].get("max_memory"))
        self.pipeline = _from_pretrained(cls, source, kwargs)
        if kwargs.get("device_map") is None:
            self.pipeline.to(plan["device"])
        self.pipeline.set_progress_bar_config(desc=f"Generating {self.component_id}", unit="step", leave=False,
                                              disable=False)
        self.call_arguments = set(inspect.signature(self.pipeline.__call__).parameters)
        modules = [m for m in self.pipeline.components.values() if isinstance(m, torch.nn.Module)]
        self.device = _placement(self.pipeline, plan["device"])
        self.generator_device = plan["device"]
        self.dtype = str(plan["dtype"]).replace("torch.", "")
        self.parameters = sum(parameter_count(m) for m in modules)
        self.memory_bytes = sum(module_bytes(m) for m in modules)

    def run(self, fields: Dict[str, Any]) -> Any:
        import torch

        prompt = fields.get("prompt") if fields.get("prompt") is not None else fields.get("text")
        if prompt is None:
            raise InputError("image-generation got no prompt: give `prompt:`, e.g. `prompt: ${input.prompt as text}`.")
        many = isinstance(prompt, list)
        prompts = [str(p) for p in prompt] if many else [str(prompt)]
        count = self.number(fields, "num_images", 1, int, 1) or 1
        arguments = self._call_arguments(fields)
        seed = self.number(fields, "seed")
        generator = torch.Generator(self.generator_device).manual_seed(seed) if seed is not None else None
        images: List[Any] = []
        for batch in self.batches(prompts, fields, default=1):
            images += self.pipeline(prompt=batch, generator=generator, **arguments).images
        per_prompt = [images[i * count:(i + 1) * count] for i in range(len(prompts))]
        results = [group if count > 1 else group[0] for group in per_prompt]
        return results if many else results[0]

    def _call_arguments(self, fields: Dict[str, Any]) -> Dict[str, Any]:
        """The pipeline's ``__call__`` arguments for the action's params; one it lacks is an error."""
        arguments: Dict[str, Any] = {}
        for name, (argument, cast) in _CALL_PARAMS.items():
            value = self.param(fields, name)
            if value is not None:
                if argument not in self.call_arguments:
                    raise InputError(f"`{name}: {value}` cannot be given to {type(self.pipeline).__name__}, which "
                                     f"takes no `{argument}`.\n  Remove `{name}` from the action.")
                arguments[argument] = number(value, name, cast, 1 if cast is int else 0) if cast in (int, float) \
                    else cast(value)
        if "negative_prompt" in arguments and "true_cfg_scale" in self.call_arguments:
            # Flux reads a negative prompt only under true classifier-free guidance (scale > 1), which
            # runs the transformer twice a step; 4.0 is diffusers' documented example value
            arguments["true_cfg_scale"] = max(float(arguments.get("guidance_scale", 4.0)), 1.5)
        if "use_resolution_binning" in self.call_arguments:   # HunyuanDiT: else it snaps to a trained size
            arguments["use_resolution_binning"] = False
        return arguments

    def unload(self) -> None:
        if hasattr(self, "pipeline"):   # the registry collects and empties the device caches after
            del self.pipeline
