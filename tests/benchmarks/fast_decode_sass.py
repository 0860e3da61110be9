"""The fast decode kernels compiled for Hopper (sm_90) on any machine, no GPU needed: registers, spills,
shared memory and the width of every global load, for each weight kind and prologue.

    python tests/benchmarks/fast_decode_sass.py            # needs Triton (its wheel carries ptxas, cuobjdump)

What it tells before any device time is spent (METHOD.md: "read what costs no device time"): that each
kernel compiles for the target, spills nothing, and reads the weights with 16-byte loads (``LDG.E.128``;
int4's bytes come as 4-byte words, coalesced across the warp) rather than 2-byte ones. Integer
arguments and pointers are compiled as the JIT specializes them at run time (multiples of 16, aligned).
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))


def main() -> int:
    try:
        import triton
        import triton.language as tl
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except Exception as e:
        print(f"Triton is needed here ({type(e).__name__}: {e})")
        return 1
    from mc_jupyter.drivers import fast_decode_kernels as K
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    target = GPUTarget("cuda", 90, 32)
    print(f"triton {triton.__version__}, target sm_90")
    print("| kernel | weights | prologue | block | warps | registers | spills (local) | shared | global loads |")
    print("|---|---|---|---|---|---|---|---|---|")
    failures = 0

    def report(fn, sig, consts, label, warps, stages=3):
        nonlocal failures
        names = list(fn.arg_names)
        full = dict(sig, **{k: "constexpr" for k in consts})
        attrs = {(names.index(a),): [["tt.divisibility", 16]] for a in sig if a not in ("eps", "scale")}
        try:
            src = ASTSource(fn=fn, signature={n: full[n] for n in names},
                            constexprs={(names.index(k),): v for k, v in consts.items()}, attrs=attrs)
            compiled = triton.compile(src, target=target, options=dict(num_warps=warps, num_stages=stages))
        except Exception as e:
            failures += 1
            print(f"| {label} | FAILED: {type(e).__name__}: {str(e)[:300]} |")
            return
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(compiled.asm["cubin"])
            f.flush()
            usage = subprocess.run([str(tools / "cuobjdump"), "--dump-resource-usage", f.name],
                                   capture_output=True, text=True).stdout
            sass = subprocess.run([str(tools / "cuobjdump"), "--dump-sass", f.name], capture_output=True, text=True).stdout
        reg = re.search(r"REG:(\d+)", usage)
        local = re.search(r"LOCAL:(\d+)", usage)
        shared = re.search(r"SHARED:(\d+)", usage)
        loads = collections.Counter(m.group(0) for m in re.finditer(r"LDG\.E[\.\w]*", sass))
        print(f"| {label} | {warps} | {reg and reg.group(1)} | {local and local.group(1)} | "
              f"{shared and shared.group(1)} | {', '.join(f'{k} x{v}' for k, v in sorted(loads.items()))} |")

    ptrs = lambda w: {"x_ptr": "*bf16", "w_ptr": w, "s_ptr": "*fp16", "m_ptr": "*fp16", "ln_ptr": "*bf16",  # noqa: E731
                      "bias_ptr": "*bf16", "res_ptr": "*bf16", "out_ptr": "*bf16"}
    pro_names = {K.PRO_NONE: "none (o: + residual)", K.PRO_RMS: "rms norm (qkv, gate/up)",
                 K.PRO_SILU: "silu*up (down: + residual)"}
    for wkind, wtype, wname in ((K.PLAIN, "*bf16", "bf16"), (K.INT8, "*u8", "int8"), (K.INT4, "*u8", "int4 g64")):
        for pro in (K.PRO_RMS, K.PRO_NONE, K.PRO_SILU):
            flags = dict(WKIND=wkind, PRO=pro, HAS_BIAS=False, HAS_RES=pro != K.PRO_RMS, GROUP=64)
            for cfg in K._vec_configs():
                bn, bk = cfg.kwargs["BLOCK_N"], cfg.kwargs["BLOCK_K"]
                sig = dict(ptrs(wtype), N="i32", K="i32", w_stride="i32", s_stride="i32", inter="i32", eps="fp32")
                report(K._gemv_vec.fn, sig, dict(flags, BLOCK_N=bn, BLOCK_K=bk),
                       f"gemv batch 1 | {wname} | {pro_names[pro]} | {bn}x{bk}", cfg.num_warps, cfg.num_stages)
            sig = dict(ptrs(wtype), B="i32", N="i32", K="i32", x_stride="i32", res_stride="i32", out_stride="i32",
                       w_stride="i32", s_stride="i32", inter="i32", eps="fp32")
            report(K._gemv_mat.fn, sig, dict(flags, ACT=tl.bfloat16, BLOCK_B=16, BLOCK_K=64, BLOCK_N=64),
                   f"gemv batch 2-16 | {wname} | {pro_names[pro]} | 64x64", 4)
    sig = {"qkv_ptr": "*bf16", "qkv_stride": "i32", "cos_ptr": "*bf16", "sin_ptr": "*bf16", "pos_ptr": "*i64",
           "slot_ptr": "*i64", "valid_ptr": "*u8", "valid_stride": "i32", "kc_ptr": "*bf16", "vc_ptr": "*bf16",
           "out_ptr": "*bf16", "out_stride": "i32", "L": "i32", "scale": "fp32"}
    report(K._attention, sig, dict(H=32, KVH=32, D=128, BLOCK_D=128, BLOCK_L=64), "attention | — | head_dim 128 | 64 positions", 8)
    report(K._attention, sig, dict(H=32, KVH=4, D=64, BLOCK_D=64, BLOCK_L=128), "attention | — | head_dim 64 | 128 positions", 4)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
