"""The translation and summarization lesson runs top to bottom on tiny stand-ins placed under the real ids, and
its outputs equal plain transformers on the same stand-ins (the RAG lesson's rerank section: check_the_rerank_section).

The stand-ins are laid into the test Hugging Face cache before the kernel starts (it inherits this
process's ``HF_HOME`` and ``HF_HUB_OFFLINE``); the expected texts and scores are computed here, in the
test process, with plain transformers on the same folders.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import List

import pytest
import torch

from tests import tiny_seq2seq
from tests.test_examples import execute, outputs_of, text_of

pytestmark = pytest.mark.slow   # real kernels and notebooks: CI runs these (pytest -m slow)

SENTENCES = ["The weather is lovely today, so we are going to the beach.", "Where is the nearest train station?",
             "I would like a coffee and a croissant, please."]
ARTICLE = ("The city council approved a plan on Tuesday to turn the old railway line into a public park. "
           "The line closed in 1998 and has been empty since. Work will start next spring and take about "
           "two years. The park will have a cycle path, a playground and space for a weekly market. "
           "The mayor said the project would cost 12 million euros, most of it paid by a national fund "
           "for green spaces. Residents who had campaigned for the park for a decade welcomed the vote.")
MUSEUM = "The museum opens at nine in the morning and closes at six in the evening, except on Mondays."
BEAMS = dict(num_beams=4, early_stopping=True, do_sample=False)


@pytest.fixture(scope="module")
def stand_ins(models, hub_cache, tmp_path_factory):
    """Tiny T5, BART, Marian and the cross-encoder under the lessons' real ids (``models``: the tiny chat
    model under SmolLM2's id, for the RAG lesson)."""
    return tiny_seq2seq.build_all(tmp_path_factory.mktemp("lesson-stand-ins"), hub_cache,
                                  ("t5", "bart", "marian", "cross-encoder"))


@functools.lru_cache(maxsize=None)
def _seq2seq(folder: Path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    return AutoTokenizer.from_pretrained(folder), AutoModelForSeq2SeqLM.from_pretrained(folder).eval()


def generated(folder: Path, texts: List[str], seed=None, **kwargs) -> List[str]:
    tokenizer, model = _seq2seq(folder)
    if seed is not None:
        torch.manual_seed(seed)
    out = model.generate(**tokenizer(texts, return_tensors="pt", padding=True), **kwargs)
    return tokenizer.batch_decode(out, skip_special_tokens=True)


def relevance(folder: Path, query: str, passages: List[str]) -> List[float]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = tokenizer([query] * len(passages), passages, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        return torch.sigmoid(model(**enc).logits.view(-1)).tolist()


def last_outputs_of(nb, marker: str) -> list:
    """The outputs of the last code cell holding ``marker`` (``outputs_of`` gives the first)."""
    return [c for c in nb.cells if c.cell_type == "code" and marker in c.source][-1].outputs


def test_translation_and_summarization_lesson(stand_ins):
    marian, bart, t5 = stand_ins["marian"], stand_ins["bart"], stand_ins["t5"]
    nb = execute("translation_and_summarization.ipynb")
    translation = generated(marian, SENTENCES[:1], max_new_tokens=64, **BEAMS)[0]
    assert translation.strip() and translation in text_of(outputs_of(nb, "%%run translator -o fr"))
    assert text_of(outputs_of(nb, "print(repr(fr.output))")).strip() == repr(translation)

    listed = text_of(outputs_of(nb, "for english, french in zip")).splitlines()
    translations = generated(marian, SENTENCES, max_new_tokens=64, **BEAMS)    # one batch, as the lesson runs
    assert listed == [line for english, french in zip(SENTENCES, translations) for line in (english, f"  -> {french}")]
    assert translations[0] == translation

    summary = generated(bart, [ARTICLE], **BEAMS)[0]           # BART-CNN's own lengths: no max_output_length
    assert summary.strip() and summary in text_of(outputs_of(nb, "%%run summarizer -o summary"))
    short = generated(t5, ["summarize: " + ARTICLE], max_new_tokens=60, **BEAMS)[0]
    assert short.strip() and short in text_of(outputs_of(nb, "%%run t5 -o short"))

    assert "reuse `translator`" in text_of(outputs_of(nb, "num_beams: 5"))      # new action settings: no reload
    shown = text_of(outputs_of(nb, 'print("beam search, the 3 best beams:")')).splitlines()
    beams = generated(marian, SENTENCES[1:2], max_new_tokens=64, num_beams=5, num_return_sequences=3,
                      early_stopping=True, do_sample=False)
    samples = generated(marian, SENTENCES[1:2], seed=42, max_new_tokens=64, do_sample=True, num_beams=1,
                        temperature=0.9, top_p=0.95, num_return_sequences=3)
    assert shown == (["beam search, the 3 best beams:"] + [f"   {text}" for text in beams]
                     + ["sampling, 3 draws (seed 42):"] + [f"   {text}" for text in samples])
    assert samples != beams

    live = generated(marian, [MUSEUM], max_new_tokens=64, num_beams=1, do_sample=False)[0]   # a stream is greedy
    assert live.strip() and live in text_of(outputs_of(nb, "%%run translator -o live"))
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded translator, summarizer, t5"


def check_the_rerank_section(nb, cross_encoder: Path) -> None:
    """The RAG lesson's last section (run by tests/test_examples.py's RAG test, which executes the lesson once):
    the reranker's scores equal the plain cross-encoder's on the retrieved passages."""
    retrieved = text_of(outputs_of(nb, "retrieved = [hit")).splitlines()
    assert [line.split(": ", 1)[0] for line in retrieved] == [f"vector rank {k}" for k in range(1, 6)]
    assert retrieved[0] == "vector rank 1: The Eiffel Tower is a wrought-iron tower in Paris."
    passages = [line.split(": ", 1)[1] for line in retrieved]

    scores = relevance(cross_encoder, "How tall is the Eiffel Tower?", passages)
    best = sorted(range(5), key=lambda i: -scores[i])[:3]
    printed = text_of(outputs_of(nb, "for item in reranked.output")).splitlines()
    assert printed == [f"{scores[i]:.4f}  (vector rank {i + 1})  {passages[i]}" for i in best]

    table = outputs_of(nb, "%%run reranker -o reranked")
    plain = text_of(table).splitlines()
    assert plain[0] == "query: How tall is the Eiffel Tower?"
    assert plain[1:] == [f"{rank}. {scores[i]:.4f}  {passages[i]}  (#{i})" for rank, i in enumerate(best, 1)]
    html = "".join(o.get("data", {}).get("text/html", "") for o in table)
    assert "<th>rank</th><th>score</th><th>document</th><th>index</th>" in html
    assert text_of(last_outputs_of(nb, "%mc down")).strip() == "unloaded reranker"
