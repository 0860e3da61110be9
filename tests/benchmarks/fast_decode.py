"""Issue #9 row 6: the fast decode path (``fast_decode: true``) against ``generate`` and transformers'
static cache, in one run, at batch 1 and 8, plus its correctness checks.

    python tests/benchmarks/fast_decode.py --shapes 1.1b,6.7b [--batches 1,8] [--new 128] [--out FILE]
    python tests/benchmarks/fast_decode.py --shapes tiny          # CPU smoke run (what CI runs)

For each Llama shape (random weights, bf16 on CUDA, float32 on CPU) and batch:

- ms per new token (total time for ``--new`` tokens over ``--new``; prefill included) of
  1. ``model.generate`` (dynamic cache, eager),
  2. ``model.generate(cache_implementation="static")`` (transformers compiles the forward),
  3. the fast path (``FastDecoder.generate_ids``: static cache, fused weights, the whole step in one
     CUDA graph, compiled with torch.compile), and the same step not compiled (eager in the graph);
- the limit: the weights' bytes over the copy bandwidth measured here (``dst.copy_(src)``);
- correctness: teacher-forced logits of the fast path against the eager model's full forward over the
  same tokens, next to the difference of transformers' own incremental decode against the same
  forward (the bf16 tolerance), the argmax agreement, and greedy-token agreement with ``generate``;
- sampling inside the graph (temperature, top-k, top-p, repetition penalty): its speed, and that it
  varies with the seed and repeats with it;
- the notebook layer on top: ``mc_jupyter.run`` of a saved model composed with ``fast_decode: true``
  against a direct ``FastDecoder`` call on that model.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
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
PROMPT_LEN = 32


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
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src), 10, 3)
    del src, dst
    return 2 * n / t          # bytes read + written per second


def build(shape: str, device: str, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, bos_token_id=1, eos_token_id=None,
                         pad_token_id=0)
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="1.1b,6.7b")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-static", action="store_true", help="leave out transformers' static cache")
    parser.add_argument("--skip-default", action="store_true", help="leave out plain generate")
    parser.add_argument("--variants", default="fast,fast_eager_graph,fast_library_gemv",
                        help="fast: compiled step (batch 1: multiply-and-sum GEMVs); fast_library_gemv: compiled "
                             "step with cuBLAS GEMVs (batch 1 only); fast_eager_graph: the step not compiled")
    parser.add_argument("--out")
    args = parser.parse_args()
    print("command: python tests/benchmarks/fast_decode.py " + " ".join(sys.argv[1:]), flush=True)
    from tests import tiny_models
    root = Path(tempfile.mkdtemp(prefix="mcj-fast-"))
    tiny_models.use_offline_cache(root)       # before transformers is imported
    try:
        return measure(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(args, root: Path) -> int:
    import torch
    from mc_jupyter.drivers.fast_decode import FastDecoder

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    bandwidth = copy_bandwidth() if cuda else None
    if bandwidth:
        print(f"copy bandwidth: {bandwidth / 1e12:.2f} TB/s", flush=True)
    results = {"bandwidth_tb_s": bandwidth and bandwidth / 1e12, "rows": [], "checks": []}
    table = []
    n_new = args.new
    for shape in args.shapes.split(","):
        started = time.perf_counter()
        model = build(shape, device, dtype)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        limit_ms = weight_bytes / bandwidth * 1000 if bandwidth else None
        print(f"{shape}: {weight_bytes / 2**30:.2f} GiB of weights, built in {time.perf_counter() - started:.1f} s"
              + (f", limit {limit_ms:.2f} ms/token" if limit_ms else ""), flush=True)
        g = torch.Generator(device="cpu").manual_seed(1)
        for batch in map(int, args.batches.split(",")):
            ids = torch.randint(2, SHAPES[shape]["vocab_size"], (batch, PROMPT_LEN), generator=g).to(device)
            mask = torch.ones_like(ids)
            row = {"shape": shape, "batch": batch, "limit_ms": limit_ms}

            def generate(**extra):
                with torch.inference_mode():
                    return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n_new,
                                          min_new_tokens=n_new, do_sample=False, pad_token_id=0, **extra)

            if not args.skip_default:
                row["default_ms"] = timed(generate, args.repeats, 1) / n_new * 1000
                print(f"  batch {batch}: generate {row['default_ms']:.2f} ms/token", flush=True)
            if not args.skip_static:
                try:
                    t0 = time.perf_counter()
                    generate(cache_implementation="static")
                    row["static_first_s"] = time.perf_counter() - t0
                    row["static_ms"] = timed(lambda: generate(cache_implementation="static"),
                                             args.repeats, 1) / n_new * 1000
                    print(f"  batch {batch}: static cache {row['static_ms']:.2f} ms/token "
                          f"(first call {row['static_first_s']:.1f} s)", flush=True)
                except Exception as e:      # report, keep going
                    row["static_error"] = f"{type(e).__name__}: {str(e)[:300]}"
                    print("  static cache failed:", row["static_error"], flush=True)
                torch._dynamo.reset()
            variants = {"fast": dict(use_compile=True), "fast_eager_graph": dict(use_compile=False),
                        "fast_library_gemv": dict(use_compile=True, reduce_gemv=False)}
            for label in args.variants.split(","):
                if label != "fast" and not cuda or label == "fast_library_gemv" and batch != 1:
                    continue
                compile_ = variants[label]["use_compile"]
                fast = FastDecoder(model, **variants[label])
                try:
                    t0 = time.perf_counter()
                    first = fast.generate_ids(ids, mask, n_new, pad_token_id=0)
                    sync()
                    row[label + "_first_s"] = time.perf_counter() - t0
                    row[label + "_ms"] = timed(lambda: fast.generate_ids(ids, mask, n_new, pad_token_id=0),
                                               args.repeats, 1) / n_new * 1000
                    # one decode step alone: (N + 1 tokens) - (1 token, i.e. the prefill), over N
                    one = timed(lambda: fast.generate_ids(ids, mask, 1, pad_token_id=0), args.repeats, 1)
                    more = timed(lambda: fast.generate_ids(ids, mask, n_new + 1, pad_token_id=0), args.repeats, 1)
                    row[label + "_step_ms"] = (more - one) / n_new * 1000
                    row[label + "_prefill_ms"] = one * 1000
                    row[label + "_notes"] = list(fast.notes)
                    print(f"  batch {batch}: {label} {row[label + '_ms']:.3f} ms/token, "
                          f"{row[label + '_step_ms']:.3f} ms a decode step, prefill {row[label + '_prefill_ms']:.1f} ms "
                          f"(first call, capture"
                          f"{' and compile' if compile_ else ''}: {row[label + '_first_s']:.1f} s) {fast.notes}",
                          flush=True)
                    if label == "fast":
                        reference = generate()[:, PROMPT_LEN:]
                        row["greedy_agreement"] = float((first == reference).float().mean())
                        same = (first == reference).all(0).long()
                        row["greedy_identical_prefix"] = int(same.cumprod(0).sum())
                except Exception as e:
                    row[label + "_error"] = f"{type(e).__name__}: {str(e)[:500]}"
                    print(f"  {label} failed:", row[label + "_error"], flush=True)
                del fast
                gc.collect()
                torch._dynamo.reset()
            results["rows"].append(row)
            table.append(row)

        # correctness: teacher-forced logits at every step --------------------------------------------
        check = {"shape": shape}
        try:
            ids = torch.randint(2, SHAPES[shape]["vocab_size"], (2, PROMPT_LEN), generator=g).to(device)
            mask = torch.ones_like(ids)
            mask[1, :5] = 0                            # a left-padded row too
            steps = 32
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps,
                                     do_sample=False, pad_token_id=0, output_logits=True,
                                     return_dict_in_generate=True)
                teacher = out.sequences[:, PROMPT_LEN:]
                incremental = torch.stack([s.float() for s in out.logits], 1)          # [2, steps, V]
                full_ids = torch.cat([ids, teacher], 1)
                full_mask = torch.cat([mask, torch.ones_like(teacher)], 1)
                pos = (full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 1)
                full = model(input_ids=full_ids, attention_mask=full_mask, position_ids=pos).logits.float()
                full = full[:, PROMPT_LEN - 1:PROMPT_LEN - 1 + steps]
            fast = FastDecoder(model)
            forced = torch.stack(list(fast.generate(ids, mask, steps, teacher_tokens=teacher)), 1)
            scale = full.abs().max().item()
            check.update(
                logits_scale=scale,
                fast_vs_forward_max=(forced - full).abs().max().item(),
                generate_vs_forward_max=(incremental - full).abs().max().item(),
                fast_vs_generate_max=(forced - incremental).abs().max().item(),
                fast_argmax_agreement=float((forced.argmax(-1) == full.argmax(-1)).float().mean()),
                generate_argmax_agreement=float((incremental.argmax(-1) == full.argmax(-1)).float().mean()))
            check["within_tolerance"] = check["fast_vs_forward_max"] <= 2 * check["generate_vs_forward_max"] + 1e-3
            print(f"{shape} teacher-forced logits over {steps} steps: {check}", flush=True)

            # sampling in the graph
            sample = dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1)
            one = ids[:1]
            runs = []
            for seed in (0, 0, 1):
                torch.manual_seed(seed)
                runs.append(fast.generate_ids(one, torch.ones_like(one), n_new, **sample))
            check["sampling_repeats_with_seed"] = bool(torch.equal(runs[0], runs[1]))
            check["sampling_varies_with_seed"] = not torch.equal(runs[0], runs[2])
            check["sampling_ms"] = timed(lambda: fast.generate_ids(one, torch.ones_like(one), n_new, **sample),
                                         args.repeats, 1) / n_new * 1000
            print(f"{shape} sampling in the step: {check['sampling_ms']:.3f} ms/token, repeats with its seed: "
                  f"{check['sampling_repeats_with_seed']}, varies with it: {check['sampling_varies_with_seed']}",
                  flush=True)
            del fast
        except Exception as e:
            check["error"] = f"{type(e).__name__}: {str(e)[:500]}"
            print("check failed:", check["error"], flush=True)
        results["checks"].append(check)
        del model
        gc.collect()
        torch._dynamo.reset()
        if cuda:
            torch.cuda.empty_cache()

    if shape_for_layer := args.shapes.split(",")[0]:
        results["notebook_layer"] = notebook_layer(root, shape_for_layer, device, dtype, n_new, args.repeats)

    print()
    print("| shape | batch | generate | static cache | fast_decode | fast_decode, one decode step | "
          "fast, cuBLAS GEMVs, one step | fast (eager step in graph) | limit | limit / fast step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        def cell(key):
            v = r.get(key + "_ms")
            return f"{v:.2f} ms ({r['batch'] * 1000 / v:.0f} tok/s)" if v else ("failed" if r.get(key + "_error") else "—")
        frac = f"{r['limit_ms'] / r['fast_step_ms']:.0%}" if r.get("limit_ms") and r.get("fast_step_ms") else "—"
        limit = f"{r['limit_ms']:.2f} ms" if r.get("limit_ms") else "—"
        step = f"{r['fast_step_ms']:.2f} ms" if r.get("fast_step_ms") else "—"
        lib = f"{r['fast_library_gemv_step_ms']:.2f} ms" if r.get("fast_library_gemv_step_ms") else "—"
        print(f"| {r['shape']} | {r['batch']} | {cell('default')} | {cell('static')} | {cell('fast')} | {step} | "
              f"{lib} | {cell('fast_eager_graph')} | {limit} | {frac} |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    bad = [c for c in results["checks"] if c.get("error") or not c.get("within_tolerance")]
    return 1 if bad else 0


def notebook_layer(root: Path, shape: str, device: str, dtype, n_new: int, repeats: int):
    """``mc.run`` on a composed ``fast_decode: true`` model against a direct FastDecoder call on it."""
    import torch

    import mc_jupyter as mc
    from mc_jupyter.registry import Registry
    from tests import tiny_models

    try:
        tok = tiny_models.build_tokenizer()
        model = build(shape, device, dtype)
        model.resize_token_embeddings(len(tok))     # the tokenizer's vocabulary, so outputs decode
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
        run_s = timed(lambda: mc.run(inputs={"prompt": prompt}, registry=registry), repeats, 2)
        direct_s = timed(lambda: driver.tokenizer.batch_decode(driver.fast.generate_ids(
            enc["input_ids"], enc["attention_mask"], n_new, pad_token_id=0, min_new_tokens=n_new),
            skip_special_tokens=True), repeats, 2)
        same = mc.run(inputs={"prompt": prompt}, registry=registry).output == driver.tokenizer.batch_decode(
            driver.fast.generate_ids(enc["input_ids"], enc["attention_mask"], n_new, pad_token_id=0,
                                     min_new_tokens=n_new), skip_special_tokens=True)[0]
        registry.down()
        out = {"mc_run_ms_per_token": run_s / n_new * 1000, "direct_ms_per_token": direct_s / n_new * 1000,
               "ratio_tokens_per_s": direct_s / run_s, "same_text": same}
        print(f"notebook layer ({shape}, batch 1): mc.run {out['mc_run_ms_per_token']:.3f} ms/token, direct "
              f"{out['direct_ms_per_token']:.3f} ms/token, tokens/s ratio {out['ratio_tokens_per_s']:.3f}, "
              f"same text: {same}", flush=True)
        return out
    finally:
        shutil.rmtree(root / "m", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
