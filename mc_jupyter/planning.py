"""Memory planning: how much a model will take, from its config alone, before anything loads.

The estimate builds the model on PyTorch's meta device (no memory, no weights read) and counts
bytes per parameter: the precision's size, or for a quantized model bitsandbytes' size for the
Linear layers it converts (every Linear but the output head) and the precision's size for the rest.
A stated margin (``MARGIN``) covers what weights do not: the CUDA context, activations, the KV cache
of short generations. :func:`estimate` compares the total with the free memory of the device.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .devices import human_bytes

MARGIN = 0.20
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


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


def estimate(component_id: str, settings: Dict[str, Any], auto_class: str) -> Estimate:
    """The memory ``settings`` will take once loaded, from the model's files or its config alone.

    With the weights on disk (a local folder, or the hub cache), their safetensors headers give every
    tensor's shape: a millisecond, however large the model. Otherwise the model is built on the meta
    device from its config (about 0.1 s for a 1 B model) and its parameters counted.
    """
    from .drivers.hf_common import resolve_source
    from .drivers.placement import QUANT_BYTES, load_plan

    source = resolve_source(settings.get("model"), settings["task"])
    plan = load_plan(settings)
    tensors = tensors_from_files(source) or _tensors_from_config(source, auto_class)
    precision = str(plan["dtype"]).replace("torch.", "")
    quantization = settings.get("quantization", "none")
    parameters = sum(numel for numel, _ in tensors)

    def weight_bytes(dtype_bytes: float, quant: str) -> int:
        return int(sum(numel * (QUANT_BYTES[quant] if quant != "none" and linear else dtype_bytes)
                       for numel, linear in tensors))

    own = weight_bytes(_DTYPE_BYTES[precision], quantization)
    alternatives = {}
    for option, (prec, quant) in {"precision: float16": ("float16", "none"), "quantization: int8": (precision, "int8"),
                                  "quantization: nf4": (precision, "nf4")}.items():
        if (prec, quant) != (precision, quantization):
            alternatives[option] = int(weight_bytes(_DTYPE_BYTES[prec], quant) * (1 + MARGIN))
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

    kwargs = {k: v for k, v in source.kwargs.items() if k != "use_safetensors"}
    config = transformers.AutoConfig.from_pretrained(source.location, **kwargs)
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
    if device == "cuda":
        import torch
        return torch.cuda.mem_get_info()[0]
    if device == "cpu":
        from .devices import memory_snapshot
        return memory_snapshot()["host"]["available"]
    return None
