"""Memory planning: how much a model will take, from its config alone, before anything loads.

The estimate builds the model on PyTorch's meta device (no memory, no weights read) and counts
bytes per parameter: the precision's size, or for a quantized model bitsandbytes' size for the
Linear layers it converts (every Linear but the output head) and the precision's size for the rest.
A stated margin (``MARGIN``) covers what weights do not: the CUDA context, activations, the KV cache
of short generations. :func:`estimate` compares the total with the free memory of the device.

:func:`plan_components` is what ``%%compose --dry-run`` shows per component: what ``auto`` comes to
(``device auto → cpu``), every refusal the real compose would make (:func:`refusals`: a device that is
not here, quantization on mps, missing packages, a model that is nowhere), and the memory estimate.
The refusals are the very checks the loads make, called from here.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .catalog import DriverName, Precision, Task
from .devices import human_bytes
from .errors import UserError

MARGIN = 0.20


@dataclass
class Estimate:
    component: str
    device: str
    precision: str
    quantization: str
    parameters: int
    weight_bytes: int
    free_bytes: Optional[int]
    alternatives: Dict[str, int] = field(default_factory=dict)   # "quantization: nf4" -> total bytes

    @property
    def total_bytes(self) -> int:
        return int(self.weight_bytes * (1 + MARGIN))

    @property
    def fits(self) -> bool:
        return self.free_bytes is None or self.total_bytes <= self.free_bytes

    def lines(self) -> List[str]:
        free = f"{human_bytes(self.free_bytes)} free on {self.device}" if self.free_bytes is not None else self.device
        out = [f"`{self.component}` needs about {human_bytes(self.total_bytes)} (weights {human_bytes(self.weight_bytes)} "
               f"for {self.parameters / 1e6:.1f} M parameters in {self.precision}"
               f"{', ' + self.quantization if self.quantization != 'none' else ''}, + {MARGIN:.0%} margin); {free}"]
        if not self.fits:
            fitting = [k for k, v in self.alternatives.items() if self.free_bytes is None or v <= self.free_bytes]
            advice = (f"Try {' or '.join(f'`{k}`' for k in fitting)}." if fitting else
                      "No precision or quantization makes it fit: use a smaller model or free memory (%mc unload).")
            out.append(f"warning: `{self.component}` will not fit ({human_bytes(self.total_bytes)} needed, "
                       f"{human_bytes(self.free_bytes)} free). {advice}")
        return out


@dataclass
class ComponentPlan:
    """A ``--dry-run``'s lines for one component: its resolved placement, refusals, memory estimate."""

    component: str
    resolved: str = ""                                        # "device auto → cpu · precision auto → float32"
    refused: List[UserError] = field(default_factory=list)
    estimate: Optional[Estimate] = None

    @property
    def fits(self) -> bool:
        return self.estimate is None or self.estimate.fits

    def __getattr__(self, name: str) -> Any:
        """The estimate's figures (``weight_bytes``, ``total_bytes``, ...) read through the plan, as code that
        reads ``plan.estimates`` expects."""
        estimate = self.__dict__.get("estimate")
        if estimate is None or name.startswith("__"):
            raise AttributeError(f"`{self.__dict__.get('component')}` has no {name} (no memory estimate)")
        return getattr(estimate, name)

    def lines(self) -> List[str]:
        out = [f"`{self.component}`: {self.resolved}"] if self.resolved else []
        out += [f"would refuse `{self.component}`: {error}" for error in self.refused]
        return out + (self.estimate.lines() if self.estimate is not None else [])


def plan_components(specs: List[Tuple[str, Any]], which: str = "all") -> List[Any]:
    """Per component (``(id, ComponentSpec)``) to load: with ``which="all"`` (``--dry-run``) a
    :class:`ComponentPlan` each; with ``"gpu"`` (a real compose) only the :class:`Estimate` of the Hugging
    Face models going to a GPU, any error left for the load itself to raise."""
    out: List[Any] = []
    for cid, spec in specs:
        if which == "all":
            out.append(plan_component(cid, spec))
            continue
        found = _estimate_for(cid, spec, gpu_only=True)
        if found is not None:
            out.append(found)
    return out


def plan_component(component_id: str, spec: Any) -> ComponentPlan:
    plan = ComponentPlan(component_id, refused=refusals(spec))
    if spec.type == "model" and not plan.refused:
        plan.resolved = _resolved(spec.config)
        try:
            plan.estimate = _estimate_for(component_id, spec, gpu_only=False)
        except UserError as e:
            plan.refused.append(e)
    return plan


