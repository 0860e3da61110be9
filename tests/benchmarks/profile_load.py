"""Where a cold ``%%compose`` spends its time beyond ``from_pretrained`` (issue #9 row 4's explanation).

    python tests/benchmarks/profile_load.py

A 1.0 B Llama-shaped model (random, bf16) saved to disk; the raw load (``from_pretrained(...).to(device)``
plus the tokenizer) and ``mc_jupyter.compose`` timed alternately, the unload outside the timing; then one
compose profiled, listing mc_jupyter's own steps by cumulative time.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))


def main() -> int:
    from tests import tiny_models
    root = Path(tempfile.mkdtemp(prefix="mcj-load-"))
    tiny_models.use_offline_cache(root)
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

        import mc_jupyter as mc
        from mc_jupyter.registry import Registry
        cuda = torch.cuda.is_available()
        device = "cuda" if cuda else "cpu"
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        tok = tiny_models.build_tokenizer()
        hidden, layers = (2048, 22) if cuda else (512, 8)
        config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 11 // 4,
                             num_hidden_layers=layers, num_attention_heads=32, num_key_value_heads=4,
                             pad_token_id=tok.pad_token_id)
        with torch.device(device):
            LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(root / "llama")
        tok.save_pretrained(root / "llama")
        yaml = f"""
component:
  id: llm
  type: model
  task: text-generation
  model: {root / 'llama'}
  device: {device}
  precision: bfloat16
  text: ${{input.prompt}}
"""

        def raw():
            return (AutoModelForCausalLM.from_pretrained(root / "llama", dtype=torch.bfloat16).to(device),
                    AutoTokenizer.from_pretrained(root / "llama"))

        def ours():
            registry = Registry()
            mc.compose(yaml, registry=registry)
            return registry

        def free(held):
            if isinstance(held, Registry):
                held.down()
            del held
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()

        times = {"raw": [], "mc": []}
        for i in range(7):
            for name, fn in ((("raw", raw), ("mc", ours)) if i % 2 else (("mc", ours), ("raw", raw))):
                sync()
                start = time.perf_counter()
                held = fn()
                sync()
                if i:
                    times[name].append(time.perf_counter() - start)
                free(held)
        raw_s, mc_s = statistics.median(times["raw"]), statistics.median(times["mc"])
        print(f"raw {raw_s * 1000:.1f} ms {[round(t * 1000) for t in times['raw']]}")
        print(f"mc  {mc_s * 1000:.1f} ms {[round(t * 1000) for t in times['mc']]}  ratio {mc_s / raw_s:.3f}")
        profile = cProfile.Profile()
        profile.enable()
        held = ours()
        sync()
        profile.disable()
        free(held)
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text).sort_stats("cumulative")
        stats.print_stats(r"mc_jupyter|from_pretrained|tqdm|mem_get_info|safetensors", 30)
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:6000])
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
