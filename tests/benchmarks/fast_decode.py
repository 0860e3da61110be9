"""The fast decode path (``fast_decode: true``) against ``generate`` and transformers' static cache, its
profile, its quantized forms against bitsandbytes, and the notebook layer on top; one run.

    python tests/benchmarks/fast_decode.py --quick --out $OUT/fast_decode.json          # bf16, 1.1b + 6.7b
    python tests/benchmarks/fast_decode.py --quick --shapes 6.7b --quant int8,int4 --bnb --skip-bf16
    python tests/benchmarks/fast_decode.py --shapes tiny --new 8 --repeats 1 --skip-static   # CPU smoke (CI)

``--quick`` is the mode whose whole table prints inside one 10-minute device call: batch 1, 128 new
tokens, three consecutive measurements of the decode step, plain ``generate`` timed once, and a time
budget (``--budget-s``, default 540 s) after which nothing new starts (what was skipped is said).
Every row is printed as it finishes and the JSON (``--out``) is rewritten after each one.

For each Llama shape (random weights, bf16 on CUDA, float32 on CPU):

- ms per new token (the whole call over ``--new`` tokens, prefill included) and ms per decode step
  ((time of N + 1 tokens - time of 1 token) / N; the CUDA graph's replay alone is timed too) of
  1. ``model.generate`` (dynamic cache, eager), 2. ``generate(cache_implementation="static")``
  (transformers compiles the forward), 3. the fast path's variants (``--variants``):
  ``fast`` (the default: on CUDA the step compiled by torch.compile), ``triton`` (the Triton kernels of
  fast_decode_kernels), ``inductor`` (the compiled step, named), ``inductor_before`` (the same with the tuning flag set globally and 256-row
  rotary tables: the code before f8ee0e8/5ab4509), ``eager_graph`` (the plain step in a CUDA graph);
- the limit: bytes the step reads (every weight but the embedding) over the copy bandwidth measured here;
- ``--profile``: per-kernel device times of one captured step (20 replays of the graph under the
  profiler, split into steps), with the achieved bandwidth of each matrix product;
- correctness: teacher-forced logits of the fast path against the eager model's full forward over the
  same tokens, next to transformers' own incremental decode against that forward;
- ``--quant int8,int4``: the same model quantized by the fast path (weight-only; int8 per-row scales,
  int4 groups of ``--group``): decode step, memory, teacher-forced logits of the fused step against the
  model's own forward on the same quantized weights, and quality against bf16 (KL, top-1 agreement,
  perplexity on a fixed random text and on the bf16 model's own greedy text);
- ``--bnb``: bitsandbytes' int8 (LLM.int8, threshold 6) and nf4 (blocksize 64, bf16 compute) on the same
  weights through ``generate`` (what users have today): ms per token, memory, the same quality figures;
- ``--notebook`` (default without ``--quick``): ``mc.run`` on a composed ``fast_decode: true`` model against a direct call, and the
  stream's own figures (time to first token, decode tokens/s).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=400),
    "1.1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                 num_key_value_heads=4, vocab_size=32000),
    "6.7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000),
}
TARGETS = {("1.1b", "bf16"): 1.0, ("6.7b", "bf16"): 3.8, ("6.7b", "int8"): 2.4, ("6.7b", "int4"): 1.6}
PROMPT_LEN = 32
STARTED = time.perf_counter()


def sync():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: int):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def copy_bandwidth() -> float:
    import torch
    n = 2 ** 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src), 10, 3)
    del src, dst
    return 2 * n / t          # bytes read + written per second


def build(shape: str, device: str, dtype, vocab=None):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(**dict(SHAPES[shape], **({"vocab_size": vocab} if vocab else {})),
                         max_position_embeddings=4096, bos_token_id=1, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


class Report:
    """Results as they come: printed, and the JSON rewritten after each."""

    def __init__(self, out, budget_s: float) -> None:
        self.out, self.budget_s = out, budget_s
        self.data = {"command": "python tests/benchmarks/fast_decode.py " + " ".join(sys.argv[1:]),
                     "rows": [], "checks": [], "profiles": [], "quant": [], "skipped": [], "errors": []}

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - STARTED)

    def can(self, what: str, need_s: float = 0.0) -> bool:
        if self.left() > need_s:
            return True
        self.data["skipped"].append(what)
        print(f"skipped (time budget): {what}", flush=True)
        self.save()
        return False

    def error(self, what: str, e: BaseException) -> None:
        text = f"{what}: {type(e).__name__}: {str(e)[:600]}"
        self.data["errors"].append(text)
        print("FAILED", text, flush=True)
        traceback.print_exc(limit=6)
        self.save()

    def save(self) -> None:
        self.data["elapsed_s"] = time.perf_counter() - STARTED
        if self.out:
            Path(self.out).write_text(json.dumps(self.data, indent=2, default=str))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="batch 1, 3 runs, one device call (see the docstring)")
    parser.add_argument("--shapes", default="1.1b,6.7b")
    parser.add_argument("--batches", default=None)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=None, help="consecutive measurements of the decode step")
    parser.add_argument("--skip-static", action="store_true", help="leave out transformers' static cache")
    parser.add_argument("--skip-default", action="store_true", help="leave out plain generate")
    parser.add_argument("--skip-bf16", action="store_true", help="only the quantized part")
    parser.add_argument("--skip-check", action="store_true", help="leave out the teacher-forced check")
    parser.add_argument("--variants", default=None,
                        help="in this order: fast, triton, inductor, inductor_before, eager_graph, static (transformers' "
                             "static cache), generate (plain); static and generate run last if not named")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--quant", default="", help="int8,int4: the fast path's own quantization")
    parser.add_argument("--group", type=int, default=64)
    parser.add_argument("--bnb", action="store_true", help="bitsandbytes int8 / nf4 through generate")
    parser.add_argument("--notebook", action="store_true", default=None,
                        help="mc.run vs a direct call, stream figures (on by default without --quick)")
    parser.add_argument("--skip-notebook", action="store_true")
    parser.add_argument("--budget-s", type=float, default=None)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.batches is None:
        args.batches = "1" if args.quick else "1,8"
    if args.runs is None:
        args.runs = 3 if args.quick else 1
    if args.variants is None:
        args.variants = "fast,static,generate" if args.quick else "fast,inductor,eager_graph,static,generate"
    if args.notebook is None:
        args.notebook = not args.quick and not args.skip_notebook
    if args.budget_s is None:
        args.budget_s = 540 if args.quick else 1e9
    print("command: python tests/benchmarks/fast_decode.py " + " ".join(sys.argv[1:]), flush=True)
    from tests import tiny_models
    root = Path(tempfile.mkdtemp(prefix="mcj-fast-"))
    tiny_models.use_offline_cache(root)       # before transformers is imported
    report = Report(args.out, args.budget_s)
    try:
        return measure(args, root, report)
    finally:
        report.save()
        shutil.rmtree(root, ignore_errors=True)


def environment(report: Report) -> None:
    import torch
    import transformers
    env = {"torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import triton
        env["triton"] = triton.__version__
    except Exception:
        env["triton"] = None
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    report.data["environment"] = env
    print("environment:", env, flush=True)


def measure(args, root: Path, report: Report) -> int:
    import torch

    environment(report)
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    bandwidth = copy_bandwidth() if cuda else None
    report.data["bandwidth_tb_s"] = bandwidth and bandwidth / 1e12
    if bandwidth:
        print(f"copy bandwidth: {bandwidth / 1e12:.2f} TB/s", flush=True)
    for shape in args.shapes.split(","):
        if not report.can(f"shape {shape}", 30):
            continue
        try:
            if not args.skip_bf16:
                measure_shape(args, shape, device, dtype, bandwidth, report)
            if args.quant or args.bnb:
                measure_quant(args, shape, device, dtype, bandwidth, report)
        except Exception as e:
            report.error(f"shape {shape}", e)
        gc.collect()
        torch._dynamo.reset()
        if cuda:
            torch.cuda.empty_cache()
    if args.notebook and report.can("notebook layer", 40):
        try:
            report.data["notebook_layer"] = notebook_layer(root, args.shapes.split(",")[0], device, dtype,
                                                           args.new, args.repeats)
        except Exception as e:
            report.error("notebook layer", e)
    print_tables(report)
    report.save()
    bad = [c for c in report.data["checks"] if c.get("error") or not c.get("within_tolerance", True)]
    return 1 if bad or (report.data["errors"] and not cuda) else 0


# -- bf16 -----------------------------------------------------------------------------------------------
VARIANTS = {"fast": {}, "triton": dict(backend="triton"), "inductor": dict(backend="inductor"), "eager_graph": dict(backend="eager"),
            "inductor_before": dict(backend="inductor")}


def make_fast(model, label: str, **extra):
    from mc_jupyter.drivers.fast_decode import FastDecoder
    fast = FastDecoder(model, **VARIANTS.get(label, {}), **extra)
    if label == "inductor_before":       # the code before the two changes: global flag, 256-row tables
        fast._global_tuning = True
        fast._table_rows = 256
    return fast


def read_bytes(fast) -> int:
    """What one step reads: the layers' matrices and norms, lm_head (not the embedding table)."""
    return fast.weight_bytes


