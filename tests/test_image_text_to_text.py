"""image-text-to-text (Idefics3/SmolVLM, LLaVA) against plain transformers on the same tiny models and images.

The reference is each model card's recipe: ``processor.apply_chat_template(messages, add_generation_prompt=True,
tokenize=True, return_dict=True)``, ``model.generate``, the new tokens decoded.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import io
import json
import re
import threading
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from PIL import Image

import mc_jupyter as mc
from mc_jupyter.catalog import ARCHITECTURES, DRIVERS
from mc_jupyter.display.vision_chat import render_reply
from mc_jupyter.drivers.hf_image_text_to_text import ARCHITECTURE_TYPES
from mc_jupyter.drivers.vllm_driver import VllmImageTextToText, engine_args, sampling_kwargs, vision_prompt
from mc_jupyter.errors import InputError, ModelLoadError, UserError
from mc_jupyter.tasks.image_text_to_text import VisionGenerationParams, conversations_of
from tests.sinks import Collect
from tests import tiny_vlms
from tests.test_spec_blocks import registry_state
from tests.tiny_models import place_in_hub_cache

ARCHS = tuple(tiny_vlms.BUILDERS)
TOKENS = 8
QUESTION = "What is in the picture?"


@pytest.fixture(scope="session")
def vlms(hub_cache, tmp_path_factory) -> Dict[str, Path]:
    """The tiny VLMs' folders; the hub cache holds them under the real repo ids."""
    return tiny_vlms.build_all(tmp_path_factory.mktemp("vlms"), hub_cache)


def picture(seed: int, size=(48, 40)) -> Image.Image:
    """A smooth colour gradient, different for each seed."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 256, (2, 2, 3)).astype(float)
    y, x = np.linspace(0, 1, size[1])[:, None, None], np.linspace(0, 1, size[0])[None, :, None]
    top, bottom = corners[0, 0] * (1 - x) + corners[0, 1] * x, corners[1, 0] * (1 - x) + corners[1, 1] * x
    return Image.fromarray((top * (1 - y) + bottom * y).astype(np.uint8))


PICTURES = [picture(seed) for seed in range(3)]


def user(*parts: Any) -> Dict[str, Any]:
    """A user message of the model card's form: images as ``{type: image, image}``, texts as ``{type: text}``."""
    return {"role": "user", "content": [{"type": "image", "image": p} if isinstance(p, Image.Image) else
                                        {"type": "text", "text": p} for p in parts]}


def assistant(text: str) -> Dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


