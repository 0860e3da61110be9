"""Where a model's weights go and in what form: device, device_mode, precision, quantization.

One function turns the component's typed config into ``from_pretrained`` keyword arguments, so loading
(:mod:`hf_common`) and memory planning (:mod:`mc_jupyter.planning`) read them the same way.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ..catalog import DeviceMode, Quantization
from ..devices import resolve_dtype, resolve_placement

#: Bytes a quantized Linear weight takes per parameter (4-bit: packed, plus one absmax per 64).
QUANT_BYTES = {"int8": 1.0, "int4": 0.5 + 4 / 64, "nf4": 0.5 + 4 / 64}


def load_plan(config: Any) -> Dict[str, Any]:
    """``{device, dtype, kwargs, single}``: what ``from_pretrained`` gets for a typed model ``config``."""
    device, precision = resolve_placement(config)   # refuses what a --dry-run says it would refuse
    dtype = resolve_dtype(precision, device)
    kwargs: Dict[str, Any] = {"dtype": dtype}
    quantization = config.quantization
    if config.fast_decode:
        quantization = Quantization.NONE    # plain weights: the fast step quantizes them itself once loaded
    if quantization != Quantization.NONE:
        kwargs["quantization_config"] = quantization_config(quantization, dtype)
    if config.device_mode == DeviceMode.AUTO:
        kwargs["device_map"] = "auto" if device != "cpu" else {"": "cpu"}
        if config.max_memory:
            kwargs["device_map"] = "auto"
            kwargs["max_memory"] = {(int(k) if str(k).isdigit() else k): v for k, v in config.max_memory.items()}
    elif quantization != Quantization.NONE:
        kwargs["device_map"] = {"": device}   # bitsandbytes models cannot be moved with .to() after loading
    if config.low_cpu_mem_usage:
        kwargs["low_cpu_mem_usage"] = True
    if config.trust_remote_code:
        kwargs["trust_remote_code"] = True
    return {"device": device, "dtype": dtype, "kwargs": kwargs, "single": "device_map" not in kwargs}


def quantization_config(quantization: Quantization, dtype: Any):
    from transformers import BitsAndBytesConfig

    if quantization == Quantization.INT8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True,
                              bnb_4bit_quant_type="fp4" if quantization == Quantization.INT4 else "nf4",
                              bnb_4bit_compute_dtype=dtype)


def placement(model: Any) -> Optional[Dict[str, int]]:
    """Bytes of weights on each device ('cuda:0', 'cpu', 'disk') of a model split by a device map.

    Read from ``hf_device_map``, not from the tensors: accelerate keeps offloaded weights on the
    meta device and holds their data elsewhere (CPU RAM or disk).
    """
    device_map = getattr(model, "hf_device_map", None)
    if not device_map or len({str(v) for v in device_map.values()}) < 2:
        return None
    out: Dict[str, int] = {}
    for name, device in device_map.items():
        module = model.get_submodule(name) if name else model
        key = f"cuda:{device}" if isinstance(device, int) else str(device)
        size = sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))
        out[key] = out.get(key, 0) + size
    return out