def step_runs(fast, ids, mask, n_new: int, repeats: int, runs: int):
    """(per-token ms of an n_new call, [step ms of each run], prefill ms)."""
    per_token = timed(lambda: fast.generate_ids(ids, mask, n_new, pad_token_id=0), repeats, 1) / n_new * 1000
    steps, prefill = [], None
    for _ in range(runs):
        one = timed(lambda: fast.generate_ids(ids, mask, 1, pad_token_id=0), repeats, 1)
        more = timed(lambda: fast.generate_ids(ids, mask, n_new + 1, pad_token_id=0), repeats, 1)
        steps.append((more - one) / n_new * 1000)
        prefill = one * 1000
    return per_token, steps, prefill


def graph_replay_ms(fast, batch: int, reps: int = 24):
    """Device time of one replay of the captured step, CUDA events over ``reps`` consecutive replays
    (they fill the cache's free slots after the last call: the state is restored after each batch)."""
    import torch
    states = [s for key, s in fast._states.items() if key[0] == batch and s.graph is not None]
    if not states:
        return None
    s = max(states, key=lambda st: st.length)
    saved = fast._save(s)
    reps = max(1, min(reps, s.length - int(s.slot.max()) - 2))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(6):
        fast._restore(s, saved)
        torch.cuda.synchronize()
        start.record()
        for _ in range(reps):
            s.graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / reps)
    fast._restore(s, saved)
    return statistics.median(times[1:])


