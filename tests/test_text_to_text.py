"""text-to-text (T5, BART, Marian, NLLB) against plain transformers' ``generate`` on the same tiny models."""

import functools
import re
import threading
from pathlib import Path
from typing import List

import pytest
import torch

import mc_jupyter as mc
from mc_jupyter.catalog import ARCHITECTURES
from mc_jupyter.drivers.hf_text_to_text import ARCHITECTURE_TYPES
from mc_jupyter.errors import ConfigError, InputError, ModelLoadError
from tests.sinks import Collect
from tests import tiny_seq2seq
from tests.test_spec_blocks import registry_state

TOKENS = 10
TEXTS = ["The sky is blue because air scatters blue light.", "Once upon a time there was a small robot.",
         "Hello world! How are you today?"]
SUMMARIZE = "summarize: The Eiffel Tower is in Paris. It is 330 metres tall and was finished in 1889."
MODELS = {"t5": "google-t5/t5-small", "bart": "facebook/bart-large-cnn", "marian": "Helsinki-NLP/opus-mt-en-fr",
          "nllb": "facebook/nllb-200-distilled-600M"}


@pytest.fixture(scope="module")
def seq2seq(hub_cache, tmp_path_factory):
    """The tiny seq2seq models' local folders; the hub cache holds them under the real repo ids."""
    return tiny_seq2seq.build_all(tmp_path_factory.mktemp("seq2seq"), hub_cache, ("t5", "bart", "marian", "nllb"))


