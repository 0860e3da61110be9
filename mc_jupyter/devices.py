"""Device and precision resolution, and memory figures. torch is imported only when called."""

from __future__ import annotations

import gc
import os
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

from .catalog import Precision, Quantization
from .errors import DeviceError



def resolve_device(requested: Optional[str]) -> str:
    """'cuda' | 'mps' | 'cpu': the requested one if present, else the best one present."""
    import torch

    has_cuda = torch.cuda.is_available()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested in (None, "auto"):
        return "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if requested.startswith("cuda:"):          # model-compose's `cuda:0`, `cuda:1`: that GPU
        count = torch.cuda.device_count() if has_cuda else 0
        index = int(requested.split(":", 1)[1])
        if index >= count:
            raise DeviceError(f"`device: {requested}` was asked for, but this kernel sees "
                              f"{count} CUDA GPU{'s' if count != 1 else ''}"
                              f"{f' (cuda:0 to cuda:{count - 1})' if count > 1 else ''}.\n"
                              f"  Use `device: cuda` (the first GPU), `device: cpu`, or leave `device:` out.")
        return requested
    if requested == "cuda" and not has_cuda:
        raise DeviceError("`device: cuda` was asked for, but this kernel sees no CUDA GPU "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}).\n"
                          "  Use `device: cpu`, or leave `device:` out to pick the best device present.")
    if requested == "mps" and not has_mps:
        raise DeviceError("`device: mps` was asked for, but Apple's Metal backend is not available here.\n"
                          "  Use `device: cpu`, or leave `device:` out to pick the best device present.")
    return requested


def resolve_placement(config: Any) -> Tuple[str, str]:
    """(device, precision) a model component's typed ``config`` comes to, ``auto`` made concrete: the one
    check of device, precision and quantization that every load and every ``--dry-run`` makes. DeviceError
    for a device that is not here, or one that cannot do what is asked (bitsandbytes quantization on mps)."""
    device = resolve_device(config.device)
    precision = str(resolve_dtype(config.precision, device)).replace("torch.", "")
    quantization = config.quantization
    if quantization != Quantization.NONE and device == "mps" and not config.fast_decode:
        raise DeviceError(f"`quantization: {quantization}` runs through bitsandbytes, which does not support "
                          f"Apple's mps device.\n  Use `device: cpu`, or `precision: float16` without quantization.")
    return device, precision


#: Drivers that run on CUDA GPUs only, and what to use instead.
CUDA_ONLY = {"vllm": "Use `driver: huggingface` (or llamacpp) here.",
             "unsloth": "Use `driver: huggingface` here (same YAML, same results)."}


def require_cuda(driver: str) -> None:
    """DeviceError when ``driver`` (one of :data:`CUDA_ONLY`) finds no CUDA GPU: loads and dry runs ask here."""
    import torch
    if not torch.cuda.is_available():
        raise DeviceError(f"the {driver} driver needs a CUDA GPU, and this kernel sees none.\n  {CUDA_ONLY[driver]}")


def resolve_dtype(precision: str, device: str):
    """The torch dtype for ``precision`` on ``device`` ('auto': float16 on GPUs, float32 on CPU)."""
    import torch
    return getattr(torch, Precision(precision).on(device).value)


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
    """Host RAM, this process's RSS, and each visible GPU's memory.

    GPUs are read through NVML (``pynvml``, from nvidia-ml-py): no CUDA context is created (torch's
    ``mem_get_info`` makes one, some 500 MiB, on every GPU it asks about), it works before torch is
    imported, and it says what each process holds (a model server's memory too). Without NVML, only a
    kernel whose torch already made a CUDA context is asked. ``gpus_known``: whether an empty list means
    "no GPU" rather than "not asked"."""
    import psutil

    vm = psutil.virtual_memory()
    total = vm.total
    limit = _cgroup_limit()
    if limit and limit < total:
        total = limit
    out: Dict[str, Any] = {"host": {"total": total, "available": min(vm.available, total)},
                           "process_rss": psutil.Process(os.getpid()).memory_info().rss, "gpus": []}
    gpus = nvml_gpus()
    torch = sys.modules.get("torch")
    context = torch is not None and torch.cuda.is_initialized()   # never initialises CUDA itself
    if gpus is None and context:
        gpus = []
        for i in range(torch.cuda.device_count()):
            free, tot = torch.cuda.mem_get_info(i)
            gpus.append({"index": i, "name": torch.cuda.get_device_name(i), "total": tot, "used": tot - free,
                         "allocated_by_kernel": torch.cuda.memory_allocated(i), "processes": []})
    elif gpus is not None and context:
        for gpu in gpus[:torch.cuda.device_count()]:   # the tensors' own bytes, not the context and cache
            gpu["allocated_by_kernel"] = torch.cuda.memory_allocated(gpu["index"])
    out["gpus"] = gpus or []
    out["gpus_known"] = gpus is not None or _NVML_STATE.get("absent", False) or torch is not None
    return out