def profile_step(fast, batch: int, label: str, report: Report, reps: int = 20):
    """Per-kernel device times of one captured step: ``reps`` replays under the profiler, split evenly."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    states = [s for key, s in fast._states.items() if key[0] == batch and s.graph is not None]
    if not states:
        return None
    s = max(states, key=lambda st: st.length)
    saved = fast._save(s)
    reps = max(1, min(reps, s.length - int(s.slot.max()) - 2))
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            s.graph.replay()
        torch.cuda.synchronize()
    fast._restore(s, saved)
    kernels = []
    for e in prof.events():
        if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA and "Memcpy" not in e.name \
                and "Memset" not in e.name:
            kernels.append((e.time_range.start, e.time_range.end - e.time_range.start, e.name))
    kernels.sort()
    source = "graph replays"
    if len(kernels) < reps or len(kernels) % reps:
        # the profiler saw no kernels inside the graph: profile the step itself, uncaptured
        source = "uncaptured step"
        step = fast._step_fn if fast.use_compile and fast._step_fn is not None else fast._step
        with torch.inference_mode():
            for _ in range(2):
                step(s)
                fast._restore(s, saved)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(reps):
                    step(s)
                    fast._restore(s, saved)
                torch.cuda.synchronize()
        fast._restore(s, saved)
        kernels = sorted((e.time_range.start, e.time_range.end - e.time_range.start, e.name) for e in prof.events()
                         if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
        names = {}
        for _, dur, name in kernels:
            names.setdefault(name, []).append(dur)
        per_step = {n: sum(d) / reps for n, d in names.items()}
        positions = None
    else:
        per = len(kernels) // reps
        durations = [[kernels[r * per + i][1] for r in range(reps)] for i in range(per)]
        positions = [(kernels[i][2], statistics.median(d)) for i, d in enumerate(durations)]
        per_step = {}
        for name, d in positions:
            per_step[name] = per_step.get(name, 0.0) + d
    total_us = sum(per_step.values())
    out = {"label": label, "batch": batch, "source": source, "kernels_per_step": len(positions or []) or None,
           "kernel_time_ms": total_us / 1000,
           "by_name_ms": dict(sorted(((n[:90], v / 1000) for n, v in per_step.items()), key=lambda kv: -kv[1])[:15])}
    if positions and fast.backend == "triton":
        out["by_role"] = triton_roles(fast, positions)
    report.data["profiles"].append(out)
    report.save()
    print(f"  profile {label}: {out['kernel_time_ms']:.3f} ms of kernels a step ({source}, "
          f"{out['kernels_per_step']} kernels)", flush=True)
    for name, ms in list(out["by_name_ms"].items())[:8]:
        print(f"    {ms * 1000:8.1f} us  {name}", flush=True)
    for role, r in (out.get("by_role") or {}).items():
        print(f"    {role:10s} {r['us']:9.1f} us  {r['count']:3d} kernels" +
              (f"  {r['gb_s']:.0f} GB/s" if r.get("gb_s") else ""), flush=True)
    return out


def triton_roles(fast, positions):
    """The Triton step's kernels in order (embedding, per layer qkv/attention/o/gate-up/down, head, rest)."""
    roles = {}
    i = 0
    layer_names = ("qkv", "attention", "o", "gate_up", "down")
    sizes = {"qkv": lambda L: L.qkv.nbytes, "o": lambda L: L.o.nbytes, "gate_up": lambda L: L.gu.nbytes,
             "down": lambda L: L.down.nbytes}
    seq = []
    # find the first gemv: everything before it is the embedding
    while i < len(positions) and "gemv" not in positions[i][0]:
        seq.append(("embedding", positions[i][1], 0))
        i += 1
    for layer in fast.layers:
        for role in layer_names:
            if i >= len(positions):
                break
            seq.append((role, positions[i][1], sizes[role](layer) if role in sizes else 0))
            i += 1
    if i < len(positions):
        seq.append(("lm_head", positions[i][1], fast.head.nbytes))
        i += 1
    for name, d in positions[i:]:
        seq.append(("sampling", d, 0))
    for role, us, nbytes in seq:
        r = roles.setdefault(role, {"us": 0.0, "count": 0, "bytes": 0})
        r["us"] += us
        r["count"] += 1
        r["bytes"] += nbytes
    for r in roles.values():
        r["gb_s"] = r["bytes"] / (r["us"] * 1e-6) / 1e9 if r["bytes"] and r["us"] else None
    return roles