@functools.lru_cache(maxsize=None)
def _loaded(folder: Path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    return AutoTokenizer.from_pretrained(folder), AutoModelForSeq2SeqLM.from_pretrained(folder).eval()


def raw(folder: Path, texts: List[str], seed=None, **generate_kwargs) -> List[str]:
    """What plain transformers gives: tokenizer, generate, decode without special tokens."""
    tokenizer, model = _loaded(folder)
    if seed is not None:
        torch.manual_seed(seed)
    out = model.generate(**tokenizer(texts, return_tensors="pt", padding=True), **generate_kwargs)
    return tokenizer.batch_decode(out, skip_special_tokens=True)


def component(model: str, params: str = f"max_output_length: {TOKENS}", extra: str = "") -> str:
    return f"""
component:
  id: writer
  type: model
  task: text-to-text
  model: {model}
  device: cpu
  text: ${{input.text}}{extra}
  params: {{{params}}}
"""


def compose(registry, name: str, **kwargs) -> None:
    mc.compose(component(MODELS[name], **kwargs), registry=registry)


def write(registry, text, **inputs):
    return mc.run(inputs={"text": text, **inputs}, registry=registry).output


GREEDY = dict(max_new_tokens=TOKENS, num_beams=1, do_sample=False)
BEAMS = dict(max_new_tokens=TOKENS, num_beams=4, early_stopping=True, do_sample=False)


# ------------------------------------------------------------------------------------------------
# Outputs equal plain transformers


def test_every_architecture_of_the_catalog_has_its_model_types():
    assert tuple(ARCHITECTURE_TYPES) == ARCHITECTURES["text-to-text"]


@pytest.mark.parametrize("name", ["t5", "bart", "marian"])
def test_greedy_output_equals_raw_generate_and_the_architecture_is_inferred(name, registry, seq2seq):
    compose(registry, name, params=f"max_output_length: {TOKENS}, num_beams: 1")
    assert registry.entries["writer"].driver.architecture == name
    out = write(registry, TEXTS[0])
    assert isinstance(out, str) and out.strip()
    assert out == raw(seq2seq[name], TEXTS[:1], **GREEDY)[0]


def test_a_t5_task_prefix_is_the_users_text(registry, seq2seq):
    compose(registry, "t5", params=f"max_output_length: {TOKENS}, num_beams: 1")
    summary = write(registry, SUMMARIZE)
    assert summary == raw(seq2seq["t5"], [SUMMARIZE], **GREEDY)[0]
    assert summary != write(registry, SUMMARIZE.replace("summarize: ", "translate English to French: "))


def test_model_compose_decodes_with_four_beams_by_default(registry, seq2seq):
    compose(registry, "marian")
    beamed = write(registry, TEXTS)
    assert beamed == raw(seq2seq["marian"], TEXTS, **BEAMS)
    assert beamed != raw(seq2seq["marian"], TEXTS, **GREEDY), "beam search should differ from greedy here"
    compose(registry, "marian", params=f"max_output_length: {TOKENS}, num_beams: 3, length_penalty: 0.5, "
                                       f"early_stopping: false")
    assert write(registry, TEXTS) == raw(seq2seq["marian"], TEXTS, max_new_tokens=TOKENS, num_beams=3,
                                         length_penalty=0.5, early_stopping=False, do_sample=False)


def test_without_max_output_length_the_models_generation_config_decides(registry, seq2seq):
    compose(registry, "bart", params="num_beams: 4")      # BART-CNN's config: max_length, min_length, ngrams
    assert write(registry, TEXTS[1]) == raw(seq2seq["bart"], TEXTS[1:2], num_beams=4, early_stopping=True,
                                            do_sample=False)[0]


@pytest.mark.slow
def test_without_max_output_length_or_one_in_the_model_s_config_256_tokens_are_written(registry, seq2seq):
    compose(registry, "t5", params="num_beams: 1")        # t5 sets no length: 256 new tokens, as text-generation
    assert write(registry, TEXTS[1]) == raw(seq2seq["t5"], TEXTS[1:2], max_new_tokens=256, num_beams=1,
                                            do_sample=False)[0]


def test_a_list_runs_in_batches_and_equals_one_by_one(registry, seq2seq):
    compose(registry, "t5", params=f"max_output_length: {TOKENS}, batch_size: 2")
    batched = write(registry, TEXTS)
    assert batched == [write(registry, text) for text in TEXTS]
    assert batched == [raw(seq2seq["t5"], [text], **BEAMS)[0] for text in TEXTS]
    assert len(set(batched)) == len(TEXTS), "the tiny model should write different texts for different inputs"
    assert write(registry, []) == []


def test_several_return_sequences_give_a_list_per_input(registry, seq2seq):
    compose(registry, "marian", params=f"max_output_length: {TOKENS}, num_return_sequences: 2")
    out = write(registry, TEXTS[:2])
    flat = raw(seq2seq["marian"], TEXTS[:2], num_return_sequences=2, **BEAMS)
    assert out == [flat[0:2], flat[2:4]]
    assert write(registry, TEXTS[0]) == flat[0:2]


def test_sampling_only_with_do_sample_and_a_seed_makes_it_repeatable(registry, seq2seq):
    compose(registry, "t5", params=f"max_output_length: {TOKENS}, do_sample: true, temperature: 1.5, top_k: 20, "
                                   f"top_p: 0.9, num_beams: 1, seed: 7")
    sampled = dict(max_new_tokens=TOKENS, do_sample=True, temperature=1.5, top_k=20, top_p=0.9, num_beams=1)
    a, b = write(registry, TEXTS[0]), write(registry, TEXTS[0])
    assert a == b == raw(seq2seq["t5"], TEXTS[:1], seed=7, **sampled)[0]
    assert a != raw(seq2seq["t5"], TEXTS[:1], **GREEDY)[0]
    # model-compose: temperature, top_k and top_p are read only with `do_sample: true`
    compose(registry, "t5", params=f"max_output_length: {TOKENS}, temperature: 1.5, top_k: 20, seed: 7")
    assert write(registry, TEXTS[0]) == raw(seq2seq["t5"], TEXTS[:1], **BEAMS)[0]


def test_penalties_and_lengths_reach_generate(registry, seq2seq):
    compose(registry, "t5", params="max_output_length: 12, min_output_length: 8, repetition_penalty: 1.8, "
                                   "no_repeat_ngram_size: 2, num_beams: 1")
    assert write(registry, TEXTS[2]) == raw(seq2seq["t5"], TEXTS[2:], max_new_tokens=12, min_new_tokens=8,
                                            repetition_penalty=1.8, no_repeat_ngram_size=2, num_beams=1,
                                            do_sample=False)[0]


def test_stop_sequences_end_the_text_as_generate_s_stop_strings_do(registry, seq2seq):
    tokenizer, _ = _loaded(seq2seq["t5"])
    full = raw(seq2seq["t5"], TEXTS[:1], **GREEDY)[0]
    stop = full.split()[1][:2]
    compose(registry, "t5", params=f"max_output_length: {TOKENS}, num_beams: 1, stop_sequences: [{stop!r}]")
    out = write(registry, TEXTS[0])
    assert out == raw(seq2seq["t5"], TEXTS[:1], stop_strings=[stop], tokenizer=tokenizer, **GREEDY)[0]
    assert len(out) < len(full) and out.endswith(stop)


def test_forced_bos_token_starts_the_output_with_nllb_s_language_token(registry, seq2seq):
    tokenizer, _ = _loaded(seq2seq["nllb"])
    french = tokenizer.convert_tokens_to_ids("fra_Latn")
    compose(registry, "nllb", params=f"max_output_length: {TOKENS}, forced_bos_token: fra_Latn")
    assert registry.entries["writer"].driver.architecture is None      # m2m_100: seq2seq, no family name
    out = write(registry, TEXTS[:2])
    assert out == raw(seq2seq["nllb"], TEXTS[:2], forced_bos_token_id=french, **BEAMS)
    assert out != raw(seq2seq["nllb"], TEXTS[:2], **BEAMS)
    _, model = _loaded(seq2seq["nllb"])
    ids = model.generate(**tokenizer(TEXTS[:1], return_tensors="pt"), forced_bos_token_id=french, **BEAMS)
    assert ids[0, 1] == french and "fra_Latn" not in out[0]            # forced, and dropped from the text


def test_precision_is_honoured(registry, seq2seq):
    compose(registry, "t5", extra="\n  precision: bfloat16")
    [row] = registry.snapshot()
    assert (row["dtype"], row["device"], row["task"]) == ("bfloat16", "cpu", "text-to-text")
    assert next(registry.entries["writer"].driver.model.parameters()).dtype == torch.bfloat16
    assert isinstance(write(registry, TEXTS[0]), str)


# ------------------------------------------------------------------------------------------------
# Streaming


def test_a_stream_grows_the_same_text_as_a_plain_greedy_run(registry, seq2seq):
    compose(registry, "t5", params="max_output_length: 24, num_beams: 1")
    plain = write(registry, TEXTS[0])
    compose(registry, "t5", params="max_output_length: 24", extra="\n  streaming: true")   # greedy by default
    sink = Collect()
    result = mc.run(inputs={"text": TEXTS[0]}, stream=sink, registry=registry)
    assert result.output == plain == "".join(sink.chunks) == raw(seq2seq["t5"], TEXTS[:1], max_new_tokens=24,
                                                                 num_beams=1, do_sample=False)[0]
    assert len(sink.chunks) > 1 and sink.interrupted is False
    assert result.outcome.last.streamed and result.outcome.last.tokens == 24


def test_the_stop_event_ends_a_stream_and_keeps_its_text(registry, seq2seq):
    compose(registry, "marian", params="max_output_length: 60", extra="\n  streaming: true")
    full = raw(seq2seq["marian"], TEXTS[:1], max_new_tokens=60, num_beams=1, do_sample=False)[0]
    sink = Collect(stop_after=1)
    result = mc.run(inputs={"text": TEXTS[0]}, stream=sink, registry=registry)
    record = result.outcome.last
    assert sink.interrupted is True and record.interrupted
    assert full.startswith(result.output) and len(result.output) < len(full)
    assert record.tokens < 60
    assert not [t for t in threading.enumerate() if t.name.startswith("mc_jupyter-generate")]
    assert write(registry, TEXTS[0]) == full                      # the model stays usable


@pytest.mark.parametrize("params, message", [
    ("num_beams: 4", "`num_beams: 4` (beam search) cannot stream"),
    ("num_beams: 1, num_return_sequences: 2", "`num_return_sequences: 2` cannot stream"),
])
def test_what_cannot_stream_is_an_input_error_naming_the_key(params, message, registry, seq2seq):
    compose(registry, "t5", params=params, extra="\n  streaming: true")
    before = registry_state(registry)
    with pytest.raises(InputError, match=re.escape(message)):
        mc.run(inputs={"text": TEXTS[0]}, stream=Collect(), registry=registry)
    assert registry_state(registry) == before


# ------------------------------------------------------------------------------------------------
# model-compose's own file shape, and what a cell shows


MODEL_COMPOSE_FILE = """
components:
  - id: translator
    type: model
    task: text-to-text
    driver: huggingface
    model: facebook/nllb-200-distilled-600M
    architecture: auto
    action:
      text: ${input.text}
      max_output_length: 12
      batch_size: 2
      params:
        num_beams: 2
        forced_bos_token: ${input.language}
workflow:
  jobs:
    - id: translate
      component: translator
      input: ${input}
"""


def test_a_model_compose_file_composes_and_runs_unchanged(registry, seq2seq):
    mc.compose(MODEL_COMPOSE_FILE, registry=registry)
    tokenizer, _ = _loaded(seq2seq["nllb"])
    out = mc.run(inputs={"text": TEXTS, "language": "deu_Latn"}, registry=registry).output
    assert out == raw(seq2seq["nllb"], TEXTS, max_new_tokens=12, num_beams=2, early_stopping=True, do_sample=False,
                      forced_bos_token_id=tokenizer.convert_tokens_to_ids("deu_Latn"))


def test_a_list_result_shows_each_source_beside_its_output(registry, seq2seq):
    compose(registry, "marian")
    result = mc.run(inputs={"text": TEXTS[:2]}, registry=registry)
    bundle = result._repr_mimebundle_()
    assert bundle["text/plain"].splitlines() == [f"1. {result.output[0]}", f"2. {result.output[1]}"]
    assert all(text in bundle["text/html"] for text in TEXTS[:2])


def test_without_task_the_model_s_config_says_text_to_text(registry, seq2seq):
    mc.compose(f"component:\n  id: writer\n  type: model\n  model: {seq2seq['bart']}\n  text: ${{input.text}}\n"
               f"  params: {{max_output_length: {TOKENS}}}\n", registry=registry)
    assert registry.snapshot()[0]["task"] == "text-to-text"
    assert write(registry, TEXTS[0]) == raw(seq2seq["bart"], TEXTS[:1], **BEAMS)[0]


# ------------------------------------------------------------------------------------------------
# Errors say what is wrong and leave the registry as it was


@pytest.mark.parametrize("text, message", [
    (None, "text-to-text got no text: give `text:`"),
    ({"a": 1}, "text-to-text takes text, but `text:` is a dict"),
    (["fine", ["nested"]], "item 1 of `text:` is a list"),
])
def test_a_missing_or_wrong_text_is_an_input_error(text, message, registry, seq2seq):
    compose(registry, "t5")
    before = registry_state(registry)
    with pytest.raises(InputError, match=re.escape(message)):
        write(registry, text)
    assert registry_state(registry) == before


@pytest.mark.parametrize("params, message", [
    ('max_output_length: "${input.n}"', "`max_output_length` must be a whole number of at least 1, not 'lots'"),
    ("num_beams: 2, num_return_sequences: 3", "`num_return_sequences: 3` is more than `num_beams: 2`"),
    ("num_beams: 1, num_return_sequences: 2", "`num_return_sequences: 2` with `num_beams: 1` and no sampling"),
    ("forced_bos_token: xyz_Latn", "`forced_bos_token: xyz_Latn` is not a token of this model's tokenizer"),
    ('no_repeat_ngram_size: "${input.n}"', "`no_repeat_ngram_size` must be a whole number of at least 1, not 'lots'"),
])
def test_a_bad_parameter_is_an_input_error_naming_it(params, message, registry, seq2seq):
    compose(registry, "t5", params=params)
    before = registry_state(registry)
    with pytest.raises(InputError, match=re.escape(message)):
        write(registry, TEXTS[0], n="lots")
    assert registry_state(registry) == before


def test_nllb_s_language_tokens_are_named_when_the_forced_token_is_unknown(registry, seq2seq):
    compose(registry, "nllb", params="forced_bos_token: french")
    with pytest.raises(InputError, match=r"Its language tokens include `ace_Arab`, "):
        write(registry, TEXTS[0])


def test_a_text_longer_than_the_model_reads_names_max_input_length(registry, seq2seq):
    long_text = " ".join(TEXTS * 12)                      # more than the tiny Marian's 128 positions
    compose(registry, "marian")
    with pytest.raises(InputError, match=re.escape("Set `max_input_length: 128` to keep its first 128 tokens")):
        write(registry, long_text)
    compose(registry, "marian", params=f"max_output_length: {TOKENS}, max_input_length: 128")
    tokenizer, model = _loaded(seq2seq["marian"])
    enc = tokenizer([long_text], return_tensors="pt", truncation=True, max_length=128)
    expected = tokenizer.batch_decode(model.generate(**enc, **BEAMS), skip_special_tokens=True)[0]
    assert write(registry, long_text) == expected


def test_max_output_length_past_the_decoder_s_positions_is_an_input_error(registry, seq2seq):
    compose(registry, "marian", params="max_output_length: 128")
    with pytest.raises(InputError, match=re.escape("Lower `max_output_length` to 127 or less")):
        write(registry, TEXTS[0])


def test_a_decoder_only_model_is_a_load_error_and_nothing_is_registered(registry, models, seq2seq):
    with pytest.raises(ModelLoadError, match=re.escape("`gpt2` is a `llama` model, not a sequence-to-sequence one")):
        mc.compose(component("gpt2"), registry=registry)
    assert registry.snapshot() == []


def test_an_architecture_that_does_not_match_the_model_is_a_load_error(registry, seq2seq):
    with pytest.raises(ModelLoadError, match=re.escape("`architecture: bart` but `google-t5/t5-small` is a `t5` "
                                                       "model (expected model_type `bart`)")):
        mc.compose(component(MODELS["t5"], extra="\n  architecture: bart"), registry=registry)
    assert registry.snapshot() == []


def test_an_unknown_architecture_is_a_config_error_at_compose(registry, seq2seq):
    with pytest.raises(ConfigError, match=re.escape("unknown architecture `t6` for task `text-to-text`")):
        mc.compose(component(MODELS["t5"], extra="\n  architecture: t6"), registry=registry)
    assert registry.snapshot() == []