_NVML_STATE: Dict[str, Any] = {}   # "module": pynvml once initialised; "absent": no NVIDIA driver; "error"
_NVML_LOCK = threading.Lock()


def _nvml() -> Any:
    """pynvml, initialised once; None when it is not installed or NVML cannot start (no NVIDIA driver)."""
    with _NVML_LOCK:
        if "module" not in _NVML_STATE:
            module = None
            try:
                import pynvml
                try:
                    pynvml.nvmlInit()
                    module = pynvml
                except pynvml.NVMLError_LibraryNotFound:   # no NVIDIA driver here: no CUDA GPU either
                    _NVML_STATE["absent"] = True
                except pynvml.NVMLError as e:
                    _NVML_STATE["error"] = str(e)
            except ImportError:
                _NVML_STATE["error"] = "nvidia-ml-py is not installed"
            _NVML_STATE["module"] = module
        return _NVML_STATE["module"]


def nvml_gpus() -> Optional[List[Dict[str, Any]]]:
    """Each GPU this process may use (``CUDA_VISIBLE_DEVICES`` honoured, numbered as torch numbers them),
    read through NVML: ``{index, name, total, used, allocated_by_kernel, processes: [{pid, used}]}``;
    ``allocated_by_kernel`` is what NVML counts for this process. [] without an NVIDIA driver, None when
    NVML is not there to ask."""
    nvml = _nvml()
    if nvml is None:
        return [] if _NVML_STATE.get("absent") else None
    try:
        handles = _visible_handles(nvml)
        gpus = []
        for position, handle in enumerate(handles):
            memory = _memory_info(nvml, handle)
            name = nvml.nvmlDeviceGetName(handle)
            used_by: Dict[int, int] = {}
            for read in (nvml.nvmlDeviceGetComputeRunningProcesses, nvml.nvmlDeviceGetGraphicsRunningProcesses):
                try:
                    for proc in read(handle):
                        used_by[proc.pid] = used_by.get(proc.pid, 0) + int(proc.usedGpuMemory or 0)
                except nvml.NVMLError:   # not supported on this GPU or driver: no per-process figures
                    pass
            gpus.append({"index": position, "name": name.decode() if isinstance(name, bytes) else str(name),
                         "total": int(memory.total), "used": int(memory.used),
                         "allocated_by_kernel": used_by.get(os.getpid(), 0),
                         "processes": [{"pid": pid, "used": used} for pid, used in sorted(used_by.items())]})
        return gpus
    except nvml.NVMLError:
        return None


def _memory_info(nvml: Any, handle: Any) -> Any:
    """NVML's v2 figures (``used`` without the driver's reserved memory, as nvidia-smi and CUDA count it),
    or v1's on a driver without them."""
    try:
        return nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
    except (nvml.NVMLError, AttributeError, TypeError):
        return nvml.nvmlDeviceGetMemoryInfo(handle)


def _visible_handles(nvml: Any) -> List[Any]:
    """NVML handles of the GPUs ``CUDA_VISIBLE_DEVICES`` lets this process see, in its order."""
    count = nvml.nvmlDeviceGetCount()
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    wanted = os.environ.get("CUDA_VISIBLE_DEVICES")
    if wanted is None:
        return handles
    uuids = []
    for handle in handles:
        uuid = nvml.nvmlDeviceGetUUID(handle)
        uuids.append(uuid.decode() if isinstance(uuid, bytes) else str(uuid))
    out = []
    for entry in (e.strip() for e in wanted.split(",")):
        if entry.isdigit() and int(entry) < count:
            out.append(handles[int(entry)])
        elif entry.startswith("GPU-") and (hits := [h for h, u in zip(handles, uuids) if u.startswith(entry)]):
            out.append(hits[0])
        else:   # CUDA stops at the first entry it cannot read
            break
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