def measure_shape(args, shape: str, device: str, dtype, bandwidth, report: Report) -> None:
    import torch
    started = time.perf_counter()
    model = build(shape, device, dtype)
    n_new = args.new
    cuda = device == "cuda"
    print(f"{shape}: built in {time.perf_counter() - started:.1f} s", flush=True)
    g = torch.Generator(device="cpu").manual_seed(1)
    checked = args.skip_check
    for batch in map(int, args.batches.split(",")):
        ids = torch.randint(2, SHAPES[shape]["vocab_size"], (batch, PROMPT_LEN), generator=g).to(device)
        mask = torch.ones_like(ids)
        row = {"shape": shape, "batch": batch, "kind": "bf16" if cuda else "fp32"}
        report.data["rows"].append(row)

        def generate(n=n_new, **extra):
            with torch.inference_mode():
                return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n,
                                      min_new_tokens=n, do_sample=False, pad_token_id=0, **extra)

        order = args.variants.split(",")
        for extra in ("static", "generate"):
            if extra not in order:
                order.append(extra)
        for label in order:
            if label == "static":
                if not args.skip_static and batch == 1 and report.can(f"{shape} static cache", 60):
                    measure_static(generate, row, shape, batch, n_new, args, report)
                continue
            if label == "generate":
                if not args.skip_default and report.can(f"{shape} batch {batch} generate", 20):
                    row["default_ms"] = timed(generate, 1 if args.quick else args.repeats, 1) / n_new * 1000
                    print(f"  {shape} batch {batch}: generate {row['default_ms']:.2f} ms/token", flush=True)
                    report.save()
                continue
            if label not in VARIANTS or (label != "fast" and not cuda):
                continue
            if not report.can(f"{shape} batch {batch} {label}", 60 if label.startswith("inductor") else 20):
                continue
            fast = None
            try:
                fast = make_fast(model, label)
                t0 = time.perf_counter()
                first = fast.generate_ids(ids, mask, n_new, pad_token_id=0)
                sync()
                row[label + "_first_s"] = time.perf_counter() - t0
                if bandwidth and "limit_ms" not in row:
                    row["read_bytes"] = read_bytes(fast)
                    row["limit_ms"] = row["read_bytes"] / bandwidth * 1000
                per_token, steps, prefill = step_runs(fast, ids, mask, n_new, args.repeats, args.runs)
                row[label + "_ms"] = per_token
                row[label + "_step_runs_ms"] = steps
                row[label + "_step_ms"] = statistics.median(steps)
                row[label + "_prefill_ms"] = prefill
                if cuda:
                    row[label + "_replay_ms"] = graph_replay_ms(fast, batch)
                row[label + "_backend"] = fast.backend
                row[label + "_notes"] = list(fast.notes)
                print(f"  {shape} batch {batch}: {label} [{fast.backend}] {per_token:.3f} ms/token; decode step "
                      f"{', '.join(f'{x:.3f}' for x in steps)} ms"
                      + (f" (graph replay {row[label + '_replay_ms']:.3f} ms)" if row.get(label + "_replay_ms") else "")
                      + f"; prefill {prefill:.1f} ms; first call {row[label + '_first_s']:.1f} s {fast.notes}",
                      flush=True)
                if label == "fast" and not args.quick and report.can(f"{shape} greedy agreement"):
                    reference = generate()[:, PROMPT_LEN:]
                    row["greedy_agreement"] = float((first == reference).float().mean())
                if args.profile and cuda:
                    profile_step(fast, batch, f"{shape} b{batch} {label}", report)
            except Exception as e:
                row[label + "_error"] = f"{type(e).__name__}: {str(e)[:500]}"
                report.error(f"{shape} batch {batch} {label}", e)
            del fast
            gc.collect()
            if label == "fast" and not checked and report.can(f"{shape} teacher-forced check", 20):
                checked = True        # right after the default path's figures (the inductor forms come later)
                check_logits(model, shape, device, g, report)
            if label.startswith("inductor"):
                torch._dynamo.reset()
                if label == "inductor_before":
                    import torch._inductor.config as inductor
                    inductor.coordinate_descent_tuning = False
            report.save()

    if not checked and report.can(f"{shape} teacher-forced check", 20):
        check_logits(model, shape, device, g, report)
    del model
    gc.collect()


def measure_static(generate, row, shape, batch, n_new, args, report: Report) -> None:
    """transformers' static cache (its forward compiled by generate): ms per token over n_new."""
    import torch
    try:
        t0 = time.perf_counter()
        generate(cache_implementation="static")
        row["static_first_s"] = time.perf_counter() - t0
        row["static_ms"] = timed(lambda: generate(cache_implementation="static"), args.repeats, 1) / n_new * 1000
        print(f"  {shape} batch {batch}: static cache {row['static_ms']:.3f} ms/token "
              f"(first call {row['static_first_s']:.1f} s)", flush=True)
    except Exception as e:
        row["static_error"] = f"{type(e).__name__}: {str(e)[:300]}"
        report.error(f"{shape} static cache", e)
    torch._dynamo.reset()
    report.save()


