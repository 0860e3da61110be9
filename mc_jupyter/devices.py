"""Device and precision resolution, and memory figures. torch is imported only when called."""

from __future__ import annotations

import gc
import os
from typing import Any, Dict, List, Optional

from .errors import DeviceError

PRECISIONS = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def resolve_device(requested: Optional[str]) -> str:
    """'cuda' | 'mps' | 'cpu': the requested one if present, else the best one present."""
    import torch

    has_cuda = torch.cuda.is_available()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested in (None, "auto"):
        return "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if requested == "cuda" and not has_cuda:
        raise DeviceError("`device: cuda` was asked for, but this kernel sees no CUDA GPU "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}).\n"
                          "  Use `device: cpu`, or leave `device:` out to pick the best device present.")
    if requested == "mps" and not has_mps:
        raise DeviceError("`device: mps` was asked for, but Apple's Metal backend is not available here.\n"
                          "  Use `device: cpu`, or leave `device:` out to pick the best device present.")
    return requested


def resolve_dtype(precision: str, device: str):
    """The torch dtype for ``precision`` on ``device`` ('auto': float16 on GPUs, float32 on CPU)."""
    import torch

    if precision == "auto":
        return torch.float16 if device in ("cuda", "mps") else torch.float32
    return getattr(torch, PRECISIONS[precision])


def module_bytes(model: Any) -> int:
    """Bytes held by a torch module's parameters and buffers."""
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        total += t.numel() * t.element_size()
    return total


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def release_memory() -> None:
    """Give freed tensors back: collect cycles, then empty the CUDA/MPS caching allocators."""
    gc.collect()
    import sys
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # cuBLAS keeps a workspace per thread that ran a matmul (a generation thread too): 32 MiB each
        # on Hopper, out of the caching allocator, so it goes back with empty_cache only once dropped
        clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear is not None:
            clear()
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        mps.empty_cache()


def memory_snapshot() -> Dict[str, Any]:
    """Host RAM, this process's RSS, and each GPU's memory when torch is already imported."""
    import sys
    import psutil

    vm = psutil.virtual_memory()
    total = vm.total
    limit = _cgroup_limit()
    if limit and limit < total:
        total = limit
    out: Dict[str, Any] = {"host": {"total": total, "available": min(vm.available, total)},
                           "process_rss": psutil.Process(os.getpid()).memory_info().rss, "gpus": []}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gpus: List[Dict[str, Any]] = []
        for i in range(torch.cuda.device_count()):
            free, tot = torch.cuda.mem_get_info(i)
            gpus.append({"index": i, "name": torch.cuda.get_device_name(i), "total": tot, "used": tot - free,
                         "allocated_by_kernel": torch.cuda.memory_allocated(i)})
        out["gpus"] = gpus
    return out


def _cgroup_limit() -> Optional[int]:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def human_bytes(n: Optional[float]) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
