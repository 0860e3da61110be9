"""mc_jupyter against the raw libraries on a GPU, same model, same inputs, one run (issue #9, rows 1-4).

    python tests/benchmarks/gpu_overhead.py [--out results.json] [--repeats N]
    python tests/benchmarks/gpu_overhead.py --quick --out $OUT/gpu_overhead.json   # one device call

``--quick`` (the mode the docs' figures come from since issue #19) prints the whole table inside one
10-minute device call: 3 repeats, one streamed run a side, 2048 texts for the encoders (256 one by one
for the naive pipeline); the JSON is rewritten after every row, so a cut run still leaves its rows.

1. generation: a 1.0 B Llama-shaped model (random, bf16), 128 new tokens greedy, batch 1 and 8:
   tokens/s through ``mc_jupyter.run`` against ``model.generate`` with identical settings;
2. batched encoders: 4096 texts through text-classification and text-embedding (BERT-base shape,
   random) at batch 64, against a raw batched loop and a naive per-text ``pipeline`` call;
3. streaming: time to the first chunk through the stream view (throttled rendering included; the
   notebook transport is replaced by a recorder) against a raw ``TextIteratorStreamer``, and the
   display updates per second over a 1000-token stream;
4. loading: a cold compose against ``from_pretrained`` with the same arguments, an unchanged
   re-compose, and the allocated memory after unload against the baseline.
Medians after warm-up, ``torch.cuda.synchronize()`` around every timing. Needs CUDA.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests import tiny_models  # noqa: E402


def timed(fn, repeats: int, warmup: int = 2):
    import torch
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def paired(ours, raw, repeats: int, warmup: int = 1):
    """Medians of ``ours`` and ``raw`` timed in alternating order, so clock and cache drift fall on both."""
    import torch
    for _ in range(warmup):
        ours()
        raw()
    a, b = [], []
    for i in range(repeats):
        for fn, out in ((ours, a), (raw, b)) if i % 2 == 0 else ((raw, b), (ours, a)):
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            out.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="fits one device call (see the docstring)")
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    args.stream_runs = 1 if args.quick else 2
    args.texts = 2048 if args.quick else 4096
    args.naive = 256 if args.quick else 512
    print("command: python tests/benchmarks/gpu_overhead.py " + " ".join(sys.argv[1:]), flush=True)
    root = Path(tempfile.mkdtemp(prefix="mcj-bench-"))
    tiny_models.use_offline_cache(root)
    try:
        return run(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, args) -> int:
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer,
                              BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM,
                              TextIteratorStreamer, pipeline)

    import mc_jupyter as mc
    from mc_jupyter.display.result import StreamView
    from mc_jupyter.registry import Registry

    rows, results = [], {}
    started = time.perf_counter()

    def save():
        results["rows"] = rows
        results["elapsed_s"] = time.perf_counter() - started
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2, default=str))

    tok = tiny_models.build_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                         num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=4096,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=None)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    llama = root / "llama-1b"
    model.save_pretrained(llama)
    tok.save_pretrained(llama)
    del model
    torch.cuda.empty_cache()

    # 4. loading -----------------------------------------------------------------------------------
    baseline = torch.cuda.memory_allocated()
    yaml = f"""
component:
  id: llm
  type: model
  task: text-generation
  model: {llama}
  device: cuda
  precision: bfloat16
  text: ${{input.prompt}}
  params: {{max_output_length: 128, temperature: 0, batch_size: 8}}
