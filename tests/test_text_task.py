"""The text-generation task is one behaviour on every backend: the same chat YAML gives the same messages to
transformers, llama.cpp, vLLM and Unsloth; a bad message is the same InputError everywhere; the generation
parameters are read once and mapped onto each engine's names."""

from __future__ import annotations

import importlib.util

import pytest

import mc_jupyter as mc
from mc_jupyter.drivers.hf_generation import ChatCompletion, TextGeneration
from mc_jupyter.drivers.llamacpp import NAMES as LLAMACPP_NAMES
from mc_jupyter.drivers.llamacpp import LlamaCppChatCompletion, LlamaCppTextGeneration, completion_kwargs
from mc_jupyter.drivers.sources import resolve_source
from mc_jupyter.drivers.unsloth_driver import UnslothChatCompletion, UnslothTextGeneration
from mc_jupyter.drivers.vllm_driver import NAMES as VLLM_NAMES
from mc_jupyter.drivers.vllm_driver import (VllmChatCompletion, VllmTextGeneration, engine_args, engine_prompt,
                                            sampling_kwargs)
from mc_jupyter.errors import InputError
from mc_jupyter.secrets import read_env
from mc_jupyter.tasks.text_generation import GenerationParams, normalise_messages, prompts_of
from tests import reference

HAS_LLAMACPP = importlib.util.find_spec("llama_cpp") is not None
if HAS_LLAMACPP:
    from tests import test_llamacpp
    gguf_file = test_llamacpp.gguf_file     # the tiny Llama written as GGUF (a module-scoped fixture)

CHAT_BACKENDS = [ChatCompletion, LlamaCppChatCompletion, VllmChatCompletion, UnslothChatCompletion]
TEXT_BACKENDS = [TextGeneration, LlamaCppTextGeneration, VllmTextGeneration, UnslothTextGeneration]

# One conversation as a user writes it: an optional system prompt left unset, a number as content, a key
# the engines do not take.
WRITTEN = [{"role": "system", "content": None},
           {"role": "user", "content": "Hello", "name": "ada"},
           {"role": "assistant", "content": 42},
           {"role": "user", "content": "And now?"}]
EXPECTED = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "42"},
            {"role": "user", "content": "And now?"}]


def config_of(driver: str, task: str, model: str = "m"):
    return mc.read_config(f"component:\n  task: {task}\n  driver: {driver}\n  model: {model}\n").components[
        "default"].config


DRIVER_OF = {cls: driver for driver, pair in (("huggingface", (ChatCompletion, TextGeneration)),
                                                ("llamacpp", (LlamaCppChatCompletion, LlamaCppTextGeneration)),
                                                ("vllm", (VllmChatCompletion, VllmTextGeneration)),
                                                ("unsloth", (UnslothChatCompletion, UnslothTextGeneration)))
             for cls in pair}


def backend(cls, model: str = "m"):
    """A backend object as the registry builds it (``cls(id, config)``), not loaded: the task's half only."""
    return cls("c", config_of(DRIVER_OF[cls], "chat-completion" if cls.chat else "text-generation", model))


# ------------------------------------------------------------------------------------------------
# The one normaliser


def test_normalise_messages_skips_unset_content_makes_text_and_keeps_role_and_content_only():
    assert normalise_messages(WRITTEN) == EXPECTED
    assert normalise_messages({"role": "user", "content": "Hi"}) == [{"role": "user", "content": "Hi"}]
    assert normalise_messages(({"role": "user", "content": "Hi"},)) == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("messages", [None, [], {}, "", [{"role": "system", "content": None}]])
def test_no_messages_is_an_input_error(messages):
    with pytest.raises(InputError, match="chat-completion got no messages: give `messages:` with `role` and `content`"):
        normalise_messages(messages)