def check_logits(model, shape, device, g, report: Report) -> None:
    """Teacher-forced logits of the fast path (default backend) against the eager full forward."""
    import torch
    from mc_jupyter.drivers.fast_decode import FastDecoder
    check = {"shape": shape}
    try:
        ids = torch.randint(2, SHAPES[shape]["vocab_size"], (2, PROMPT_LEN), generator=g).to(device)
        mask = torch.ones_like(ids)
        mask[1, :5] = 0                            # a left-padded row too
        steps = 32
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps,
                                 do_sample=False, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
            teacher = out.sequences[:, PROMPT_LEN:]
            incremental = torch.stack([s.float() for s in out.logits], 1)          # [2, steps, V]
            full = forward_logits(model, ids, mask, teacher)
        fast = FastDecoder(model)
        forced = torch.stack(list(fast.generate(ids, mask, steps, teacher_tokens=teacher)), 1)
        check.update(
            backend=fast.backend, logits_scale=full.abs().max().item(),
            fast_vs_forward_max=(forced - full).abs().max().item(),
            generate_vs_forward_max=(incremental - full).abs().max().item(),
            fast_argmax_agreement=float((forced.argmax(-1) == full.argmax(-1)).float().mean()),
            generate_argmax_agreement=float((incremental.argmax(-1) == full.argmax(-1)).float().mean()))
        check["within_tolerance"] = check["fast_vs_forward_max"] <= 2 * check["generate_vs_forward_max"] + 1e-3
        print(f"  {shape} teacher-forced logits over {steps} steps: {check}", flush=True)
        sample = dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1)
        one = ids[:1]
        runs = []
        for seed in (0, 0, 1):
            torch.manual_seed(seed)
            runs.append(fast.generate_ids(one, torch.ones_like(one), 32, **sample))
        check["sampling_repeats_with_seed"] = bool(torch.equal(runs[0], runs[1]))
        check["sampling_varies_with_seed"] = not torch.equal(runs[0], runs[2])
        print(f"  {shape} sampling in the step: repeats with its seed: {check['sampling_repeats_with_seed']}, "
              f"varies with it: {check['sampling_varies_with_seed']}", flush=True)
        del fast
    except Exception as e:
        check["error"] = f"{type(e).__name__}: {str(e)[:500]}"
        report.error(f"{shape} check", e)
    report.data["checks"].append(check)
    report.save()


def forward_logits(model, ids, mask, teacher):
    """The eager model's full forward over prompt + teacher tokens: logits predicting each teacher token."""
    import torch
    full_ids = torch.cat([ids, teacher], 1)
    full_mask = torch.cat([mask, torch.ones_like(teacher)], 1)
    pos = (full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 1)
    with torch.inference_mode():
        logits = model(input_ids=full_ids, attention_mask=full_mask, position_ids=pos).logits.float()
    n = ids.shape[1]
    return logits[:, n - 1:n - 1 + teacher.shape[1]]


# -- quantized ------------------------------------------------------------------------------------------
def seq_logits(model, seq):
    import torch
    with torch.inference_mode():
        return model(input_ids=seq).logits[0].float()


def quality(ref, got, seq, start: int):
    """KL(ref || got), top-1 agreement, relative error of the logits, perplexity of seq[start:] under got."""
    import torch
    ref, got = ref[start - 1:-1], got[start - 1:-1]
    targets = seq[0, start:]
    lr, lg = ref.log_softmax(-1), got.log_softmax(-1)
    kl = (lr.exp() * (lr - lg)).sum(-1).mean().item()
    nll = -lg.gather(1, targets[:, None]).mean().item()
    nll_ref = -lr.gather(1, targets[:, None]).mean().item()
    return {"kl": kl, "top1": float((ref.argmax(-1) == got.argmax(-1)).float().mean()),
            "rel_err": ((got - ref).norm() / ref.norm()).item(), "ppl": math.exp(nll), "ppl_bf16": math.exp(nll_ref)}


def to_bnb(model, kind: str) -> None:
    """bitsandbytes' own int8 (LLM.int8, threshold 6) or nf4 (blocksize 64, bf16 compute) in place of the
    layers' linears, quantized from the same weights on the GPU (what transformers' loader does)."""
    import bitsandbytes as bnb
    import torch
    for layer in model.model.layers:
        for parent, names in ((layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")),
                              (layer.mlp, ("gate_proj", "up_proj", "down_proj"))):
            for name in names:
                old = getattr(parent, name)
                w = old.weight.data
                if kind == "int8":
                    new = bnb.nn.Linear8bitLt(old.in_features, old.out_features, bias=old.bias is not None,
                                              has_fp16_weights=False, threshold=6.0, device="meta")
                    param = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
                    param = param._quantize(w.device)
                else:
                    new = bnb.nn.Linear4bit(old.in_features, old.out_features, bias=old.bias is not None,
                                            compute_dtype=torch.bfloat16, quant_type="nf4", device="meta")
                    param = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", blocksize=64,
                                              module=new).to(w.device)
                new.weight = param
                if old.bias is not None:
                    new.bias = old.bias
                setattr(parent, name, new)
                del old, w
    torch.cuda.empty_cache()