def refusals(spec: Any) -> List[UserError]:
    """Every refusal a real compose of this component makes before it reads weights, each from the check
    the load itself runs: packages, a driver not built, device / precision / quantization, what a task
    refuses, and a model that is nowhere (a missing path, a hub id outside the cache with the hub off)."""
    from .catalog import DRIVERS, component_impl, feature_requirements
    from .errors import MissingPackageError, NotAvailableError
    from .install import missing_packages

    config = spec.config
    if spec.type != "model":
        impl = component_impl(config)
        missing = missing_packages(impl.requires) if impl is not None else []
        return [MissingPackageError(f"a `{spec.type}` component", [p for _, p in missing], missing[0][0])] \
            if missing else []
    driver, task = config.driver, config.task
    impl = DRIVERS.get((driver, task))
    if impl is None:        # the schema checks the pair: a catalog without it is a bug, said plainly
        return [NotAvailableError(f"`driver: {driver}` with `task: {task}` is not available.")]
    out: List[UserError] = []
    missing = missing_packages(impl.requires)
    if missing:
        out.append(MissingPackageError(f"the `{driver}` driver for {task}", [p for _, p in missing], missing[0][0]))
    extra = missing_packages(feature_requirements(config))
    if extra:
        out.append(MissingPackageError("this component's quantization/adapters/device map", [p for _, p in extra],
                                       extra[0][0]))
    for check in _checks(driver, task, {module for module, _ in missing}):
        try:
            problem = check(config)
        except UserError as e:
            problem = e
        if problem is not None:
            out.append(problem)
    return out


def _checks(driver: str, task: str, missing: set) -> List[Any]:
    """The load's own checks (each a function of the typed config) that can run here, their packages present."""
    from .devices import CUDA_ONLY

    if driver in CUDA_ONLY:
        return [] if "torch" in missing else [lambda s: _cuda_only(driver)]
    if driver != "huggingface":
        return []                       # llama.cpp and custom classes place themselves
    if task == "face-embedding":
        return [] if "onnxruntime" in missing else [_face_provider, _face_pack]
    checks: List[Any] = [] if "torch" in missing else [_placement]
    if task == "image-generation":
        from .drivers.diffusers_generation import refusal
        checks.append(refusal)
    checks.append(_upscale_weights if task == "image-upscale" else _model_source)
    return checks


def _cuda_only(driver: str) -> None:
    from .devices import require_cuda
    require_cuda(driver)


def _placement(config: Any) -> None:
    from .devices import resolve_placement
    resolve_placement(config)


def _face_provider(config: Any) -> None:
    from .drivers.face_embedding import resolve_provider
    resolve_provider(config)


def _face_pack(config: Any) -> None:
    from .drivers.sources import pack_folder
    pack_folder(config.model)


def _model_source(config: Any) -> None:
    """A Hugging Face model's source: a missing local path, or a hub id the cache lacks with the hub off or
    out of reach (said at once, as the load would)."""
    from .drivers.sources import cached_snapshot, hub_access, not_cached, resolve_source
    from .errors import ModelLoadError

    source = resolve_source(config.model, config.task)
    kwargs, unreachable = hub_access(source, dict(source.kwargs))
    if not source.is_local and kwargs.get("local_files_only") and cached_snapshot(source) is None:
        raise ModelLoadError(f"could not load `{source.location}`: " + not_cached(source, unreachable))


def _upscale_weights(config: Any) -> None:
    from .drivers.sources import find_weights
    from .drivers.upscale import DEFAULT_MODEL
    architecture = config.architecture
    model = config.model or DEFAULT_MODEL[architecture or "real-esrgan"]
    if architecture == "ldsr":
        return _model_source(config.model_copy(update={"model": model}))
    find_weights(model, config.task)


def _resolved(config: Any) -> str:
    """``device auto → cpu · precision auto → float32`` (a value given shows as it is)."""
    from .devices import resolve_placement

    if config.driver != DriverName.HUGGINGFACE:
        return ""                       # vLLM, unsloth, llama.cpp and custom classes place themselves
    if config.task == Task.FACE_EMBEDDING:
        from .drivers.face_embedding import resolve_provider
        device, precision = resolve_provider(config), "float32"
    else:
        device, precision = resolve_placement(config)

    def show(name: str, asked: object, value: str) -> str:
        asked = str(asked or "auto")
        return f"{name} {asked} → {value}" if asked != value else f"{name} {value}"

    return f"{show('device', config.device, device)} · {show('precision', config.precision, precision)}"


def _estimate_for(cid: str, spec: Any, gpu_only: bool) -> Optional[Estimate]:
    """The memory estimate of a transformers model (its config says its size), else None; with
    ``gpu_only``, None for a model going to the CPU and for any error (the load says why)."""
    from .devices import resolve_device
    from .catalog import DRIVERS
    from .install import driver_class, missing_packages

    c = spec.config
    impl = DRIVERS.get((c.driver, c.task)) if spec.type == "model" else None
    if impl is None or missing_packages(impl.requires):
        return None
    try:
        from .drivers.sources import pending_fetch
        if pending_fetch(c.model):
            return None          # a `url:` model not fetched yet: its files are not there to read
        if gpu_only and resolve_device(c.device) == "cpu":
            return None
        auto_class = getattr(driver_class(c.driver, c.task), "auto_class", None)
        return estimate(cid, c, auto_class) if auto_class is not None else None
    except (OSError, ValueError, ImportError):
        return None
    except UserError:
        if gpu_only:
            return None
        raise