"""
    def load_times(load, free, repeats):
        """The load alone is timed; freeing (and its gc.collect) happens between the timings."""
        out = []
        for i in range(repeats + 1):
            torch.cuda.synchronize()
            start = time.perf_counter()
            held = load()
            torch.cuda.synchronize()
            if i:                       # the first is a warm-up (file cache, CUDA context, imports)
                out.append(time.perf_counter() - start)
            free(held)
        return statistics.median(out)

    def raw_load():
        return (AutoModelForCausalLM.from_pretrained(llama, dtype=torch.bfloat16).to("cuda"),
                AutoTokenizer.from_pretrained(llama))

    def raw_free(held):
        del held
        import gc
        gc.collect()
        torch.cuda.empty_cache()

    def mc_load():
        registry = Registry()
        mc.compose(yaml, registry=registry)
        return registry

    raw_load_s = load_times(raw_load, raw_free, args.repeats)
    mc_load_s = load_times(mc_load, lambda registry: registry.down(), args.repeats)
    # where a compose's extra time goes: the plan (bindings, memory estimate on the meta device)
    from mc_jupyter.api import read_config
    plan_s = timed(lambda: Registry().plan(read_config(yaml)), args.repeats, 1)
    results["cold_load_s"] = {"mc": mc_load_s, "raw": raw_load_s, "plan": plan_s}
    print(f"cold load: mc {mc_load_s:.3f}s raw {raw_load_s:.3f}s plan (estimate included) {plan_s * 1000:.1f} ms",
          flush=True)
    registry = Registry()
    mc.compose(yaml, registry=registry)
    recompose_s = timed(lambda: mc.compose(yaml, registry=registry), 20, 2)
    rows.append(("cold load vs from_pretrained (same args)", mc_load_s, raw_load_s, "≤ 1.05x"))
    print("row:", rows[-1], f"re-compose {recompose_s * 1000:.2f} ms", flush=True)
    results["recompose_ms"] = recompose_s * 1000
    save()

    # 1. generation ----------------------------------------------------------------------------------
    raw_model = registry.entries["llm"].driver.model
    raw_tok = registry.entries["llm"].driver.tokenizer
    for batch in (1, 8):
        prompts = [f"The sky is blue because {i}" for i in range(batch)]

        def raw_generate():
            enc = raw_tok(prompts, return_tensors="pt", padding=True).to("cuda")
            with torch.inference_mode():
                out = raw_model.generate(**enc, max_new_tokens=128, do_sample=False, pad_token_id=raw_tok.pad_token_id)
            raw_tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

        def mc_generate():
            mc.run(inputs={"prompt": prompts if batch > 1 else prompts[0]}, registry=registry)

        m, r = paired(mc_generate, raw_generate, args.repeats)
        rows.append((f"generation tokens/s, batch {batch}, 128 new tokens", 128 * batch / m, 128 * batch / r,
                     "≥ 0.97 (higher is better)"))
        print("row:", rows[-1], flush=True)
        save()

    # 3. streaming -----------------------------------------------------------------------------------
    class Recorder:
        def __init__(self):
            self.times = []

        def update(self, bundle, raw=True):
            self.times.append(time.perf_counter())

    class MeasuredView(StreamView):
        """The real stream view (throttling, rendering); the notebook transport replaced by a recorder."""

        def start(self, job_id, component_id):
            self.handle = Recorder()
            self.text, self.started, self.last_update, self.first_chunk_at = "", time.perf_counter(), 0.0, 0.0

    mc.compose(yaml.replace("  text:", "  streaming: true\n  text:").replace("max_output_length: 128",
                                                                             "max_output_length: 1000"),
               registry=registry)
    ttft_mc, updates_per_s = [], []
    for _ in range(args.stream_runs):
        view = MeasuredView()
        start = time.perf_counter()
        mc.run(inputs={"prompt": "Once upon a time"}, stream=view, registry=registry)
        total = time.perf_counter() - start
        ttft_mc.append(view.handle.times[0] - start)
        updates_per_s.append(len(view.handle.times) / total)
    ttft_raw = []
    for _ in range(args.stream_runs):
        streamer = TextIteratorStreamer(raw_tok, skip_prompt=True, skip_special_tokens=True)
        enc = raw_tok(["Once upon a time"], return_tensors="pt").to("cuda")
        start = time.perf_counter()
        thread = threading.Thread(target=raw_model.generate, kwargs=dict(**enc, max_new_tokens=1000, do_sample=False,
                                                                        streamer=streamer,
                                                                        pad_token_id=raw_tok.pad_token_id))
        thread.start()
        first = None
        for chunk in streamer:
            if chunk and first is None:
                first = time.perf_counter() - start
        thread.join()
        ttft_raw.append(first)
    results["ttft_ms"] = {"mc": statistics.median(ttft_mc) * 1000, "raw": statistics.median(ttft_raw) * 1000}
    results["updates_per_second"] = max(updates_per_s)
    print("streaming:", results["ttft_ms"], results["updates_per_second"], flush=True)
    save()
    registry.down()
    del raw_model
    torch.cuda.empty_cache()
    results["after_unload_mib"] = (torch.cuda.memory_allocated() - baseline) / 2**20

    # 2. batched encoders ------------------------------------------------------------------------------
    bert = root / "bert-base"
    enc_tok = tok   # BERT-base shape with the small BPE vocabulary: the shape decides the cost
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(num_labels=2, vocab_size=len(tok),
                                             pad_token_id=tok.pad_token_id)).save_pretrained(bert)
    enc_tok.save_pretrained(bert)
    texts = [f"sentence number {i} about local models and notebooks" for i in range(args.texts)]
    registry = Registry()
    mc.compose(f"""