@functools.lru_cache(maxsize=None)
def reference(folder: Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    processor = AutoProcessor.from_pretrained(folder)
    processor.tokenizer.padding_side = "left"
    return processor, AutoModelForImageTextToText.from_pretrained(folder).eval()


def raw_replies(folder: Path, conversations: List[List[Dict[str, Any]]], seed=None, **generate_kwargs) -> List[str]:
    """What plain transformers gives, as the model cards show it (a batch padded on the left)."""
    processor, model = reference(folder)
    inputs = processor.apply_chat_template(conversations, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt", processor_kwargs={"padding": True})
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**inputs, **{"max_new_tokens": TOKENS, "do_sample": False, **generate_kwargs})
    return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def raw(folder: Path, *messages: Dict[str, Any], **kwargs) -> str:
    return raw_replies(folder, [list(messages)], **kwargs)[0]


def component(model: str, architecture: str = "", inputs: str = "", params: str = "", extra: str = "",
              tokens: int = TOKENS) -> str:
    arch = f"\n  architecture: {architecture}" if architecture else ""
    inputs = inputs or "image: ${input.image}\n  prompt: ${input.prompt | null}"
    greedy = "" if "temperature" in params else ", temperature: 0"
    return f"""
component:
  id: vlm
  type: model
  task: image-text-to-text
  model: {model}{arch}
  device: cpu
  {inputs}
  params: {{max_output_length: {tokens}{greedy}{', ' + params if params else ''}}}{extra}
"""


def compose(registry, architecture: str, **kwargs) -> None:
    mc.compose(component(tiny_vlms.REPOS[architecture][0], architecture, **kwargs), registry=registry)


def ask(registry, image=None, prompt=None, **inputs):
    return mc.run(inputs=dict(inputs, image=image, prompt=prompt), registry=registry).output


# ------------------------------------------------------------------------------------------------
# Replies equal plain transformers


def test_every_architecture_of_the_table_is_a_model_compose_architecture():
    assert tuple(ARCHITECTURE_TYPES) == ARCHITECTURES["image-text-to-text"]
    assert DRIVERS[("vllm", "image-text-to-text")].target.endswith("vllm_driver:VllmImageTextToText")


@pytest.mark.parametrize("architecture", ARCHS)
def test_a_greedy_reply_equals_raw_generate_and_holds_only_the_new_text(architecture, registry, vlms):
    compose(registry, architecture)
    assert registry.entries["vlm"].driver.architecture == architecture
    replies = [ask(registry, p, QUESTION) for p in PICTURES]
    assert replies == [raw(vlms[architecture], user(p, QUESTION)) for p in PICTURES]
    assert all(isinstance(r, str) and r.strip() for r in replies)
    assert len(set(replies)) > 1, "the tiny model should answer about different pictures differently"


def test_the_architecture_is_inferred_from_a_local_folder(registry, vlms):
    mc.compose(component(str(vlms["llava"])), registry=registry)
    assert registry.entries["vlm"].driver.architecture == "llava"
    assert ask(registry, PICTURES[1], QUESTION) == raw(vlms["llava"], user(PICTURES[1], QUESTION))


def test_a_system_prompt_goes_first_and_changes_the_reply(registry, vlms):
    compose(registry, "idefics3", inputs="image: ${input.image}\n  prompt: ${input.prompt}\n  "
                                         "system_prompt: ${input.system}")
    system = {"role": "system", "content": [{"type": "text", "text": "Answer in one word."}]}
    with_system = ask(registry, PICTURES[0], QUESTION, system="Answer in one word.")
    assert with_system == raw(vlms["idefics3"], system, user(PICTURES[0], QUESTION))
    assert with_system != raw(vlms["idefics3"], user(PICTURES[0], QUESTION))


@pytest.mark.parametrize("architecture", ARCHS)
def test_a_list_of_prompts_with_their_images_runs_in_batches_and_equals_one_by_one(architecture, registry, vlms):
    compose(registry, architecture, params="batch_size: 2")
    prompts = [QUESTION, "Describe the colours.", "Is it light or dark?"]
    batched = ask(registry, PICTURES, prompts)
    singles = [ask(registry, p, q) for p, q in zip(PICTURES, prompts)]
    assert batched == singles == [raw(vlms[architecture], user(p, q)) for p, q in zip(PICTURES, prompts)]


def test_one_image_goes_with_every_prompt_and_one_prompt_with_all_images(registry, vlms):
    compose(registry, "idefics3")
    assert ask(registry, PICTURES[0], [QUESTION, "Describe it."]) == [
        raw(vlms["idefics3"], user(PICTURES[0], QUESTION)), raw(vlms["idefics3"], user(PICTURES[0], "Describe it."))]
    both = ask(registry, PICTURES[:2], "Compare the two pictures.")     # model-compose's multi-image prompt
    assert both == raw(vlms["idefics3"], user(PICTURES[0], PICTURES[1], "Compare the two pictures."))


def test_a_list_of_image_groups_gives_each_prompt_its_own_images(registry, vlms):
    compose(registry, "idefics3", params="batch_size: 2")
    groups = [[PICTURES[0], PICTURES[1]], [PICTURES[2]]]
    assert ask(registry, groups, QUESTION) == [raw(vlms["idefics3"], user(PICTURES[0], PICTURES[1], QUESTION)),
                                                raw(vlms["idefics3"], user(PICTURES[2], QUESTION))]


def test_an_image_alone_is_a_question_without_text(registry, vlms):
    compose(registry, "llava", inputs="image: ${input.image}")   # model-compose: no prompt for OCR-like models
    assert ask(registry, PICTURES[2]) == raw(vlms["llava"], user(PICTURES[2]))


# ------------------------------------------------------------------------------------------------
# messages: a conversation with images inside, over several turns


def test_messages_with_an_image_go_on_over_two_turns_with_memory(registry, vlms):
    compose(registry, "idefics3", inputs="messages: ${input.messages}")
    first = [user(PICTURES[0], QUESTION)]
    reply = mc.run(inputs={"messages": first}, registry=registry).output
    assert reply == raw(vlms["idefics3"], *first)
    second = first + [{"role": "assistant", "content": reply}, {"role": "user", "content": "And its colours?"}]
    follow_up = mc.run(inputs={"messages": second}, registry=registry).output
    assert follow_up == raw(vlms["idefics3"], *first, assistant(reply), user("And its colours?"))
    without_memory = raw(vlms["idefics3"], user(PICTURES[0], "And its colours?"))
    assert follow_up != without_memory


def test_image_beside_messages_opens_the_first_user_message_or_fills_an_image_part(registry, vlms):
    compose(registry, "llava", inputs="image: ${input.image}\n  messages: ${input.messages}")
    expected = raw(vlms["llava"], user(PICTURES[1], QUESTION))
    opened = mc.run(inputs={"image": PICTURES[1], "messages": [{"role": "user", "content": QUESTION}]},
                    registry=registry).output
    placeholder = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    filled = mc.run(inputs={"image": PICTURES[1], "messages": placeholder}, registry=registry).output
    assert opened == filled == expected


def test_an_image_part_may_be_a_path_a_data_uri_or_an_openai_image_url(registry, vlms, tmp_path):
    compose(registry, "idefics3", inputs="messages: ${input.messages}")
    path = tmp_path / "picture.png"
    PICTURES[2].save(path)
    data_uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    parts = [{"type": "image", "path": str(path)}, {"type": "image", "image": data_uri},
             {"type": "image_url", "image_url": {"url": data_uri}}, {"type": "image", "image": str(path)}]
    replies = [mc.run(inputs={"messages": [{"role": "user", "content": [part, {"type": "text", "text": QUESTION}]}]},
                      registry=registry).output for part in parts]
    assert replies == [raw(vlms["idefics3"], user(PICTURES[2], QUESTION))] * len(parts)


# ------------------------------------------------------------------------------------------------
# Parameters


def test_sampling_parameters_and_a_seed_reach_generate_and_repeat(registry, vlms):
    compose(registry, "llava", params="temperature: 1.3, top_k: 40, top_p: 0.9, repetition_penalty: 1.2, "
                                      "no_repeat_ngram_size: 2, seed: 7")
    a, b = ask(registry, PICTURES[0], QUESTION), ask(registry, PICTURES[0], QUESTION)
    expected = raw(vlms["llava"], user(PICTURES[0], QUESTION), seed=7, do_sample=True, temperature=1.3, top_k=40,
                   top_p=0.9, repetition_penalty=1.2, no_repeat_ngram_size=2)
    assert a == b == expected


def test_without_sampling_keys_it_samples_with_model_composes_defaults(registry, vlms):
    yaml = component(tiny_vlms.REPOS["idefics3"][0], params="seed: 5").replace(", temperature: 0", "")
    assert "temperature" not in yaml and "do_sample" not in yaml
    mc.compose(yaml, registry=registry)
    expected = raw(vlms["idefics3"], user(PICTURES[0], QUESTION), seed=5, do_sample=True, temperature=1.0, top_k=50,
                   top_p=0.9)
    assert ask(registry, PICTURES[0], QUESTION) == expected
    assert expected != raw(vlms["idefics3"], user(PICTURES[0], QUESTION))     # greedy differs


def test_beam_search_and_min_output_length_reach_generate(registry, vlms):
    compose(registry, "idefics3", params="num_beams: 3, length_penalty: 0.5, early_stopping: true, "
                                         "min_output_length: 4")
    assert ask(registry, PICTURES[1], QUESTION) == raw(vlms["idefics3"], user(PICTURES[1], QUESTION), num_beams=3,
                                                       length_penalty=0.5, early_stopping=True, min_new_tokens=4)


def test_several_return_sequences_give_a_list_of_replies_per_input(registry, vlms):
    compose(registry, "idefics3", params="temperature: 1.0, num_return_sequences: 2, seed: 3, batch_size: 2")
    out = ask(registry, PICTURES[:2], [QUESTION, QUESTION])
    assert [len(replies) for replies in out] == [2, 2]
    assert all(isinstance(r, str) for replies in out for r in replies)


def test_stop_sequences_end_the_reply_where_transformers_stops(registry, vlms):
    full = raw(vlms["llava"], user(PICTURES[0], QUESTION))
    stop = full.split()[1]            # a word from inside the greedy reply
    compose(registry, "llava", params=f"stop_sequences: [{json.dumps(stop)}]")
    processor, _ = reference(vlms["llava"])
    stopped = ask(registry, PICTURES[0], QUESTION)
    assert stopped == raw(vlms["llava"], user(PICTURES[0], QUESTION), stop_strings=[stop],
                          tokenizer=processor.tokenizer)
    assert len(stopped) < len(full) and stop in stopped


def test_precision_is_honoured_for_weights_and_pixels(registry, vlms):
    compose(registry, "idefics3", extra="\n  precision: bfloat16")
    [row] = registry.snapshot()
    assert row["dtype"] == "bfloat16" and row["device"] == "cpu"
    driver = registry.entries["vlm"].driver
    assert next(driver.model.parameters()).dtype == torch.bfloat16
    assert driver.tokenize(conversations_of({"image": PICTURES[0], "prompt": "hi"})[0])["pixel_values"].dtype \
        == torch.bfloat16
    assert isinstance(ask(registry, PICTURES[0], QUESTION), str)


# ------------------------------------------------------------------------------------------------
# Streaming


def test_a_stream_grows_to_the_batch_text_and_stops_on_the_stop_event(registry, vlms):
    compose(registry, "idefics3", tokens=24)
    whole = ask(registry, PICTURES[0], QUESTION)
    assert whole == raw(vlms["idefics3"], user(PICTURES[0], QUESTION), max_new_tokens=24)
    compose(registry, "idefics3", tokens=24, extra="\n  streaming: true")
    sink = Collect()
    result = mc.run(inputs={"image": PICTURES[0], "prompt": QUESTION}, stream=sink, registry=registry)
    assert result.output == "".join(sink.chunks) == whole and len(sink.chunks) > 1
    assert result.outcome.last.tokens == 24 and sink.interrupted is False
    stopped = Collect(stop_after=2)
    result = mc.run(inputs={"image": PICTURES[0], "prompt": QUESTION}, stream=stopped, registry=registry)
    assert stopped.interrupted is True and result.outcome.last.interrupted
    assert whole.startswith(result.output) and len(result.output) < len(whole)
    assert not [t for t in threading.enumerate() if t.name.startswith("mc_jupyter-generate")]


def test_streaming_takes_one_input(registry, vlms):
    compose(registry, "idefics3", extra="\n  streaming: true")
    with pytest.raises(InputError, match="streaming takes one prompt, not a list"):
        mc.run(inputs={"image": PICTURES[:2], "prompt": [QUESTION, QUESTION]}, stream=Collect(), registry=registry)


# ------------------------------------------------------------------------------------------------
# model-compose's shape, and the display


MODEL_COMPOSE = """
workflow:
  title: Describe a picture
  input: ${input}
components:
  - id: describer
    type: model
    task: image-text-to-text
    driver: huggingface
    architecture: idefics3
    model: HuggingFaceTB/SmolVLM-256M-Instruct
    device: cpu
    action:
      image: ${input.image as image}
      prompt: ${input.question}
      system_prompt: You describe pictures.
      max_output_length: 8
      streaming: false
      params:
        do_sample: false
        repetition_penalty: 1.1
      output: ${result}
"""


def test_a_model_compose_file_composes_and_answers_as_transformers(registry, vlms, tmp_path):
    path = tmp_path / "picture.png"
    PICTURES[1].save(path)
    mc.compose(MODEL_COMPOSE, registry=registry)
    out = mc.run(inputs={"image": str(path), "question": QUESTION}, registry=registry).output
    system = {"role": "system", "content": [{"type": "text", "text": "You describe pictures."}]}
    assert out == raw(vlms["idefics3"], system, user(PICTURES[1], QUESTION), repetition_penalty=1.1)


def images_in(html: str) -> List[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_the_result_shows_each_reply_beside_its_images_and_question(registry, vlms):
    compose(registry, "llava", params="batch_size: 3")
    one = mc.run(inputs={"image": PICTURES[0], "prompt": QUESTION}, registry=registry)
    bundle = one._repr_mimebundle_()
    assert bundle["text/plain"] == one.output
    assert one.output.replace("<", "&lt;") in bundle["text/html"] and QUESTION in bundle["text/html"]
    [shown] = images_in(bundle["text/html"])
    assert np.array_equal(np.asarray(shown), np.asarray(PICTURES[0]))       # small images are shown as they are
    many = mc.run(inputs={"image": PICTURES, "prompt": [QUESTION] * 3}, registry=registry)
    bundle = many._repr_mimebundle_()
    assert bundle["text/plain"].splitlines() == [f"{i}. {r}" for i, r in enumerate(many.output, 1)]
    assert len(images_in(bundle["text/html"])) == 3


def test_the_renderer_thumbnails_big_images_and_leaves_other_values_alone():
    big = picture(5, size=(640, 480))
    bundle = render_reply("A gradient.", {"image": big, "prompt": "What is it?"})
    [thumb] = images_in(bundle["text/html"])
    assert thumb.size == (160, 120) and "A gradient." in bundle["text/html"] and "What is it?" in bundle["text/html"]
    messages = [user(PICTURES[0], "first"), assistant("ok"), {"role": "user", "content": "second <b>"}]
    bundle = render_reply("reply", {"messages": messages})
    assert "second &lt;b&gt;" in bundle["text/html"] and len(images_in(bundle["text/html"])) == 1
    assert render_reply({"label": "x"}, {"image": big}) is None
    assert render_reply(["a", "b"], {"image": [big, big], "prompt": ["x", "y", "z"]}) is None   # fields do not fit
    assert render_reply("a", {"prompt": "no image"}) is None


def test_mc_chat_talks_about_the_picture_of_inputs_over_several_turns(registry, vlms):
    mc.compose(component(tiny_vlms.REPOS["idefics3"][0], "idefics3",
                         inputs="image: ${input.image}\n  messages: ${input.messages}"), registry=registry)
    w = mc.chat("vlm", inputs={"image": PICTURES[1]}, registry=registry)
    first = w.send(QUESTION)
    assert first == raw(vlms["idefics3"], user(PICTURES[1], QUESTION))
    second = w.send("What colours?")
    assert second == raw(vlms["idefics3"], user(PICTURES[1], QUESTION), assistant(first), user("What colours?"))
    assert [m["role"] for m in w.messages] == ["user", "assistant", "user", "assistant"]


# ------------------------------------------------------------------------------------------------
# Bad input names the field, and changes nothing


@pytest.mark.parametrize("inputs, message", [
    ({"prompt": QUESTION}, "got no image: give `image:`"),
    ({"image": b"\x89PNG\r\n\x1a\n not really a png", "prompt": QUESTION}, "`image:`: the 25 bytes given is not a "
                                                                             "readable image"),
    ({"image": [PICTURES[0], "/nowhere/x.png"], "prompt": QUESTION}, "`image:` #2: image file not found"),
    ({"image": PICTURES, "prompt": [QUESTION, QUESTION]}, "`prompt:` is a list of 2 and `image:` a list of 3"),
    ({"image": PICTURES[0], "prompt": {"text": "hi"}}, "`prompt:` must be a text or a list of texts"),
])
def test_bad_prompt_inputs_are_input_errors_naming_the_field(registry, vlms, inputs, message):
    compose(registry, "idefics3")
    before = registry_state(registry)
    with pytest.raises(InputError, match=re.escape(message)):
        mc.run(inputs={"image": None, "prompt": None, **inputs}, registry=registry)
    assert registry_state(registry) == before


@pytest.mark.parametrize("messages, message", [
    ("describe this", "`messages:` must be a list of mappings with `role` and `content`"),
    ([{"content": "hi"}], "message #1 of `messages:` must be a mapping with `role` and `content`"),
    ([{"role": "user", "content": [{"type": "video", "video": "x.mp4"}]}], "message #1 of `messages:`, part #1 is"),
    ([{"role": "user", "content": [{"type": "image", "image": "/nowhere/x.png"}]}],
     "message #1 of `messages:`, part #1: image file not found"),
    ([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
     "an image part without an image"),
    ([{"role": "user", "content": "no picture here"}], "got no image"),
])
def test_bad_messages_are_input_errors_naming_the_message_and_part(registry, vlms, messages, message):
    compose(registry, "idefics3", inputs="messages: ${input.messages}")
    before = registry_state(registry)
    with pytest.raises(InputError, match=re.escape(message)):
        mc.run(inputs={"messages": messages}, registry=registry)
    assert registry_state(registry) == before


def test_a_prompt_over_max_input_length_or_the_positions_is_refused_before_generating(registry, vlms):
    compose(registry, "idefics3", params="max_input_length: 10")
    with pytest.raises(InputError, match=r"the conversation \(chat template and image tokens included\) has \d+ "
                                         r"tokens, more than `max_input_length: 10`"):
        ask(registry, PICTURES[0], QUESTION)
    compose(registry, "idefics3", tokens=600)
    with pytest.raises(InputError, match="more than the 512 this model takes"):
        ask(registry, PICTURES[0], QUESTION)


def test_a_text_only_model_or_a_wrong_architecture_is_a_load_error(registry, models, vlms):
    with pytest.raises(ModelLoadError, match=re.escape("`gpt2` is a `llama` model, not a vision-language model")):
        mc.compose(component("gpt2"), registry=registry)
    with pytest.raises(ModelLoadError, match=re.escape("`architecture: qwen2-vl` but `llava-hf/llava-1.5-7b-hf` is "
                                                       "a `llava` model (expected model_type `qwen2_vl`)")):
        mc.compose(component(tiny_vlms.REPOS["llava"][0], "qwen2-vl"), registry=registry)
    assert registry.snapshot() == []


def test_qwen2_vl_loads_where_torchvision_is_and_says_what_is_missing_where_it_is_not(registry, vlms, hub_cache,
                                                                                      tmp_path):
    folder = tiny_vlms.build_qwen2_vl(tmp_path / "tiny-qwen2-vl")
    place_in_hub_cache(hub_cache, "Qwen/Qwen2-VL-2B-Instruct", folder)
    text = component("Qwen/Qwen2-VL-2B-Instruct", "qwen2-vl")
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(ModelLoadError) as info:
            mc.compose(text, registry=registry)
        assert "could not load the processor of `Qwen/Qwen2-VL-2B-Instruct`" in str(info.value)
        assert "Torchvision" in str(info.value) and "%pip install torchvision" in str(info.value)
        assert registry.snapshot() == []
        return
    mc.compose(text, registry=registry)
    assert ask(registry, PICTURES[0], QUESTION) == raw(folder, user(PICTURES[0], QUESTION))


def test_a_user_error_from_the_renderer_path_is_never_raised(vlms):
    assert render_reply("x", {"image": b"not an image", "prompt": "q"}) is None
    with pytest.raises(UserError):
        conversations_of({"image": b"not an image", "prompt": "q"})


# ------------------------------------------------------------------------------------------------
# vLLM (CUDA only: here its settings and what it is handed)


def test_vllm_is_handed_the_processors_template_text_and_the_images_in_order(vlms):
    processor, _ = reference(vlms["idefics3"])
    conversation = conversations_of({"messages": [user(PICTURES[0], QUESTION), assistant("A gradient."),
                                                  user(PICTURES[1], "And this one?")]})[0][0]
    handed = vision_prompt(processor, conversation)
    assert handed["prompt"] == ("<|im_start|>User:<image>What is in the picture?<end_of_utterance>\nAssistant: "
                                "A gradient.<end_of_utterance>\nUser:<image>And this one?<end_of_utterance>\n"
                                "Assistant:")
    assert [np.asarray(im).tolist() for im in handed["multi_modal_data"]["image"]] == \
        [np.asarray(p).tolist() for p in PICTURES[:2]]
    llava, _ = reference(vlms["llava"])
    handed = vision_prompt(llava, conversations_of({"image": PICTURES[2], "prompt": QUESTION})[0][0])
    assert handed["prompt"] == "USER: <image>\nWhat is in the picture? ASSISTANT:"
    own = vision_prompt(llava, conversation, template="{% for m in messages %}[{{ m['role'] }}]{% endfor %}")
    assert own["prompt"] == "[user][assistant][user]"


def test_vllm_engine_and_sampling_settings_map_as_for_chat():
    settings = mc.read_config("""
component:
  task: image-text-to-text
  driver: vllm
  model: Qwen/Qwen2-VL-7B-Instruct
  precision: bfloat16
  options: {max_model_len: 4096, limit_mm_per_prompt: {image: 2}}
""").components["default"].config
    from mc_jupyter.drivers.sources import resolve_source
    assert engine_args(settings, resolve_source(settings.model, settings.task), 1) == {
        "model": "Qwen/Qwen2-VL-7B-Instruct", "dtype": "bfloat16", "tensor_parallel_size": 1, "max_model_len": 4096,
        "limit_mm_per_prompt": {"image": 2}}
    params = VisionGenerationParams.read({"max_output_length": 64, "params": {"temperature": 0, "seed": 2},
                                          "stop_sequences": ["###"]})
    assert sampling_kwargs(params) == {"max_tokens": 64, "temperature": 0.0, "seed": 2, "stop": ["###"]}
    assert VllmImageTextToText.default_batch_size > 1000     # vLLM schedules a list itself
