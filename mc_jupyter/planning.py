"""Memory planning: how much a model will take, from its config alone, before anything loads.

The estimate builds the model on PyTorch's meta device (no memory, no weights read) and counts
bytes per parameter: the precision's size, or for a quantized model bitsandbytes' size for the
Linear layers it converts (every Linear but the output head) and the precision's size for the rest.
A stated margin (``MARGIN``) covers what weights do not: the CUDA context, activations, the KV cache
of short generations. :func:`estimate` compares the total with the free memory of the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

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
    """The memory ``settings`` will take once loaded, from the model's config alone."""
    import torch
    import transformers
    from accelerate import init_empty_weights

    from .drivers.hf_common import resolve_source
    from .drivers.placement import QUANT_BYTES, load_plan

    source = resolve_source(settings.get("model"), settings["task"])
    plan = load_plan(settings)
    kwargs = {k: v for k, v in source.kwargs.items() if k != "use_safetensors"}
    config = transformers.AutoConfig.from_pretrained(source.location, **kwargs)
    with init_empty_weights():
        model = getattr(transformers, auto_class).from_config(config)
    if getattr(config, "tie_word_embeddings", False) and hasattr(model, "tie_weights"):
        model.tie_weights()   # the output head shares the embedding's weight: count it once
    precision = str(plan["dtype"]).replace("torch.", "")
    quantization = settings.get("quantization", "none")
    parameters = sum(p.numel() for p in model.parameters())

    def weight_bytes(dtype_bytes: float, quant: str) -> int:
        total, seen = 0.0, set()
        for name, module in model.named_modules():
            for p in module.parameters(recurse=False):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                quantized = (quant != "none" and isinstance(module, torch.nn.Linear) and p.dim() == 2
                             and not _is_output_head(model, module))
                total += p.numel() * (QUANT_BYTES[quant] if quantized else dtype_bytes)
        return int(total)

    own = weight_bytes(_DTYPE_BYTES[precision], quantization)
    alternatives = {}
    for option, (prec, quant) in {"precision: float16": ("float16", "none"), "quantization: int8": (precision, "int8"),
                                  "quantization: nf4": (precision, "nf4")}.items():
        if (prec, quant) != (precision, quantization):
            alternatives[option] = int(weight_bytes(_DTYPE_BYTES[prec], quant) * (1 + MARGIN))
    del model
    return Estimate(component_id, plan["device"], precision, quantization, parameters, own,
                    _free_memory(plan["device"]), alternatives)


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
