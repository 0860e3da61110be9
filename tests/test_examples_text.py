"""The text-task tutorial notebooks run top to bottom on the stand-in models, with the right key outputs.

The stand-ins (tests/tiny_models.py) write nonsense text, so the checks look at what does not depend on
the words: labels of clear-cut sentences, reuse without reload, token counts, memory estimates and sizes.
"""

import re

import pytest

from tests.test_examples import execute, outputs_of, text_of

pytestmark = pytest.mark.slow   # real kernels and notebooks: CI runs these (pytest -m slow)

UNITS = {"B": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40}


def cells_with(nb, marker: str) -> list:
    """The outputs of every code cell whose source contains ``marker``, in order."""
    return [c.outputs for c in nb.cells if c.cell_type == "code" and marker in c.source]


def result_of(outputs) -> str:
    """The text of a cell's value alone (no progress bars, no stderr)."""
    return text_of([o for o in outputs if o.output_type == "execute_result"])


def cells_with_source(nb, marker: str) -> list:
    return [c.source for c in nb.cells if c.cell_type == "code" and marker in c.source]


def size(text: str) -> float:
    number, unit = text.split()
    return float(number) * UNITS[unit]


def status_rows(text: str) -> dict:
    """``%mc status`` text → {id: {"dtype": ..., "memory": bytes, "load": ...}}."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+)\s+model\s+.*?\s{2}(float\w+(?: · \w+)?)\s+[\d.]+ M\s+([\d.]+ [KMGT]?i?B)\s+(\w+)\s+(\S+ s)\s*$",
                     line)
        if m:
            rows[m.group(1)] = {"dtype": m.group(2), "memory": size(m.group(3)), "state": m.group(4),
                                "load": m.group(5)}
    return rows


def test_chat_streams_overrides_the_system_prompt_and_recomposes_without_reloading(models):
    nb = execute("chat_and_streaming.ipynb")
    assert "load `chat`: chat-completion" in result_of(cells_with(nb, "%%compose")[0])
    for marker in ("%%run -o reply", "%%run -o pirate", "%%run -o greedy"):
        streamed = text_of(outputs_of(nb, marker))
        assert re.search(r"\[64 tokens · [\d.]+ s · first token \d+ ms · decode [\d.]+ tokens/s\]", streamed), (marker, streamed)
    assert re.fullmatch(r"\d+ characters in [\d.]+ s\n", text_of(outputs_of(nb, "reply.seconds")))

    recompose = result_of(cells_with(nb, "%%compose")[1])
    assert cells_with_source(nb, "%%compose")[1].endswith("temperature: 0")
    assert recompose.startswith("reuse `chat`: chat-completion")
    before = status_rows(text_of(outputs_of(nb, "%mc status")))["chat"]
    after = status_rows(text_of(outputs_of(nb, "# after the re-compose")))["chat"]
    assert before["state"] == after["state"] == "ready"
    assert before["load"] == after["load"]                      # loaded once: the load time did not change
    assert text_of(outputs_of(nb, "load_count")) == "loads of `chat`: 1\n"
    # the chat widget: a widget view beside its static picture, two turns remembered, saved and resumed
    view = outputs_of(nb, 'w = mc_jupyter.chat("chat")')[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in view and "mc-jupyter-chat-static" in view["text/html"]
    assert text_of(outputs_of(nb, "first = w.send")) == \
        "5 messages; ['system', 'user', 'assistant', 'user', 'assistant']\n"
    assert "resumed the same conversation: True" in text_of(outputs_of(nb, "resumed = mc_jupyter.chat"))
    assert result_of(cells_with(nb, "%%compose")[2]).startswith("load `chat_fast`: chat-completion")
    assert re.search(r"\[64 tokens · [\d.]+ s · first token \d+ ms · decode [\d.]+ tokens/s\]", text_of(outputs_of(nb, "%%run -o fast")))
    assert text_of(outputs_of(nb, "same text as generate")) == "same text as generate: True\n"
    # 4-bit weights packed by the fast decoder: streamed with the footer's two figures, less memory
    assert result_of(cells_with(nb, "%%compose")[3]).startswith("load `chat_small`: chat-completion")
    assert re.search(r"\[64 tokens · [\d.]+ s · first token \d+ ms · decode [\d.]+ tokens/s\]",
                     text_of(outputs_of(nb, "%%run -o small")))
    sizes = text_of(outputs_of(nb, "int4 holds less"))
    assert re.search(r"chat_fast: float32, [\d.]+ MiB\nchat_small: float32 · int4, [\d.]+ MiB\n"
                     r"int4 holds less: True\n", sizes), sizes
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded chat, chat_fast, chat_small"


def test_generation_batches_classification_labels_and_the_two_job_workflow(models):
    nb = execute("generation_and_classification.ipynb")
    assert text_of(outputs_of(nb, "%%run -o story")).strip()
    assert result_of(cells_with(nb, "%%compose")[1]).startswith("reuse `writer`: text-generation")

    printed = text_of(outputs_of(nb, "zip(prompts, batch.output)")).splitlines()
    assert len(printed) == 3
    for line, prompt in zip(printed, ["The best thing about the weekend is", "My favourite programming language is",
                                      "Scientists have discovered that"]):
        assert line.startswith(repr(prompt)[:-1]) and len(line) > len(repr(prompt))   # the prompt, then new text

    moods = outputs_of(nb, "%%run -o moods")
    assert any("text/html" in o.get("data", {}) for o in moods)                     # the bars
    assert text_of(moods).splitlines() == [
        "I love this movie, it is wonderful: POSITIVE (1.000)", "what an awful and sad day: NEGATIVE (1.000)",
        "this is excellent and fun: POSITIVE (1.000)", "a horrible, ugly film: NEGATIVE (1.000)"]
    labels = [line.split()[0] for line in text_of(outputs_of(nb, "zip(reviews, moods.output)")).splitlines()]
    assert labels == ["POSITIVE", "NEGATIVE", "POSITIVE", "NEGATIVE"]

    workflow = result_of(cells_with(nb, "%%compose")[3])
    assert "reuse `writer`" in workflow and "reuse `sentiment`" in workflow
    assert "workflow `write-and-judge` ready" in workflow
    assert re.fullmatch(r"(POSITIVE|NEGATIVE) \(\d\.\d{3}\)", text_of(outputs_of(nb, "%%run -o review")).strip())
    written, judged = text_of(outputs_of(nb, 'review.jobs["write"]')).splitlines()
    assert written.startswith("written: '") and len(written) > len("written: ''")
    assert re.fullmatch(r"judged:  (POSITIVE|NEGATIVE) [01]\.\d+", judged)      # output["label"], ["score"]: a dict
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded writer, sentiment"


def test_lora_weights_change_without_reloading_and_weight_zero_turns_adapters_off(models):
    nb = execute("lora_adapters.ipynb")
    plan = text_of(outputs_of(nb, "%%compose --dry-run"))
    assert "would load `writer`: text-generation · huggingface · meta-llama/Llama-2-7b-hf" in plan
    assert "`writer` needs about" in plan and "+ 20% margin" in plan

    composes = [result_of(o) for o in cells_with(nb, "%%compose")[1:]]
    assert composes[0].startswith("load `writer`") and all(c.startswith("reuse `writer`") for c in composes[1:])
    assert len(composes) == 3
    sources = cells_with_source(nb, "%%compose")
    assert "weight: 0.7" in sources[1] and "weight: 0.8" in sources[1]
    assert "weight: 1.0" in sources[2] and sources[3].count("weight: 0.0") == 2

    assert text_of(outputs_of(nb, "import mc_jupyter")) == "loads of `writer`: 1\n"
    summary = text_of(outputs_of(nb, 'for name, result in')).splitlines()
    assert summary[0] == "loads of `writer`: 1"
    outputs = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in summary[1:]}
    assert list(outputs) == ["0.7 / 0.8", "1.0 / 0.0", "0.0 / 0.0"]
    assert outputs["0.7 / 0.8"] != outputs["0.0 / 0.0"]                          # the adapters change the model
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded writer"


def test_quantization_dry_run_estimates_and_the_memory_of_int8_and_nf4(models):
    nb = execute("quantization_and_memory.ipynb")
    plan = text_of(outputs_of(nb, "%%compose --dry-run"))
    weights = {m.group(1): (size(m.group(2)), m.group(3)) for m in re.finditer(
        r"^`llama-(\w+)` needs about [\d.]+ \w+ \(weights ([\d.]+ \w+) for [\d.]+ M parameters in ([\w, ]+), "
        r"\+ 20% margin\)", plan, re.M)}
    assert {k: v[1] for k, v in weights.items()} == {"float32": "float32", "float16": "float16",
                                                     "int8": "float16, int8", "nf4": "float16, nf4"}
    assert abs(weights["float16"][0] * 2 - weights["float32"][0]) <= 0.01 * weights["float32"][0]
    assert weights["float32"][0] > weights["float16"][0] > weights["int8"][0] > weights["nf4"][0]
    assert text_of(outputs_of(nb, "# nothing loaded by the dry run")).startswith("No components loaded")

    rows = status_rows(text_of(outputs_of(nb, "# after loading three ways")))
    assert {k: v["dtype"] for k, v in rows.items()} == {"full": "float32", "eight": "float32 · int8",
                                                        "four": "float32 · nf4"}
    assert all(r["state"] == "ready" for r in rows.values())
    assert rows["full"]["memory"] > rows["eight"]["memory"] > rows["four"]["memory"]
    assert text_of(outputs_of(nb, "%%run eight")).strip()
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded full, eight, four"
