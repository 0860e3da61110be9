"""Where the time of a batched encoder run goes, ``mc_jupyter.run`` against the raw loop (issue #9 row 2).

    python tests/benchmarks/profile_encoders.py [--device cuda]

BERT-base shape (random, float16 on CUDA), 4096 short texts at batch 64, the same model object for
both sides. Prints the median times (alternating order), the tokenized shapes each side feeds the
model, and the top functions by own time of one profiled run of each.
"""

from __future__ import annotations

import argparse
import cProfile
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
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default=None)
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide BERT and 256 texts (a smoke run)")
    args = parser.parse_args()
    from tests import tiny_models
    root = Path(tempfile.mkdtemp(prefix="mcj-prof-"))
    tiny_models.use_offline_cache(root)
    try:
        import torch
        from transformers import BertConfig, BertModel

        import mc_jupyter as mc
        from mc_jupyter.registry import Registry
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        tok = tiny_models.build_tokenizer()
        torch.manual_seed(0)
        size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if args.tiny else {}
        BertModel(BertConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, **size)).save_pretrained(root / "bert")
        tok.save_pretrained(root / "bert")
        texts = [f"sentence number {i} about local models and notebooks" for i in range(256 if args.tiny else args.texts)]
        registry = Registry()
        mc.compose(f"""
component:
  id: emb
  type: model
  task: text-embedding
  model: {root / 'bert'}
  device: {device}
  precision: {'float16' if device == 'cuda' else 'float32'}
  text: ${{input.text}}
  params: {{batch_size: 64}}
""", registry=registry)
        driver = registry.entries["emb"].driver
        model = driver.model

        def raw():
            out = []
            for i in range(0, len(texts), 64):
                b = tok(texts[i:i + 64], return_tensors="pt", padding=True, truncation=True).to(device)
                with torch.inference_mode():
                    h = model(**b).last_hidden_state.float()
                    m = b["attention_mask"].unsqueeze(-1).float()
                    out += torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).cpu().tolist()
            return out

        def ours():
            return mc.run("emb", {"text": texts}, registry=registry).output

        def direct():
            return driver.run({"text": texts})

        a = tok(texts[:64], return_tensors="pt", padding=True, truncation=True)
        b = driver.tokenizer(texts[:64], return_tensors="pt", padding=True, truncation=True)
        print("raw batch:", {k: tuple(v.shape) for k, v in a.items()}, "driver batch:",
              {k: tuple(v.shape) for k, v in b.items()}, type(driver.tokenizer).__name__, flush=True)
        for fn in (raw, ours, direct):
            fn()
        times = {"raw": [], "mc.run": [], "driver.run": []}
        for i in range(6):
            order = [("raw", raw), ("mc.run", ours), ("driver.run", direct)]
            for name, fn in (order if i % 2 == 0 else order[::-1]):
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            print(f"{name}: median {statistics.median(values) * 1000:.1f} ms  "
                  f"{[round(v * 1000, 1) for v in values]}", flush=True)
        import numpy as np
        print("same vectors:", np.allclose(np.array(raw()), np.array([v["embedding"] for v in ours()]), atol=1e-3))
        for name, fn in (("raw", raw), ("mc.run", ours)):
            profile = cProfile.Profile()
            profile.enable()
            fn()
            sync()
            profile.disable()
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(14)
            print(f"--- {name}, by own time\n" + "\n".join(text.getvalue().splitlines()[6:24]), flush=True)
        registry.down()
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
