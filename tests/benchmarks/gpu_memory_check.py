"""Quantization, adapters and placement of a ~1B Llama-shaped model on a GPU (issue #4's GPU check).

    python tests/benchmarks/gpu_memory_check.py [--out results.json]

Builds a Llama-shaped model with random weights (2048 hidden, 22 layers: 1.0 B parameters, the
TinyLlama shape) in bf16, and two random LoRA adapters, in a temporary offline Hugging Face cache.
Then, through mc_jupyter's Python API, for each of bf16, int8 and nf4: the ``--dry-run`` estimate,
the measured memory (allocator figure after the load, minus the baseline, and the model's
footprint), a 32-token greedy generation, and the memory after unload. Then two adapters at weights
0.7 and 0.8 against peft's own weighted combination, and ``device_mode: auto`` with a ``max_memory``
budget that splits the model between the GPU and the CPU. Prints a table; needs CUDA.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from tests import tiny_models  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--layers", type=int, default=22)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mcj-gpu-"))
    tiny_models.use_offline_cache(root)
    try:
        return run(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, args) -> int:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    import mc_jupyter as mc
    from mc_jupyter.registry import Registry

    assert torch.cuda.is_available(), "this check needs a CUDA GPU"
    tokenizer = tiny_models.build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=5632,
                         num_hidden_layers=args.layers, num_attention_heads=32, num_key_value_heads=4,
                         max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=None)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    folder = root / "llama-1b"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    parameters = sum(p.numel() for p in model.parameters())
    adapters = []
    for seed, name in ((1, "alpaca"), (2, "assistant")):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"],
                                                      init_lora_weights=False))
        peft_model.save_pretrained(root / name)
        model = peft_model.unload()
        adapters.append(root / name)
    del model, peft_model
    torch.cuda.empty_cache()
    print(f"model: Llama-shaped, {parameters / 1e9:.3f} B parameters, bf16, random weights; "
          f"GPU: {torch.cuda.get_device_name(0)}", flush=True)

    prompt = "The sky is blue because"
    rows = []
    baseline = torch.cuda.memory_allocated()
    for quantization in ("none", "int8", "nf4"):
        registry = Registry()
        text = f"""
component:
  id: llm
  type: model
  task: text-generation
  model: {folder}
  device: cuda
  precision: bfloat16
  quantization: {quantization}
  text: ${{input.prompt}}
  params: {{max_output_length: 32, temperature: 0}}
"""
        (estimate,) = mc.compose(text, registry=registry, dry_run=True).plan.estimates
        started = time.perf_counter()
        mc.compose(text, registry=registry)
        load_s = time.perf_counter() - started
        allocated = torch.cuda.memory_allocated() - baseline
        footprint = registry.entries["llm"].driver.model.get_memory_footprint()
        torch.cuda.synchronize()
        started = time.perf_counter()
        out = mc.run(inputs={"prompt": prompt}, registry=registry).output
        torch.cuda.synchronize()
        gen_s = time.perf_counter() - started
        registry.down()
        after = torch.cuda.memory_allocated() - baseline
        rows.append({"quantization": quantization, "estimate_weights": estimate.weight_bytes,
                     "estimate_total": estimate.total_bytes, "allocated": allocated, "footprint": footprint,
                     "after_unload": after, "load_s": load_s, "generate_s": gen_s, "text": out})
        print(f"{quantization}: allocated {allocated / 2**30:.3f} GiB, estimate {estimate.weight_bytes / 2**30:.3f} GiB, "
              f"after unload {after / 2**20:.1f} MiB, text {out[:40]!r}", flush=True)
    bf16 = rows[0]["allocated"]

    # two adapters with weights, against peft's own combination
    registry = Registry()
    text = f"""
component:
  id: styled
  type: model
  task: text-generation
  model: {folder}
  device: cuda
  precision: bfloat16
  text: ${{input.prompt}}
  params: {{max_output_length: 32, temperature: 0}}
  peft_adapters:
    - {{type: lora, name: alpaca, model: {{provider: local, path: {adapters[0]}}}, weight: 0.7}}
    - {{type: lora, name: assistant, model: {{provider: local, path: {adapters[1]}}}, weight: 0.8}}
"""
    mc.compose(text, registry=registry)
    ours = registry.entries["styled"].driver.model
    enc = tokenizer([prompt], return_tensors="pt").to("cuda")
    with torch.inference_mode():
        our_logits = ours(**enc).logits.float()
    styled_text = mc.run(inputs={"prompt": prompt}, registry=registry).output
    registry.down()
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).cuda(),
                                          str(adapters[0]), adapter_name="a")
    reference.load_adapter(str(adapters[1]), adapter_name="b")
    reference.add_weighted_adapter(["a", "b"], [0.7, 0.8], adapter_name="ab", combination_type="cat")
    reference.set_adapter("ab")
    with torch.inference_mode():
        ref_logits = reference.eval()(**enc).logits.float()
        reference.base_model.disable_adapter_layers()
        base_logits = reference(**enc).logits.float()
    adapter_diff = (our_logits - ref_logits).abs().max().item()
    base_diff = (our_logits - base_logits).abs().max().item()
    del reference
    torch.cuda.empty_cache()
    print(f"adapters 0.7/0.8: max |ours - peft| = {adapter_diff:.4f}, max |ours - base| = {base_diff:.4f}", flush=True)

    # device_mode auto with a budget that does not hold the model on the GPU
    registry = Registry()
    text = f"""
component:
  id: split
  type: model
  task: text-generation
  model: {folder}
  device: cuda
  device_mode: auto
  precision: bfloat16
  max_memory: {{0: 1GiB, cpu: 48GiB}}
  text: ${{input.prompt}}
  params: {{max_output_length: 32, temperature: 0}}
"""
    mc.compose(text, registry=registry)
    row = registry.snapshot()[0]
    split_text = mc.run(inputs={"prompt": prompt}, registry=registry).output
    placement = registry.entries["split"].driver.placement
    status = repr(mc.status(registry))
    registry.down()
    print(f"device_mode auto: device {row['device']}, placement {placement}, "
          f"same greedy text as one GPU: {split_text == rows[0]['text']}\n{status}", flush=True)

    print()
    print("| precision | estimate (weights) | estimate + 20% | measured (allocator) | footprint | vs bf16 | "
          "after unload | load | 32 tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {'bf16' if r['quantization'] == 'none' else 'bf16 + ' + r['quantization']} | "
              f"{r['estimate_weights'] / 2**30:.3f} GiB | {r['estimate_total'] / 2**30:.3f} GiB | "
              f"{r['allocated'] / 2**30:.3f} GiB | {r['footprint'] / 2**30:.3f} GiB | {r['allocated'] / bf16:.2f}x | "
              f"{r['after_unload'] / 2**20:.1f} MiB | {r['load_s']:.1f} s | {r['generate_s']:.2f} s |")
    result = {"parameters": parameters, "gpu": torch.cuda.get_device_name(0), "rows": rows,
              "adapters": {"max_abs_diff_vs_peft": adapter_diff, "max_abs_diff_vs_base": base_diff,
                           "text": styled_text},
              "device_map": {"device": row["device"], "placement": placement, "text": split_text,
                             "equals_single_gpu": split_text == rows[0]["text"]}}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    nf4_ratio = rows[2]["allocated"] / bf16
    print(f"\nnf4 / bf16 = {nf4_ratio:.3f} (target at most 0.35)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
