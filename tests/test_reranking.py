"""text-reranking (cross-encoders) against the raw model call: logits -> sigmoid, ranked as model-compose ranks."""

import functools
import re
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest
import torch

import mc_jupyter as mc
from mc_jupyter.display.reranking import render_ranking
from mc_jupyter.errors import InputError
from tests import tiny_seq2seq
from tests.test_spec_blocks import registry_state

MS_MARCO, BGE = tiny_seq2seq.REPOS["cross-encoder"]
QUERY = "How tall is the Eiffel Tower?"
PASSAGES = ["The Eiffel Tower is 330 metres tall.", "Bananas are a yellow fruit.",
            "Python is a programming language.", "It was finished in 1889 for the World's Fair.",
            "The Pacific is the largest ocean on Earth."]


@pytest.fixture(scope="module")
def encoders(hub_cache, tmp_path_factory):
    """The tiny cross-encoders' folders; the hub cache holds one under both real ids."""
    return tiny_seq2seq.build_all(tmp_path_factory.mktemp("rerankers"), hub_cache, ("cross-encoder",))


@functools.lru_cache(maxsize=None)
def _loaded(folder: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    return AutoTokenizer.from_pretrained(folder), AutoModelForSequenceClassification.from_pretrained(folder).eval()


def raw_scores(folder: Path, query: str, documents: List[str], normalize: bool = True, max_length: int = 512,
               last: bool = False) -> List[float]:
    """The model card's call: the pairs tokenized together, the logits, a sigmoid."""
    tokenizer, model = _loaded(folder)
    enc = tokenizer([query] * len(documents), documents, return_tensors="pt", padding=True, truncation=True,
                    max_length=max_length)
    with torch.no_grad():
        logits = model(**enc).logits.float()
    logits = logits[:, -1] if last else logits.view(-1)
    return (torch.sigmoid(logits) if normalize else logits).tolist()


def expected(scores: List[float], documents=None) -> List[dict]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [dict({"index": i, "score": scores[i]}, **({"document": documents[i]} if documents else {})) for i in order]


def assert_ranking(out: List[dict], want: List[dict]) -> None:
    assert [{k: v for k, v in item.items() if k != "score"} for item in out] == \
        [{k: v for k, v in item.items() if k != "score"} for item in want]
    assert [item["score"] for item in out] == pytest.approx([item["score"] for item in want], abs=1e-5)


def component(model: str = MS_MARCO, extra: str = "", params: str = "") -> str:
    return f"""
component:
  id: reranker
  type: model
  task: text-reranking
  model: {model}
  device: cpu
  query: ${{input.query}}
  documents: ${{input.documents}}{extra}
  params: {{{params}}}
"""


def rerank(registry, documents=PASSAGES, query=QUERY):
    return mc.run(inputs={"query": query, "documents": documents}, registry=registry).output


# ------------------------------------------------------------------------------------------------
# Scores equal the raw model; the ranking is model-compose's


@pytest.mark.parametrize("model", [MS_MARCO, BGE])
def test_documents_are_ranked_best_first_by_the_sigmoid_of_the_logit(model, registry, encoders):
    mc.compose(component(model), registry=registry)
    out = rerank(registry)
    assert_ranking(out, expected(raw_scores(encoders["cross-encoder"], QUERY, PASSAGES), PASSAGES))
    assert all(set(item) == {"index", "score", "document"} and 0 < item["score"] < 1 for item in out)
    assert len({round(item["score"], 6) for item in out}) == len(PASSAGES), "the tiny model should tell them apart"


def test_normalize_false_gives_the_raw_logits(registry, encoders):
    mc.compose(component(params="normalize: false"), registry=registry)
    logits = raw_scores(encoders["cross-encoder"], QUERY, PASSAGES, normalize=False)
    assert_ranking(rerank(registry), expected(logits, PASSAGES))


def test_a_model_with_two_outputs_scores_by_the_last(registry, encoders):
    mc.compose(component(str(encoders["two-label"])), registry=registry)
    assert_ranking(rerank(registry), expected(raw_scores(encoders["two-label"], QUERY, PASSAGES, last=True), PASSAGES))


def test_score_threshold_then_top_k_and_no_documents(registry, encoders):
    scores = raw_scores(encoders["cross-encoder"], QUERY, PASSAGES)
    threshold = sorted(scores)[1]                 # all but the lowest pass
    mc.compose(component(extra=f"\n  score_threshold: {threshold}\n  top_k: 3\n  return_documents: false"),
               registry=registry)
    assert_ranking(rerank(registry), expected(scores)[:3])
    mc.compose(component(extra=f"\n  score_threshold: {max(scores) + 0.01}"), registry=registry)
    assert rerank(registry) == []


def test_documents_may_be_mappings_whose_document_field_holds_the_text(registry, encoders):
    records = [{"text": text, "topic": f"t{i}"} for i, text in enumerate(PASSAGES)]
    mc.compose(component(extra="\n  document_field: text"), registry=registry)
    out = rerank(registry, records)
    assert_ranking(out, expected(raw_scores(encoders["cross-encoder"], QUERY, PASSAGES), records))


def test_a_list_of_queries_ranks_each_its_own_documents(registry, encoders):
    mc.compose(component(), registry=registry)
    queries, lists = [QUERY, "Which fruit is yellow?"], [PASSAGES[:3], PASSAGES[1:]]
    out = rerank(registry, lists, queries)
    assert len(out) == 2
    for ranking, query, documents in zip(out, queries, lists):
        assert_ranking(ranking, expected(raw_scores(encoders["cross-encoder"], query, documents), documents))
        assert_ranking(ranking, rerank(registry, documents, query))


def test_batches_of_pairs_give_the_scores_of_one_batch(registry, encoders):
    mc.compose(component(extra="\n  batch_size: 2"), registry=registry)
    small = rerank(registry)
    mc.compose(component(), registry=registry)
    assert_ranking(small, rerank(registry))


def test_one_document_alone_is_a_list_of_one_and_no_documents_an_empty_ranking(registry, encoders):
    mc.compose(component(), registry=registry)
    [only] = rerank(registry, PASSAGES[2])
    assert only["index"] == 0 and only["document"] == PASSAGES[2]
    assert only["score"] == pytest.approx(raw_scores(encoders["cross-encoder"], QUERY, PASSAGES[2:3])[0], abs=1e-5)
    assert rerank(registry, []) == []


def test_max_input_length_cuts_each_pair(registry, encoders):
    long_passages = [" ".join([p] * 6) for p in PASSAGES]
    mc.compose(component(extra="\n  max_input_length: 16"), registry=registry)
    cut = raw_scores(encoders["cross-encoder"], QUERY, long_passages, max_length=16)
    assert_ranking(rerank(registry, long_passages), expected(cut, long_passages))
    mc.compose(component(), registry=registry)
    assert [i["score"] for i in rerank(registry, long_passages)] != pytest.approx(sorted(cut, reverse=True), abs=1e-5)


MODEL_COMPOSE_FILE = """
components:
  - id: reranker
    type: model
    task: text-reranking
    driver: huggingface
    model: BAAI/bge-reranker-base
    action:
      query: ${input.query}
      documents: ${input.passages}
      top_k: 2
      batch_size: 4
      params:
        normalize: false
workflow:
  jobs:
    - id: rerank
      component: reranker
      input: ${input}
"""


def test_a_model_compose_file_composes_and_runs_unchanged(registry, encoders):
    mc.compose(MODEL_COMPOSE_FILE, registry=registry)
    out = mc.run(inputs={"query": QUERY, "passages": PASSAGES}, registry=registry).output
    want = expected(raw_scores(encoders["cross-encoder"], QUERY, PASSAGES, normalize=False), PASSAGES)[:2]
    assert_ranking(out, want)


def test_a_custom_class_that_fills_generate_scores_pairs_in_batches_and_gets_the_ranking(registry, tmp_path,
                                                                                          monkeypatch):
    (tmp_path / "overlap.py").write_text(textwrap.dedent('''
        from mc_jupyter.drivers.custom import CustomModel

        class Overlap(CustomModel):
            batches = []

            def load(self):
                pass

            def generate(self, pairs, params):
                Overlap.batches.append(list(pairs))
                return [len(set(q.lower().split()) & set(d.lower().split())) for q, d in pairs]
    '''))
    monkeypatch.chdir(tmp_path)
    mc.compose("""
component:
  id: overlap
  type: model
  task: text-reranking
  driver: custom
  class: ./overlap.py:Overlap
  query: ${input.query}
  documents: ${input.documents}
  batch_size: 2
  top_k: 2
""", registry=registry)
    documents = ["a tower", "the eiffel tower is tall", "bananas"]
    out = rerank(registry, documents, "the eiffel tower")
    assert out == [{"index": 1, "score": 3.0, "document": documents[1]},
                   {"index": 0, "score": 1.0, "document": documents[0]}]
    module = sys.modules[type(registry.entries["overlap"].driver.impl).__module__]
    query = "the eiffel tower"
    assert module.Overlap.batches == [[(query, d) for d in documents[:2]], [(query, "bananas")]]


# ------------------------------------------------------------------------------------------------
# What a cell shows


def test_a_run_shows_a_ranked_table_with_score_bars_and_the_query(registry, encoders):
    documents = PASSAGES[:2] + ["<b>bold</b> & more"]
    mc.compose(component(), registry=registry)
    result = mc.run(inputs={"query": QUERY, "documents": documents}, registry=registry)
    bundle = result._repr_mimebundle_()
    lines = bundle["text/plain"].splitlines()
    assert lines[0] == f"query: {QUERY}"
    assert lines[1:] == [f"{rank}. {item['score']:.4f}  {documents[item['index']]}  (#{item['index']})"
                         for rank, item in enumerate(result.output, 1)]
    page = bundle["text/html"]
    assert "<th>rank</th><th>score</th><th>document</th><th>index</th>" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in page and "<b>bold</b>" not in page
    rows = re.findall(r"<tr><td[^>]*>(\d+)</td><td[^>]*>.*?</span></span> ([\d.]+)</td><td[^>]*>(.*?)</td>"
                      r"<td[^>]*>(\d+)</td></tr>", page)
    assert [(int(r), float(s), int(i)) for r, s, _, i in rows] == \
        [(rank, round(item["score"], 4), item["index"]) for rank, item in enumerate(result.output, 1)]
    widths = [float(w) for w in re.findall(r"width:([\d.]+)%", page)]
    assert widths == [round(item["score"] * 100, 1) for item in result.output]   # sigmoid scores fill by value


def test_the_renderer_shows_mapping_documents_by_their_field_and_texts_left_out_by_index():
    fields = {"query": "q", "documents": [{"text": "alpha", "id": 1}, {"text": "beta", "id": 2}],
              "document_field": "text"}
    ranking = [{"index": 1, "score": 2.5, "document": fields["documents"][1]}, {"index": 0, "score": -1.0}]
    bundle = render_ranking(ranking, fields)
    assert bundle["text/plain"].splitlines() == ["query: q", "1. 2.5000  beta  (#1)", "2. -1.0000  alpha  (#0)"]
    assert [float(w) for w in re.findall(r"width:([\d.]+)%", bundle["text/html"])] == [100.0, 0.0]  # logits: by place


def test_the_renderer_shows_a_table_per_query_and_passes_on_what_is_not_a_ranking():
    fields = {"query": ["first", "second"], "documents": [["a", "b"], ["c"]]}
    value = [[{"index": 1, "score": 0.9}, {"index": 0, "score": 0.2}], []]
    bundle = render_ranking(value, fields)
    assert bundle["text/plain"] == "query: first\n1. 0.9000  b  (#1)\n2. 0.2000  a  (#0)\n\nquery: second\n" \
                                   "no documents ranked"
    assert bundle["text/html"].count("<table") == 1 and "<i>no documents ranked</i>" in bundle["text/html"]
    for other in ("text", {"index": 0, "score": 0.5}, [{"id": "a", "score": 0.5}], [{"index": "0", "score": 1}]):
        assert render_ranking(other, {"query": "q"}) is None
    assert render_ranking([[{"index": 0, "score": 0.5}]], {"query": "q"}) is None   # one query, not a ranking


# ------------------------------------------------------------------------------------------------
# Errors say what is wrong and leave the registry as it was


@pytest.mark.parametrize("inputs, message", [
    ({"query": None, "documents": PASSAGES}, "text-reranking got no query: give `query:`"),
    ({"query": QUERY, "documents": None}, "text-reranking got no documents: give `documents:`"),
    ({"query": 42, "documents": PASSAGES}, "`query:` must be a text, not a int"),
    ({"query": QUERY, "documents": [{"text": "a"}]}, "document 0 of `documents:` is a mapping ({'text': 'a'}): "
                                                     "say which key holds its text with `document_field:`"),
    ({"query": QUERY, "documents": ["fine", 3]}, "document 1 of `documents:` is a int, not a text or a mapping"),
    ({"query": [QUERY, "other"], "documents": PASSAGES}, "a list of 2 queries needs a list of 2 document lists"),
    ({"query": [QUERY], "documents": [PASSAGES, PASSAGES]}, "a list of 1 queries needs a list of 1 document lists"),
])
def test_a_missing_or_wrong_input_is_an_input_error_naming_the_field(inputs, message, registry, encoders):
    mc.compose(component(), registry=registry)
    before = registry_state(registry)
    with pytest.raises(InputError, match=re.escape(message)):
        mc.run(inputs=inputs, registry=registry)
    assert registry_state(registry) == before


def test_a_document_without_its_field_names_the_keys_it_has(registry, encoders):
    mc.compose(component(extra="\n  document_field: text"), registry=registry)
    with pytest.raises(InputError, match=re.escape("document 1 of `documents:` has no `text` (`document_field: text`);"
                                                   " its keys: `body`, `id`")):
        rerank(registry, [{"text": "a"}, {"body": "b", "id": 2}])


def test_a_bad_parameter_is_an_input_error_naming_it(registry, encoders):
    mc.compose(component(extra="\n  top_k: ${input.k}"), registry=registry)
    before = registry_state(registry)
    with pytest.raises(InputError, match=re.escape("`top_k` must be a whole number of at least 1, not 0")):
        mc.run(inputs={"query": QUERY, "documents": PASSAGES, "k": 0}, registry=registry)
    assert registry_state(registry) == before