@pytest.mark.parametrize("messages,fragment", [
    ([{"role": "user", "content": "a"}, {"content": "b"}], "message #2 of `messages:` has no `role`"),
    ([{"role": "user", "content": "a"}, "b"], "message #2 of `messages:` is 'b'"),
    ([{"role": None, "content": "a"}], "message #1 of `messages:` has no `role`"),
    ([{"role": 3, "content": "a"}], "message #1 of `messages:` has the role 3, not a name"),
    ([{"role": "user"}], "message #1 of `messages:` has no `content`"),
    ("hello", "`messages:` must be a list of mappings with `role` and `content`, not str 'hello'"),
])
def test_a_message_that_is_not_a_mapping_with_a_role_is_an_input_error_naming_it(messages, fragment):
    with pytest.raises(InputError) as info:
        normalise_messages(messages)
    assert fragment in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_a_bad_message_never_shows_a_secret(monkeypatch):
    secret = "sk-text-task-0123456789"
    monkeypatch.setenv("MC_TEXT_TASK_SECRET", secret)
    assert read_env("MC_TEXT_TASK_SECRET") == secret      # read through ${env.*}: a known secret now
    with pytest.raises(InputError) as info:
        normalise_messages([{"content": f"my key is {secret}"}])
    assert secret not in str(info.value) and "***" in str(info.value)


def test_prompts_are_text_one_or_a_list_from_text_or_prompt():
    assert prompts_of({"text": "Hi"}) == (["Hi"], False)
    assert prompts_of({"prompt": ["a", 2]}) == (["a", "2"], True)
    assert prompts_of({"text": None, "prompt": "p"}) == (["p"], False)
    with pytest.raises(InputError, match="text-generation got no prompt: give `text:` \\(or `prompt:`\\)"):
        prompts_of({})


# ------------------------------------------------------------------------------------------------
# The same YAML, the same messages, on every backend


@pytest.mark.parametrize("cls", CHAT_BACKENDS, ids=lambda c: c.__name__)
def test_every_chat_backend_prepares_the_same_conversation(cls):
    call = backend(cls).prepare({"messages": WRITTEN, "params": {"max_output_length": 5, "temperature": 0}})
    assert call.items == [EXPECTED] and call.many is False
    assert call.params == GenerationParams(max_output_length=5, temperature=0.0)


@pytest.mark.parametrize("cls", CHAT_BACKENDS, ids=lambda c: c.__name__)
def test_a_message_without_a_role_is_the_same_input_error_on_every_backend(cls):
    with pytest.raises(InputError) as info:
        backend(cls).prepare({"messages": [{"role": "user", "content": "a"}, {"content": "b"}]})
    with pytest.raises(InputError) as direct:
        normalise_messages([{"role": "user", "content": "a"}, {"content": "b"}])
    assert str(info.value) == str(direct.value)


@pytest.mark.parametrize("cls", TEXT_BACKENDS, ids=lambda c: c.__name__)
def test_every_text_backend_prepares_the_same_prompts_and_parameters(cls):
    call = backend(cls).prepare({"text": ["a", "b"], "max_output_length": 7, "params": {"top_k": "5"}})
    assert call.items == ["a", "b"] and call.many is True
    assert call.params == GenerationParams(max_output_length=7, top_k=5)


CHAT_YAML = """
component:
  id: chat
  type: model
  task: chat-completion
  driver: {driver}
  model: {model}
  {options}
  messages:
    - role: system
      content: ${{input.system}}
    - role: user
      content: ${{input.user}}
  params: {{max_output_length: 8, temperature: 0}}
"""
INPUTS = {"system": None, "user": "Hello"}
SEEN = [{"role": "user", "content": "Hello"}]


def test_transformers_hands_generate_the_chat_template_of_the_normalised_messages(registry, models):
    from transformers import AutoTokenizer

    mc.compose(CHAT_YAML.format(driver="huggingface", model=models["causal"], options=""), registry=registry)
    driver = registry.entries["chat"].driver
    call = driver.prepare({"messages": [{"role": "system", "content": None},
                                        {"role": "user", "content": "Hello", "name": "ada"}]})
    assert call.items == [SEEN]
    assert driver.engine_text(call.items[0]) == reference.chat_prompt(models["causal"], SEEN)
    # what generate is handed: the raw tokenizer's own encoding of that text
    raw = AutoTokenizer.from_pretrained(models["causal"])(reference.chat_prompt(models["causal"], SEEN),
                                                           add_special_tokens=False)["input_ids"]
    assert driver.tokenize(call.items)["input_ids"][0].tolist() == raw
    assert mc.run(inputs=INPUTS, registry=registry).output == reference.chat(models["causal"], SEEN, 8)