def measure_quant(args, shape: str, device: str, dtype, bandwidth, report: Report) -> None:
    import torch
    from mc_jupyter.drivers.fast_decode import FastDecoder
    from mc_jupyter.drivers.quant_weights import quantized_bytes
    cuda = device == "cuda"
    n_new = args.new
    vocab = SHAPES[shape]["vocab_size"]
    g = torch.Generator(device="cpu").manual_seed(7)
    prompt = torch.randint(2, vocab, (1, PROMPT_LEN), generator=g).to(device)
    mask = torch.ones_like(prompt)
    random_text = torch.randint(2, vocab, (1, 512), generator=g).to(device)
    # the bf16 reference: its greedy text and its logits on both texts
    started = time.perf_counter()
    model = build(shape, device, dtype)
    base_alloc = torch.cuda.memory_allocated() if cuda else 0
    with torch.inference_mode():            # (generate, not the fast path: no compile before the quantized rows)
        greedy_text = model.generate(input_ids=prompt, attention_mask=mask, max_new_tokens=224, min_new_tokens=224,
                                     do_sample=False, pad_token_id=0)
    refs = {"random": seq_logits(model, random_text), "greedy": seq_logits(model, greedy_text)}
    teacher = greedy_text[:, PROMPT_LEN:PROMPT_LEN + 64]
    ref_forced_fwd = forward_logits(model, prompt, mask, teacher)[0]
    bf16_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    report.data.setdefault("quant_reference", {})[shape] = {"weights_bytes": bf16_bytes}
    del model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        base_alloc = torch.cuda.memory_allocated()
    print(f"{shape}: bf16 reference logits in {time.perf_counter() - started:.1f} s", flush=True)
    texts = {"random": (random_text, 1), "greedy": (greedy_text, PROMPT_LEN)}

    kinds = [k for k in args.quant.split(",") if k] + (["bnb_int8", "bnb_nf4"] if args.bnb else [])
    for kind in kinds:
        if not report.can(f"{shape} {kind}", 45):
            continue
        row = {"shape": shape, "kind": kind}
        report.data["quant"].append(row)
        model = fast = None
        try:
            t0 = time.perf_counter()
            model = build(shape, device, dtype)
            if kind.startswith("bnb_"):
                to_bnb(model, kind[4:])
            else:
                fast = FastDecoder(model, quantization=kind, group_size=args.group)
            row["quantize_s"] = time.perf_counter() - t0
            if cuda:
                torch.cuda.synchronize()
                row["allocated_bytes"] = torch.cuda.memory_allocated() - base_alloc
            row["footprint_bytes"] = model.get_memory_footprint()
            if fast is not None:
                row["read_bytes"] = read_bytes(fast)
                row["quantized_bytes"] = quantized_bytes(model)
                if bandwidth:
                    row["limit_ms"] = row["read_bytes"] / bandwidth * 1000
                t0 = time.perf_counter()
                fast.generate_ids(prompt, mask, n_new, pad_token_id=0)
                sync()
                row["first_s"] = time.perf_counter() - t0
                per_token, steps, prefill = step_runs(fast, prompt, mask, n_new, args.repeats, args.runs)
                row.update(ms=per_token, step_runs_ms=steps, step_ms=statistics.median(steps), prefill_ms=prefill,
                           backend=fast.backend, notes=list(fast.notes))
                if cuda:
                    row["replay_ms"] = graph_replay_ms(fast, 1)
                print(f"  {shape} {kind} [{fast.backend}]: {per_token:.3f} ms/token; decode step "
                      f"{', '.join(f'{x:.3f}' for x in steps)} ms"
                      + (f" (graph replay {row['replay_ms']:.3f} ms)" if row.get("replay_ms") else "")
                      + f"; prefill {prefill:.1f} ms; first call {row['first_s']:.1f} s; "
                      f"weights read {row['read_bytes'] / 2**30:.2f} GiB {fast.notes}", flush=True)
                if args.profile and cuda:
                    profile_step(fast, 1, f"{shape} {kind}", report)
                # the fused step against the model's own forward on the same quantized weights
                forced = torch.stack(list(fast.generate(prompt, mask, teacher.shape[1], teacher_tokens=teacher)), 1)[0]
                own = forward_logits(model, prompt, mask, teacher)[0]
                row["step_vs_own_forward_max"] = (forced - own).abs().max().item()
                row["step_vs_own_forward_rel"] = ((forced - own).norm() / own.norm()).item()
                row["step_vs_bf16"] = quality_rows(ref_forced_fwd, forced)
            else:
                t0 = time.perf_counter()
                with torch.inference_mode():
                    model.generate(input_ids=prompt, attention_mask=mask, max_new_tokens=8, min_new_tokens=8,
                                   do_sample=False, pad_token_id=0)
                row["first_s"] = time.perf_counter() - t0
                bnb_new = 64
                total = timed(lambda: model.generate(input_ids=prompt, attention_mask=mask, max_new_tokens=bnb_new,
                                                     min_new_tokens=bnb_new, do_sample=False, pad_token_id=0),
                              1 if args.quick else args.repeats, 0)
                row["ms"] = total / bnb_new * 1000
                row["new_tokens"] = bnb_new
                print(f"  {shape} {kind} through generate: {row['ms']:.2f} ms/token ({bnb_new} tokens)", flush=True)
            for name, (seq, start) in texts.items():
                row["quality_" + name] = quality(refs[name], seq_logits(model, seq), seq, start)
            print(f"  {shape} {kind}: memory {row.get('allocated_bytes', 0) / 2**30:.2f} GiB allocated, "
                  f"footprint {row['footprint_bytes'] / 2**30:.2f} GiB; quality "
                  + "; ".join(f"{n}: KL {q['kl']:.2e}, top-1 {q['top1']:.3f}, rel {q['rel_err']:.4f}, "
                              f"ppl {q['ppl']:.3f} (bf16 {q['ppl_bf16']:.3f})"
                              for n, q in ((n, row['quality_' + n]) for n in texts))
                  + (f"; fused step vs own forward max {row['step_vs_own_forward_max']:.3f}"
                     if "step_vs_own_forward_max" in row else ""), flush=True)
        except Exception as e:
            row["error"] = f"{type(e).__name__}: {str(e)[:500]}"
            report.error(f"{shape} {kind}", e)
        del fast, model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        report.save()


