"""The chat widget's figures on the CPU tiny model (issue #21): token -> widget update, updates a second,
Stop -> the turn ended, and a turn's overhead against the raw transformers generate on the same work.

    python tests/benchmarks/chat_latency.py [--turns 5]

Targets: token -> update <= 50 ms, at most 30 updates a second, Stop honoured within 200 ms.
Runs without a browser: the widget's traits are set as in a kernel (the comm send is what a frontend gets).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import tiny_models  # noqa: E402

tmp = Path(tempfile.mkdtemp(prefix="mc_jupyter-chat-bench-"))
tiny_models.use_offline_cache(tmp)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    print("command: python tests/benchmarks/chat_latency.py " + " ".join(sys.argv[1:]))
    folder = tiny_models.build_causal_lm(tmp / "tiny-llama")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import mc_jupyter as mc
    from mc_jupyter.registry import Registry

    registry = Registry()
    mc.compose(f"""
component:
  id: tiny
  type: model
  task: chat-completion
  model: {folder}
  messages: [{{role: user, content: "${{input.prompt}}"}}]
  params: {{max_output_length: 200, min_output_length: 200, temperature: 0}}
""", registry=registry)
    w = mc.chat("tiny", registry=registry)
    latencies, rates, chat_seconds = [], [], []
    for i in range(args.turns):
        w.clear()
        started = time.perf_counter()
        w.send("Hello there", wait=False)
        w.wait()
        seconds = time.perf_counter() - started
        sink = w._last_sink
        latencies += sink.latencies
        rates.append(sink.updates / max(seconds, 1e-9))
        chat_seconds.append(seconds)
    # the raw library call on the same work: the same conversation through the chat template, greedy, 200 tokens
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hello there"}], add_generation_prompt=True,
                                     tokenize=False)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    raw = []
    for _ in range(args.turns):
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(**enc, max_new_tokens=200, do_sample=False, pad_token_id=tok.pad_token_id,
                           min_new_tokens=200)
        raw.append(time.perf_counter() - started)
    # Stop: a long reply (the model's positions), stopped after 0.3 s
    stops = []
    positions = registry.entries["tiny"].driver.model.config.max_position_embeddings
    w.conversations[0].max_output_length = positions - 40
    for _ in range(args.turns):
        w.clear()
        w.send("Tell me a long story", wait=False)
        time.sleep(0.3)
        asked = time.perf_counter()
        w.stop()
        w.wait()
        stops.append(time.perf_counter() - asked)
    ms = lambda s: f"{s * 1000:.1f} ms"   # noqa: E731
    print("| measurement | value | target |")
    print("|---|---|---|")
    print(f"| token -> widget update, median | {ms(statistics.median(latencies))} | <= 50 ms |")
    print(f"| token -> widget update, max | {ms(max(latencies))} | <= 50 ms |")
    print(f"| widget updates a second, most of {args.turns} turns | {max(rates):.1f} | <= 30 |")
    print(f"| Stop -> turn ended, max of {args.turns} | {ms(max(stops))} | <= 200 ms |")
    print(f"| a chat turn (200 tokens, streamed) vs raw generate, median | {statistics.median(chat_seconds):.3f} s vs "
          f"{statistics.median(raw):.3f} s = {statistics.median(chat_seconds) / statistics.median(raw):.2f}x | |")
    registry.down()


if __name__ == "__main__":
    main()
