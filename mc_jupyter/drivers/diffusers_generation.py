"""image-generation through diffusers (the task: :mod:`mc_jupyter.tasks.image_generation`): PIL images.

``architecture:`` picks the pipeline class (sdxl, flux, hunyuan); without it the folder's
``model_index.json`` names it, and any diffusers text-to-image pipeline loads.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional

from ..catalog import Quantization
from ..devices import module_bytes, parameter_count
from ..errors import InputError, ModelLoadError, NotAvailableError
from ..tasks.image_generation import ImageGenerationTask, ImageParams
from ..tasks.base import Call
from .hf_common import _from_pretrained, _placement
from .sources import resolve_source

#: ``architecture:`` -> the diffusers pipeline class its checkpoints are saved with.
PIPELINES: Dict[str, str] = {"sdxl": "StableDiffusionXLPipeline", "flux": "FluxPipeline",
                             "hunyuan": "HunyuanDiTPipeline"}

#: ``params:`` name -> the pipeline ``__call__`` argument that takes it
_CALL_ARGUMENTS = {"width": "width", "height": "height", "num_inference_steps": "num_inference_steps",
                   "guidance_scale": "guidance_scale", "negative_prompt": "negative_prompt",
                   "num_images": "num_images_per_prompt"}


class ModelIndex:
    """A pipeline folder's ``model_index.json``, read (or fetched) before any weights."""

    @staticmethod
    def from_pretrained(location: str, **kwargs: Any) -> Dict[str, Any]:
        from diffusers import DiffusionPipeline
        return DiffusionPipeline.load_config(location, **kwargs)


def refusal(config: Any) -> Optional[NotAvailableError]:
    """What image-generation refuses in a typed ``config`` before loading (a ``--dry-run`` says it too)."""
    if config.quantization != Quantization.NONE:
        return NotAvailableError(f"`quantization: {config.quantization}` is not built for image-generation.\n"
                                 f"  Remove it, or use `precision: float16` to halve the memory.")
    return None


class ImageGeneration(ImageGenerationTask):
    def load(self) -> None:
        import diffusers
        import torch

        from .placement import load_plan

        refused = refusal(self.config)
        if refused is not None:
            raise refused
        source = resolve_source(self.config.model, self.config.task)
        self.source_description = source.description
        if source.kwargs.get("use_safetensors") is False:   # a pipeline's weights sit in subfolders, which
            del source.kwargs["use_safetensors"]            # resolve_source does not look in: let diffusers pick
        plan = load_plan(self.config)
        found = _from_pretrained(ModelIndex, source, dict(source.kwargs)).get("_class_name", "")
        architecture = self.config.architecture
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

    def check(self, call: Call) -> None:
        """The pipeline's ``__call__`` arguments for the action's params (one it lacks is an error), and the
        seeded generator every batch of the action draws from."""
        import torch

        params: ImageParams = call.params
        arguments: Dict[str, Any] = {}
        for name, value in params.values.items():
            argument = _CALL_ARGUMENTS[name]
            if argument not in self.call_arguments:
                raise InputError(f"`{name}: {value}` cannot be given to {type(self.pipeline).__name__}, which "
                                 f"takes no `{argument}`.\n  Remove `{name}` from the action.")
            arguments[argument] = value
        if "negative_prompt" in arguments and "true_cfg_scale" in self.call_arguments:
            # Flux reads a negative prompt only under true classifier-free guidance (scale > 1), which
            # runs the transformer twice a step; 4.0 is diffusers' documented example value
            arguments["true_cfg_scale"] = max(float(arguments.get("guidance_scale", 4.0)), 1.5)
        if "use_resolution_binning" in self.call_arguments:   # HunyuanDiT: else it snaps to a trained size
            arguments["use_resolution_binning"] = False
        generator = None
        if params.seed is not None:
            generator = torch.Generator(self.generator_device).manual_seed(params.seed)
        params.backend.update(arguments=arguments, generator=generator)

    def generate(self, prompts: List[str], params: ImageParams) -> List[Any]:
        images = self.pipeline(prompt=prompts, generator=params.backend["generator"],
                               **params.backend["arguments"]).images
        count = params.count
        return [images[i * count:(i + 1) * count] for i in range(len(prompts))]

    def unload(self) -> None:
        if hasattr(self, "pipeline"):   # the registry collects and empties the device caches after
            del self.pipeline
