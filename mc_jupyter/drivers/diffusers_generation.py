"""image-generation through diffusers (the task: :mod:`mc_jupyter.tasks.image_generation`): PIL images.

``architecture:`` picks the pipeline class (sdxl, flux, hunyuan); without it the folder's
``model_index.json`` names it, and any diffusers text-to-image pipeline loads.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional

from .. import progress
from ..catalog import Quantization
from ..devices import module_bytes, parameter_count
from ..errors import InputError, ModelLoadError, NotAvailableError
from ..tasks.image_generation import ImageGenerationTask, ImageParams
from ..tasks.base import Call
from .hf_common import _from_pretrained, _placement, quiet_library_notices
from .sources import resolve_source

#: ``architecture:`` -> the diffusers pipeline class its checkpoints are saved with.
PIPELINES: Dict[str, str] = {"sdxl": "StableDiffusionXLPipeline", "flux": "FluxPipeline",
                             "hunyuan": "HunyuanDiTPipeline",
                             # model-compose 0.4.120's architectures (HunyuanImage 2.1, Qwen-Image)
                             "hunyuan-image": "HunyuanImagePipeline", "qwen-image": "QwenImagePipeline"}

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
        import torch

        from .placement import load_plan

        refused = refusal(self.config)
        if refused is not None:
            raise refused
        quiet_library_notices()
        source = resolve_source(self.config.model, self.config.task)
        self.source_description = source.description
        if source.kwargs.get("use_safetensors") is False:   # a pipeline's weights sit in subfolders, which
            del source.kwargs["use_safetensors"]            # resolve_source does not look in: let diffusers pick
        plan = load_plan(self.config)
        # the registry's load bar; diffusers', transformers' and the hub's own bars are off while it is open
        with progress.bar(f"loading {self.component_id}", total=3, done=f"loaded {self.component_id}") as bar:
            bar.step("model index")
            self._load_pipeline(source, plan, bar)
        modules = [m for m in self.pipeline.components.values() if isinstance(m, torch.nn.Module)]
        self.device = _placement(self.pipeline, plan["device"])
        self.generator_device = plan["device"]
        self.dtype = str(plan["dtype"]).replace("torch.", "")
        self.parameters = sum(parameter_count(m) for m in modules)
        self.memory_bytes = sum(module_bytes(m) for m in modules)

    def _load_pipeline(self, source: Any, plan: Dict[str, Any], bar: progress.Bar) -> None:
        import diffusers
        progress.quiet_libraries()      # diffusers' own bars, imported just now

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
        bar.step("weights")
        self.pipeline = _from_pretrained(cls, source, kwargs)
        bar.step("device")
        if kwargs.get("device_map") is None:
            self.pipeline.to(plan["device"])
        # a run's steps show in a bar of ours (generate), never in the pipeline's tqdm one
        self.pipeline.set_progress_bar_config(disable=True)
        self.call_arguments = set(inspect.signature(self.pipeline.__call__).parameters)

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
        """One pipeline call, with one progress bar whose steps are the denoising steps the pipeline's
        ``callback_on_step_end`` reports (``num_inference_steps`` of them, or the pipeline's default)."""
        arguments = dict(params.backend["arguments"])
        steps = arguments.get("num_inference_steps", self.default_steps())
        many = f"{len(prompts)} prompts" if len(prompts) > 1 else "1 prompt"
        with progress.bar(f"generating {self.component_id}", total=steps or 0,
                          done=f"generated {self.component_id}") as bar:
            if "callback_on_step_end" in self.call_arguments:
                arguments["callback_on_step_end"] = _stepper(bar)
            images = self.pipeline(prompt=prompts, generator=params.backend["generator"], **arguments).images
            bar.finish(f"generated {self.component_id}: {many}, {bar.value} steps, {bar.seconds:.1f} s")
        count = params.count
        return [images[i * count:(i + 1) * count] for i in range(len(prompts))]

    def default_steps(self) -> Optional[int]:
        """The pipeline's own ``num_inference_steps`` default (50 for SDXL, 28 for Flux), if it has one."""
        parameter = inspect.signature(self.pipeline.__call__).parameters.get("num_inference_steps")
        default = parameter.default if parameter is not None else None
        return default if isinstance(default, int) else None

    def unload(self) -> None:
        if hasattr(self, "pipeline"):   # the registry collects and empties the device caches after
            del self.pipeline


def _stepper(bar: progress.Bar) -> Any:
    """A ``callback_on_step_end`` that moves ``bar`` one step per denoising step, its total taken from the
    pipeline's own count of timesteps once the run knows it."""
    def on_step_end(pipeline: Any, step: int, timestep: Any, callback_kwargs: Dict[str, Any]) -> Dict[str, Any]:
        total = getattr(pipeline, "_num_timesteps", None)
        if isinstance(total, int) and total > 0 and total != bar.total:
            bar.expect(total)
        bar.advance(stage=f"step {step + 1}" + (f"/{bar.total}" if bar.total else ""))
        return callback_kwargs
    return on_step_end