def quality_rows(ref, got):
    lr, lg = ref.log_softmax(-1), got.log_softmax(-1)
    return {"kl": (lr.exp() * (lr - lg)).sum(-1).mean().item(),
            "top1": float((ref.argmax(-1) == got.argmax(-1)).float().mean()),
            "rel_err": ((got - ref).norm() / ref.norm()).item(), "max_abs": (got - ref).abs().max().item()}


# -- the notebook layer -------------------------------------------------------------------------------
def notebook_layer(root: Path, shape: str, device: str, dtype, n_new: int, repeats: int):
    """``mc.run`` on a composed ``fast_decode: true`` model against a direct FastDecoder call on it, and
    the stream's figures (time to first token, decode tokens/s) from a streamed run."""
    import torch

    import mc_jupyter as mc
    from mc_jupyter.engine import StreamSink
    from mc_jupyter.registry import Registry
    from tests import tiny_models

    try:
        tok = tiny_models.build_tokenizer()
        model = build(shape, device, dtype, vocab=len(tok))
        model.save_pretrained(root / "m")
        tok.save_pretrained(root / "m")
        del model
        yaml = f"""
component:
  id: fast
  type: model
  task: text-generation
  model: {root / 'm'}
  device: {device}
  precision: {'bfloat16' if dtype == torch.bfloat16 else 'float32'}
  fast_decode: true
  text: ${{input.prompt}}
  params: {{max_output_length: {n_new}, min_output_length: {n_new}, temperature: 0}}
"""
        registry = Registry()
        mc.compose(yaml, registry=registry)
        driver = registry.entries["fast"].driver
        prompt = "The sky is blue because the air scatters"
        enc = driver.tokenizer([prompt], return_tensors="pt").to(device)

        def direct():
            return driver.tokenizer.batch_decode(driver.fast.generate_ids(
                enc["input_ids"], enc["attention_mask"], n_new, pad_token_id=0, min_new_tokens=n_new),
                skip_special_tokens=True)

        def run():
            return mc.run(inputs={"prompt": prompt}, registry=registry)

        run()
        direct()
        a, b = [], []      # alternately, so drift falls on both
        for i in range(max(repeats, 5)):
            for fn, out in ((run, a), (direct, b)) if i % 2 == 0 else ((direct, b), (run, a)):
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                out.append(time.perf_counter() - t0)
        run_s, direct_s = statistics.median(a), statistics.median(b)
        same = run().output == direct()[0]
        stats_direct = dict(driver.fast.last_stats)

        class Sink(StreamSink):
            def __init__(self):
                self.first = None
                self.count = 0

            def chunk(self, text, tokens=None):
                if self.first is None:
                    self.first = time.perf_counter()
                self.count += 1

        mc.compose(yaml.replace("  text:", "  streaming: true\n  text:"), registry=registry)
        sink = Sink()
        mc.run(inputs={"prompt": prompt}, stream=Sink(), registry=registry)      # warm
        t0 = time.perf_counter()
        mc.run(inputs={"prompt": prompt}, stream=sink, registry=registry)
        stream_total = time.perf_counter() - t0
        stats_stream = dict(registry.entries["fast"].driver.fast.last_stats)
        registry.down()
        out = {"shape": shape, "mc_run_ms_per_token": run_s / n_new * 1000,
               "direct_ms_per_token": direct_s / n_new * 1000, "ratio_tokens_per_s": direct_s / run_s,
               "same_text": same, "direct_stats": stats_direct, "stream_stats": stats_stream,
               "stream_first_chunk_ms": (sink.first - t0) * 1000 if sink.first else None,
               "stream_total_s": stream_total, "stream_chunks": sink.count}
        print(f"notebook layer ({shape}, batch 1): mc.run {out['mc_run_ms_per_token']:.3f} ms/token, direct "
              f"{out['direct_ms_per_token']:.3f} ms/token, tokens/s ratio {out['ratio_tokens_per_s']:.3f}, "
              f"same text: {same}", flush=True)
        print(f"stream: first chunk {out['stream_first_chunk_ms']} ms; decoder's own figures: {stats_stream}",
              flush=True)
        return out
    finally:
        shutil.rmtree(root / "m", ignore_errors=True)