components:
  - id: cls
    type: model
    task: text-classification
    model: {bert}
    device: cuda
    precision: float16
    text: ${{input.text}}
    params: {{batch_size: 64}}
  - id: emb
    type: model
    task: text-embedding
    model: {bert}
    device: cuda
    precision: float16
    text: ${{input.text}}
    params: {{batch_size: 64}}
""", registry=registry)
    cls_model = registry.entries["cls"].driver.model
    emb_model = registry.entries["emb"].driver.model

    def raw_classify():
        for i in range(0, len(texts), 64):
            b = enc_tok(texts[i:i + 64], return_tensors="pt", padding=True, truncation=True).to("cuda")
            with torch.inference_mode():
                torch.softmax(cls_model(**b).logits.float(), -1).cpu().tolist()

    def raw_embed():
        for i in range(0, len(texts), 64):
            b = enc_tok(texts[i:i + 64], return_tensors="pt", padding=True, truncation=True).to("cuda")
            with torch.inference_mode():
                h = emb_model(**b).last_hidden_state.float()
                m = b["attention_mask"].unsqueeze(-1).float()
                torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).cpu().tolist()

    naive = pipeline("text-classification", model=cls_model, tokenizer=enc_tok, device=0)
    m_cls, r_cls = paired(lambda: mc.run("cls", {"text": texts}, registry=registry), raw_classify, args.repeats + 1)
    # texts one by one, scaled to the whole list
    n_cls = timed(lambda: [naive(t) for t in texts[:args.naive]], 1, 1) * (len(texts) / args.naive)
    m_emb, r_emb = paired(lambda: mc.run("emb", {"text": texts}, registry=registry), raw_embed, args.repeats + 1)
    n = len(texts)
    rows.append((f"text-classification texts/s, {n} at batch 64", n / m_cls, n / r_cls, "≥ 0.97"))
    rows.append((f"text-embedding texts/s, {n} at batch 64", n / m_emb, n / r_emb, "≥ 0.97"))
    results["naive_pipeline_speedup"] = n_cls / m_cls
    registry.down()

    print(f"GPU: {torch.cuda.get_device_name(0)} · torch {torch.__version__}")
    print("\n| measurement | mc_jupyter | raw | ratio | target |\n|---|---:|---:|---:|---|")
    for name, ours, raw, target in rows:
        ratio = ours / raw
        unit = "s" if "load" in name else ""
        print(f"| {name} | {ours:.3f}{unit} | {raw:.3f}{unit} | {ratio:.3f} | {target} |")
    print(f"\nunchanged re-compose: {results['recompose_ms']:.2f} ms (target < 50 ms)")
    print(f"time to first chunk: {results['ttft_ms']['mc']:.1f} ms through the stream view, "
          f"{results['ttft_ms']['raw']:.1f} ms raw TextIteratorStreamer (target: at most 5 ms more)")
    print(f"display updates over a 1000-token stream: {results['updates_per_second']:.1f} per second (target ≤ 30)")
    print(f"allocated after unload: {results['after_unload_mib']:.1f} MiB above the baseline (target ≤ 16 MiB)")
    print(f"batched classification vs a naive per-text pipeline call: {results['naive_pipeline_speedup']:.1f}x faster")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
