"""GPU memory through NVML: sampling makes no CUDA context; figures match CUDA's. Needs an NVIDIA GPU.

    python tests/benchmarks/gpu_nvml_check.py
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from mc_jupyter.devices import memory_snapshot, nvml_gpus  # noqa: E402

before = memory_snapshot()
assert "torch" not in sys.modules and before["gpus"] and before["gpus_known"]
print("before torch:", [(g["index"], g["name"], g["used"] >> 20, g["total"] >> 20) for g in before["gpus"]])
import torch  # noqa: E402

for _ in range(3):
    snap = memory_snapshot()
assert not torch.cuda.is_initialized(), "sampling initialised CUDA"
assert len(snap["gpus"]) == torch.cuda.device_count()
me = os.getpid()
assert all(p["pid"] != me for g in snap["gpus"] for p in g["processes"])
x = torch.empty(256 << 20, dtype=torch.uint8, device="cuda:0")
torch.cuda.synchronize()
time.sleep(0.5)
print("NVML for this pid:", nvml_gpus()[0]["allocated_by_kernel"] >> 20, "MiB")
g0 = memory_snapshot()["gpus"][0]
free, total = torch.cuda.mem_get_info(0)
print("GPU0 NVML used", g0["used"] >> 20, "MiB; CUDA", (total - free) >> 20, "MiB; processes", g0["processes"])
assert g0["allocated_by_kernel"] == torch.cuda.memory_allocated(0) >= 256 << 20
assert abs(g0["used"] - (total - free)) < 64 << 20
print("GPU CHECK PASSED")