@pytest.mark.skipif(not HAS_LLAMACPP, reason="the llamacpp extra (llama-cpp-python) is installed by .ci/run")
def test_llama_cpp_hands_create_chat_completion_the_normalised_messages(registry, models, gguf_file):
    mc.compose(CHAT_YAML.format(driver="llamacpp", model=gguf_file, options="options: {n_ctx: 256}"),
               registry=registry)
    driver = registry.entries["chat"].driver
    handed = []
    engine_call = driver.llm.create_chat_completion

    def spy(messages, **kwargs):      # the real engine, with what it was handed kept
        handed.append((messages, kwargs))
        return engine_call(messages, **kwargs)

    driver.llm.create_chat_completion = spy
    out = mc.run(inputs=INPUTS, registry=registry).output
    assert handed == [(SEEN, {"max_tokens": 8, "temperature": 0.0})]
    expected = reference.generate(models["causal"], reference.chat_prompt(models["causal"], SEEN), 8,
                                  add_special_tokens=False).replace("\ufffd", "")
    assert out == expected


@pytest.mark.skipif(not HAS_LLAMACPP, reason="the llamacpp extra (llama-cpp-python) is installed by .ci/run")
def test_a_message_without_a_role_through_transformers_and_llama_cpp_is_the_same_error(registry, models, gguf_file):
    bad = [{"role": "user", "content": "Hi"}, {"content": "no role"}]
    errors = []
    for driver, model, options in (("huggingface", models["causal"], ""),
                                   ("llamacpp", gguf_file, "options: {n_ctx: 256}")):
        mc.compose(f"component:\n  id: chat\n  task: chat-completion\n  driver: {driver}\n  model: {model}\n"
                   f"  {options}\n  messages: ${{input.messages}}\n", registry=registry)
        with pytest.raises(InputError) as info:
            mc.run(inputs={"messages": bad}, registry=registry)
        errors.append(str(info.value))
    assert errors[0] == errors[1] and "message #2 of `messages:` has no `role`" in errors[0]