# -- tables ---------------------------------------------------------------------------------------------
def print_tables(report: Report) -> None:
    data = report.data
    print()
    print(f"environment: {data.get('environment')}; copy bandwidth: "
          f"{(data.get('bandwidth_tb_s') or 0):.2f} TB/s; elapsed {time.perf_counter() - STARTED:.0f} s")
    rows = data["rows"]
    if rows:
        labels = [lab for lab in VARIANTS if any(lab + "_step_ms" in r or lab + "_error" in r for r in rows)]
        print("\n| shape | batch | generate | static cache (compiled) | "
              + " | ".join(f"{lab}: per token | {lab}: decode step (runs) | {lab}: replay" for lab in labels)
              + " | limit | limit / step | target |")
        print("|" + "---|" * (6 + 3 * len(labels) + 1))
        for r in rows:
            def tok(key):
                v = r.get(key + "_ms")
                return f"{v:.2f} ms ({r['batch'] * 1000 / v:.0f} tok/s)" if v else ("failed" if r.get(key + "_error") else "—")
            cells = []
            for lab in labels:
                runs = r.get(lab + "_step_runs_ms")
                cells += [tok(lab), ", ".join(f"{x:.3f}" for x in runs) + " ms" if runs else "—",
                          f"{r[lab + '_replay_ms']:.3f} ms" if r.get(lab + "_replay_ms") else "—"]
            step = r.get("fast_step_ms")
            limit = r.get("limit_ms")
            target = TARGETS.get((r["shape"], r["kind"]))
            verdict = "—"
            if target and r.get("fast_step_runs_ms"):
                verdict = f"≤ {target} ms: " + ("met" if max(r["fast_step_runs_ms"]) <= target else "missed")
            print(f"| {r['shape']} | {r['batch']} | {tok('default')} | {tok('static')} | " + " | ".join(cells)
                  + f" | {f'{limit:.2f} ms' if limit else '—'} | "
                  + (f"{limit / step:.0%}" if limit and step else "—") + f" | {verdict} |")
        for r in rows:
            if r.get("fast_ms") and r.get("static_ms"):
                print(f"{r['shape']} batch {r['batch']}: fast vs static cache per token: "
                      f"{r['static_ms'] / r['fast_ms']:.2f}x; vs generate: "
                      + (f"{r['default_ms'] / r['fast_ms']:.1f}x" if r.get("default_ms") else "—"))
    if data["checks"]:
        print("\n| shape | backend | logits scale | fast vs forward, max abs | generate vs forward, max abs | "
              "argmax agreement fast / generate | within tolerance |\n|---|---|---|---|---|---|---|")
        for c in data["checks"]:
            if "error" in c:
                print(f"| {c['shape']} | failed: {c['error'][:80]} |||||")
                continue
            print(f"| {c['shape']} | {c['backend']} | {c['logits_scale']:.2f} | {c['fast_vs_forward_max']:.3f} | "
                  f"{c['generate_vs_forward_max']:.3f} | {c['fast_argmax_agreement']:.3f} / "
                  f"{c['generate_argmax_agreement']:.3f} | {c['within_tolerance']} |")
    if data["quant"]:
        print("\n| shape | weights | path | ms/token | decode step (runs) | limit | memory (allocated) | "
              "KL vs bf16 (greedy text) | top-1 vs bf16 | ppl greedy text (bf16) | ppl random text (bf16) | "
              "fused step vs own forward | target |")
        print("|" + "---|" * 13)
        for q in data["quant"]:
            if "error" in q:
                print(f"| {q['shape']} | {q['kind']} | failed: {q['error'][:100]} |||||||||||")
                continue
            path = "generate (bitsandbytes)" if q["kind"].startswith("bnb") else f"fast_decode [{q.get('backend')}]"
            runs = ", ".join(f"{x:.3f}" for x in q.get("step_runs_ms", [])) or "—"
            gq, rq = q.get("quality_greedy", {}), q.get("quality_random", {})
            target = TARGETS.get((q["shape"], q["kind"]))
            verdict = (f"≤ {target} ms: " + ("met" if max(q["step_runs_ms"]) <= target else "missed")) \
                if target and q.get("step_runs_ms") else "—"
            fmt = lambda d, k, f: (format(d[k], f) if k in d else "—")   # noqa: E731
            print(f"| {q['shape']} | {q['kind']} | {path} | {q.get('ms', 0):.2f} | {runs} | "
                  + (f"{q['limit_ms']:.2f} ms" if q.get("limit_ms") else "—")
                  + f" | {q.get('allocated_bytes', 0) / 2**30:.2f} GiB | {fmt(gq, 'kl', '.2e')} | {fmt(gq, 'top1', '.3f')} | "
                  f"{fmt(gq, 'ppl', '.3f')} ({fmt(gq, 'ppl_bf16', '.3f')}) | {fmt(rq, 'ppl', '.1f')} ({fmt(rq, 'ppl_bf16', '.1f')}) | "
                  + (f"{q['step_vs_own_forward_max']:.3f} max abs" if "step_vs_own_forward_max" in q else "—")
                  + f" | {verdict} |")
    for p in data["profiles"]:
        print(f"\nprofile {p['label']}: {p['kernel_time_ms']:.3f} ms of kernels a step ({p['source']})")
        for role, r in (p.get("by_role") or {}).items():
            print(f"  {role:10s} {r['us']:9.1f} us  {r['count']:4d} kernels" + (f"  {r['gb_s']:.0f} GB/s" if r.get("gb_s") else ""))
        if not p.get("by_role"):
            for name, ms in list(p["by_name_ms"].items())[:10]:
                print(f"  {ms * 1000:9.1f} us  {name}")
    if data.get("notebook_layer"):
        nb = data["notebook_layer"]
        print(f"\nnotebook layer ({nb['shape']}): mc.run {nb['mc_run_ms_per_token']:.3f} ms/token vs direct "
              f"{nb['direct_ms_per_token']:.3f} (tokens/s ratio {nb['ratio_tokens_per_s']:.3f}, same text "
              f"{nb['same_text']}); stream: first token {nb['stream_stats'].get('first_token_s', 0) * 1000:.1f} ms, "
              f"decode {nb['stream_stats'].get('decode_tokens_per_s') or 0:.0f} tok/s")
    if data["skipped"]:
        print("\nskipped (time budget):", "; ".join(data["skipped"]))
    if data["errors"]:
        print("\nerrors:", *data["errors"], sep="\n  ")


if __name__ == "__main__":
    sys.exit(main())