def estimate(component_id: str, config: Any, auto_class: str) -> Estimate:
    """The memory a model component (its typed ``config``) will take once loaded, from the model's files or its config alone.

    With the weights on disk (a local folder, or the hub cache), their safetensors headers give every
    tensor's shape: a millisecond, however large the model. Otherwise the model is built on the meta
    device from its config (about 0.1 s for a 1 B model) and its parameters counted.
    """
    from .drivers.sources import resolve_source
    from .drivers.placement import QUANT_BYTES, load_plan

    source = resolve_source(config.model, config.task)
    plan = load_plan(config)
    tensors = tensors_from_files(source) or _tensors_from_config(source, auto_class)
    precision = str(plan["dtype"]).replace("torch.", "")
    # fast_decode's int8/int4: the plain weights are loaded first and packed on the device (the peak)
    quantization = "none" if config.fast_decode else str(config.quantization)
    parameters = sum(numel for numel, _ in tensors)

    def weight_bytes(dtype_bytes: float, quant: str) -> int:
        return int(sum(numel * (QUANT_BYTES[quant] if quant != "none" and linear else dtype_bytes)
                       for numel, linear in tensors))

    own = weight_bytes(Precision(precision).bytes, quantization)
    alternatives = {}
    options = {"precision: float16": ("float16", "none"), "quantization: int8": (precision, "int8"),
               "quantization: nf4": (precision, "nf4")}
    if config.fast_decode:      # its int8/int4 do not lower the load's peak, and nf4 is bitsandbytes'
        options = {"precision: float16": ("float16", "none")}
    for option, (prec, quant) in options.items():
        if (prec, quant) != (precision, quantization):
            alternatives[option] = int(weight_bytes(Precision(prec).bytes, quant) * (1 + MARGIN))
    return Estimate(component_id, plan["device"], precision, quantization, parameters, own,
                    _free_memory(plan["device"]), alternatives)


#: 2-D weights that are not Linear layers bitsandbytes converts: embeddings and the output head
_NOT_QUANTIZED = ("embed", "wte", "wpe", "lm_head", "shared.", "embed_out", "output_projection")


def tensors_from_files(source: Any) -> Optional[List[Tuple[int, bool]]]:
    """(numel, quantizable) of every tensor in the model's safetensors files, read from their headers;
    None when the files are not all on disk (the config is used then)."""
    files = _safetensors_files(source)
    if not files:
        return None
    out: List[Tuple[int, bool]] = []
    try:
        for path in files:
            with open(path, "rb") as f:
                size = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(size))
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                shape = info["shape"]
                numel = 1
                for n in shape:
                    numel *= int(n)
                linear = len(shape) == 2 and name.endswith("weight") and not any(k in name for k in _NOT_QUANTIZED)
                out.append((numel, linear))
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return out or None


def _safetensors_files(source: Any) -> List[str]:
    if getattr(source, "filename", None):
        return []
    names = ("model.safetensors.index.json", "model.safetensors")
    if source.is_local:
        def locate(name):
            path = os.path.join(source.location, name)
            return path if os.path.isfile(path) else None
    else:
        from huggingface_hub import try_to_load_from_cache

        def locate(name):
            hit = try_to_load_from_cache(source.location, name, cache_dir=source.kwargs.get("cache_dir"),
                                         revision=source.kwargs.get("revision"))
            return hit if isinstance(hit, str) else None
    found = {n: p for n in names if (p := locate(n))}
    if "model.safetensors.index.json" in found:
        try:
            with open(found["model.safetensors.index.json"]) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError):
            return []
        paths = [locate(shard) for shard in shards]
        return paths if all(paths) else []
    return [found["model.safetensors"]] if "model.safetensors" in found else []


def _tensors_from_config(source: Any, auto_class: str) -> List[Tuple[int, bool]]:
    """(numel, quantizable) of every parameter of the model built on the meta device from its config."""
    import torch
    import transformers
    from accelerate import init_empty_weights

    from .drivers.hf_common import _from_pretrained

    kwargs = {k: v for k, v in source.kwargs.items() if k != "use_safetensors"}
    config = _from_pretrained(transformers.AutoConfig, source, kwargs)   # fast and clear when offline
    with init_empty_weights():
        model = getattr(transformers, auto_class).from_config(config)
    if getattr(config, "tie_word_embeddings", False) and hasattr(model, "tie_weights"):
        model.tie_weights()   # the output head shares the embedding's weight: count it once
    out, seen = [], set()
    for _, module in model.named_modules():
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            out.append((p.numel(), isinstance(module, torch.nn.Linear) and p.dim() == 2
                        and not _is_output_head(model, module)))
    del model
    return out


def _is_output_head(model: Any, module: Any) -> bool:
    head = getattr(model, "get_output_embeddings", lambda: None)()
    return head is module


def _free_memory(device: str) -> Optional[int]:
    if device.split(":")[0] == "cuda":
        import torch
        return torch.cuda.mem_get_info(torch.device(device))[0]
    if device == "cpu":
        from .devices import memory_snapshot
        return memory_snapshot()["host"]["available"]
    return None