def test_vllm_hands_its_engine_the_chat_template_of_the_normalised_messages(models):
    """vLLM is not installed here: its own function that turns a prepared item into the prompt vLLM gets,
    with the model's real tokenizer (what ``LLM.get_tokenizer()`` returns for it)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["causal"])
    chat = VllmChatCompletion("chat", config_of("vllm", "chat-completion", models["causal"]))
    call = chat.prepare({"messages": [{"role": "system", "content": None},
                                      {"role": "user", "content": "Hello", "name": "ada"}]})
    assert call.items == [SEEN]
    assert engine_prompt(call.items[0], tok) == reference.chat_prompt(models["causal"], SEEN)
    text = VllmTextGeneration("t", config_of("vllm", "text-generation", models["causal"]))
    assert [engine_prompt(item) for item in text.prepare({"text": ["a", 1]}).items] == ["a", "1"]


# ------------------------------------------------------------------------------------------------
# The parameters, read once, mapped per engine


FIELDS = {"max_output_length": 64,
          "params": {"min_output_length": 2, "temperature": 0.7, "top_p": "0.9", "top_k": 40,
                     "repetition_penalty": 1.1, "num_return_sequences": 2, "stop_sequences": "###", "seed": "3",
                     "batch_size": 4}}


def test_generation_params_read_params_first_then_the_action_top_level():
    p = GenerationParams.read(FIELDS)
    assert p == GenerationParams(max_output_length=64, min_output_length=2, temperature=0.7, top_p=0.9, top_k=40,
                                 repetition_penalty=1.1, num_return_sequences=2, stop_sequences=("###",), seed=3,
                                 batch_size=4)
    assert GenerationParams.read({"max_output_length": 9, "params": {"max_output_length": 5}}).max_output_length == 5
    assert GenerationParams.read({}) == GenerationParams(max_output_length=256)
    assert GenerationParams.read({}, max_output_length=50).max_output_length == 50
    assert GenerationParams.read({"stop_sequences": ["a", "b"]}).stop_sequences == ("a", "b")
    assert GenerationParams.read({"params": {"do_sample": "false"}}).do_sample is False


@pytest.mark.parametrize("params,message", [
    ({"max_output_length": 0}, "`max_output_length` must be a whole number of at least 1, not 0"),
    ({"temperature": "hot"}, "`temperature` must be a number of at least 0, not 'hot'"),
    ({"top_k": "3.5"}, "`top_k` must be a whole number of at least 0, not '3.5'"),
    ({"seed": True}, "`seed` must be a whole number, not True"),
    ({"batch_size": "two"}, "`batch_size` must be a whole number of at least 1, not 'two'"),
    ({"do_sample": "maybe"}, "`do_sample` must be true or false, not 'maybe'"),
])
def test_a_parameter_that_does_not_fit_names_itself(params, message):
    with pytest.raises(InputError) as info:
        GenerationParams.read({"params": params})
    assert message in str(info.value)


def test_llama_cpp_and_vllm_get_their_own_names():
    p = GenerationParams.read(FIELDS)
    assert completion_kwargs(p) == p.engine(LLAMACPP_NAMES) == {
        "max_tokens": 64, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "repeat_penalty": 1.1, "seed": 3,
        "stop": ["###"]}
    assert sampling_kwargs(p) == p.engine(VLLM_NAMES) == {
        "max_tokens": 64, "min_tokens": 2, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1,
        "n": 2, "seed": 3, "stop": ["###"]}
    greedy = GenerationParams.read({"params": {"temperature": 0}})
    assert completion_kwargs(greedy) == sampling_kwargs(greedy) == {"max_tokens": 256, "temperature": 0.0}


def test_transformers_gets_generate_s_names_and_temperature_zero_is_greedy(models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["causal"])
    assert GenerationParams.read(FIELDS).transformers(tok) == {
        "max_new_tokens": 64, "min_new_tokens": 2, "temperature": 0.7, "do_sample": True, "top_p": 0.9, "top_k": 40,
        "repetition_penalty": 1.1, "num_return_sequences": 2, "stop_strings": ["###"], "tokenizer": tok,
        "pad_token_id": tok.pad_token_id}
    greedy = GenerationParams.read({"params": {"temperature": 0, "top_p": 0.5}}).transformers(tok)
    assert greedy == {"max_new_tokens": 256, "do_sample": False, "temperature": None, "top_p": None, "top_k": None,
                      "pad_token_id": tok.pad_token_id}
    assert GenerationParams.read({}).transformers(tok) == {"max_new_tokens": 256, "pad_token_id": tok.pad_token_id}
    forced = GenerationParams.read({"params": {"temperature": 0.5, "do_sample": False}}).transformers(tok)
    assert forced["do_sample"] is False and forced["temperature"] is None


def test_a_hub_token_reaches_vllm_as_hf_token_and_is_never_in_an_error(monkeypatch):
    secret = "hf_text_task_secret_0123456789"
    monkeypatch.setenv("MC_TEXT_TASK_HF_TOKEN", secret)
    config = mc.read_config("component:\n  task: text-generation\n  driver: vllm\n  model:\n"
                            "    repository: org/private\n    token: ${env.MC_TEXT_TASK_HF_TOKEN}\n"
                            ).components["default"].config
    args = engine_args(config, resolve_source(config.model, config.task), 1)
    assert args == {"model": "org/private", "hf_token": secret, "dtype": "float16", "tensor_parallel_size": 1}
    assert secret not in repr(resolve_source(config.model, config.task))
