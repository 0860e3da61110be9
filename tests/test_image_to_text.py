"""image-to-text (BLIP, GIT, ViT-GPT2) against plain transformers on the same tiny models and images."""

import base64
import io
import re
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest
import torch
from PIL import Image

import mc_jupyter as mc
from mc_jupyter.display.result import RunResult
from mc_jupyter.drivers.hf_image_to_text import ARCHITECTURE_CLASSES
from mc_jupyter.catalog import ARCHITECTURES
from mc_jupyter.errors import ConfigError, InputError, ModelLoadError, UserError
from tests import tiny_captioners
from tests.conftest import run_cell
from tests.test_spec_blocks import BLOCKS, registry_state

ARCHS = tuple(tiny_captioners.BUILDERS)
TOKENS = 8


@pytest.fixture(scope="session")
def captioners(hub_cache, tmp_path_factory):
    """The tiny captioners' local folders; the hub cache holds them under the real repo ids."""
    return tiny_captioners.build_all(tmp_path_factory.mktemp("captioners"), hub_cache)


def picture(seed: int, size=(48, 40)) -> Image.Image:
    """A smooth colour gradient, different for each seed."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 256, (2, 2, 3)).astype(float)
    y, x = np.linspace(0, 1, size[1])[:, None, None], np.linspace(0, 1, size[0])[None, :, None]
    top, bottom = corners[0, 0] * (1 - x) + corners[0, 1] * x, corners[1, 0] * (1 - x) + corners[1, 1] * x
    return Image.fromarray((top * (1 - y) + bottom * y).astype(np.uint8))


PICTURES = [picture(seed) for seed in range(3)]


def component(architecture: Optional[str], model: str, image: str = "${input.image as image}",
              params: str = f"max_output_length: {TOKENS}, temperature: 0", extra: str = "") -> str:
    arch = f"\n  architecture: {architecture}" if architecture else ""
    return f"""
component:
  type: model
  task: image-to-text
  model: {model}{arch}
  device: cpu
  image: {image}
  prompt: ${{input.prompt | ""}}{extra}
  params: {{{params}}}
"""


def compose_captioner(registry, architecture: str, **kwargs) -> None:
    mc.compose(component(architecture, tiny_captioners.REPOS[architecture][0], **kwargs), registry=registry)


def caption(registry, image, prompt: str = ""):
    return mc.run(inputs={"image": image, "prompt": prompt}, registry=registry).output


def raw_captions(folder: Path, architecture: str, images: List[Image.Image], prompt: Optional[str] = None,
                 seed: Optional[int] = None, **generate_kwargs) -> List[str]:
    """What plain transformers gives, as each model card shows it: processor, generate, decode the new tokens."""
    from transformers import (AutoProcessor, AutoTokenizer, BlipForConditionalGeneration, GitForCausalLM,
                              ViTImageProcessor, VisionEncoderDecoderModel)

    generate_kwargs = {"max_new_tokens": TOKENS, "do_sample": False, **generate_kwargs}
    if architecture == "blip":
        processor, model = AutoProcessor.from_pretrained(folder), BlipForConditionalGeneration.from_pretrained(folder)
        inputs = processor(images=images, text=[prompt] * len(images) if prompt else None, return_tensors="pt")
        prefix = inputs["input_ids"].shape[1] - 1 if prompt else 1   # generate drops [SEP], keeps [DEC] + prompt
    elif architecture == "git":
        processor, model = AutoProcessor.from_pretrained(folder), GitForCausalLM.from_pretrained(folder)
        inputs = {"pixel_values": processor(images=images, return_tensors="pt").pixel_values}
        prefix = 1
        if prompt:
            ids = [processor.tokenizer.cls_token_id] + processor(text=prompt, add_special_tokens=False).input_ids
            inputs["input_ids"], prefix = torch.tensor([ids] * len(images)), len(ids)
    else:
        processor, model = ViTImageProcessor.from_pretrained(folder), VisionEncoderDecoderModel.from_pretrained(folder)
        inputs, prefix = {"pixel_values": processor(images=images, return_tensors="pt").pixel_values}, 1
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if seed is not None:
        torch.manual_seed(seed)
    out = model.eval().generate(**inputs, **generate_kwargs)
    return tokenizer.batch_decode(out[:, prefix:], skip_special_tokens=True)


# ------------------------------------------------------------------------------------------------
# Captions equal plain transformers


def test_every_architecture_of_the_table_has_a_model_class():
    assert tuple(ARCHITECTURE_CLASSES) == ARCHITECTURES["image-to-text"] == ARCHS


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHS)
def test_a_greedy_caption_equals_raw_generate_and_holds_only_the_new_text(architecture, registry, captioners):
    compose_captioner(registry, architecture)
    out = caption(registry, PICTURES[0])
    assert isinstance(out, str) and out.strip()
    assert out == raw_captions(captioners[architecture], architecture, PICTURES[:1])[0]


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHS)
def test_the_architecture_is_inferred_from_the_model_config(architecture, registry, captioners):
    mc.compose(component(None, str(captioners[architecture])), registry=registry)
    assert registry.entries["default"].driver.architecture == architecture
    assert caption(registry, PICTURES[1]) == raw_captions(captioners[architecture], architecture, PICTURES[1:2])[0]


@pytest.mark.parametrize("architecture", ["blip", "git"])
def test_a_prompt_conditions_the_caption_and_is_not_repeated_in_it(architecture, registry, captioners):
    compose_captioner(registry, architecture)
    plain, prompted = caption(registry, PICTURES[0]), caption(registry, PICTURES[0], "a picture of")
    assert prompted == raw_captions(captioners[architecture], architecture, PICTURES[:1], "a picture of")[0]
    assert prompted != plain and not prompted.startswith("a picture of")


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHS)
def test_a_list_of_images_runs_in_batches_and_equals_one_by_one(architecture, registry, captioners):
    compose_captioner(registry, architecture, image="${input.image}",
                      params=f"max_output_length: {TOKENS}, temperature: 0, batch_size: 2")
    batched = caption(registry, PICTURES)
    singles = [caption(registry, p) for p in PICTURES]
    assert batched == singles == [raw_captions(captioners[architecture], architecture, [p])[0] for p in PICTURES]
    assert len(set(batched)) > 1, "the tiny model should caption different pictures differently"


def test_sampling_parameters_reach_generate_and_a_seed_makes_them_repeatable(registry, captioners):
    compose_captioner(registry, "blip", params=f"max_output_length: {TOKENS}, temperature: 1.3, top_k: 50, "
                                               f"top_p: 0.9, repetition_penalty: 1.2, seed: 7")
    a, b = caption(registry, PICTURES[0]), caption(registry, PICTURES[0])
    raw = raw_captions(captioners["blip"], "blip", PICTURES[:1], seed=7, do_sample=True, temperature=1.3,
                       top_k=50, top_p=0.9, repetition_penalty=1.2)[0]
    assert a == b == raw


def test_several_return_sequences_give_a_list_of_captions_per_image(registry, captioners):
    compose_captioner(registry, "git", image="${input.image}",
                      params=f"max_output_length: {TOKENS}, temperature: 1.0, num_return_sequences: 2, seed: 3")
    out = caption(registry, PICTURES[:2])
    assert [len(captions) for captions in out] == [2, 2]
    assert all(isinstance(c, str) for captions in out for c in captions)


def test_without_max_output_length_a_caption_stops_at_50_tokens(registry, captioners):
    compose_captioner(registry, "vit-gpt2", params="temperature: 0")
    out = caption(registry, PICTURES[0])
    assert out == raw_captions(captioners["vit-gpt2"], "vit-gpt2", PICTURES[:1], max_new_tokens=50)[0]


def test_precision_is_honoured(registry, captioners):
    compose_captioner(registry, "git", extra="\n  precision: bfloat16")
    [row] = registry.snapshot()
    assert row["dtype"] == "bfloat16" and row["device"] == "cpu"
    assert next(registry.entries["default"].driver.model.parameters()).dtype == torch.bfloat16
    assert isinstance(caption(registry, PICTURES[0]), str)


# ------------------------------------------------------------------------------------------------
# The spec's block, and the forms an image may take


def test_the_spec_block_runs_with_a_pil_image_and_with_a_file_path(registry, captioners, tmp_path):
    mc.compose(BLOCKS["8.3.5#1"], registry=registry)
    [row] = registry.snapshot()
    assert (row["task"], row["model"]) == ("image-to-text", "Salesforce/blip-image-captioning-large")
    path = tmp_path / "picture.png"
    PICTURES[2].save(path)
    from_pil = mc.run(inputs={"image": PICTURES[2], "prompt": ""}, registry=registry).output
    from_path = mc.run(inputs={"image": str(path), "prompt": ""}, registry=registry).output
    raw = raw_captions(captioners["blip"], "blip", PICTURES[2:3], max_new_tokens=50)[0]
    assert from_pil == from_path == raw


def image_forms(image: Image.Image, folder: Path) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    png = buffer.getvalue()
    (folder / "picture.png").write_bytes(png)
    text = base64.b64encode(png).decode()
    return {"pil": image, "numpy": np.asarray(image), "bytes": png, "path": str(folder / "picture.png"),
            "base64": text, "data uri": "data:image/png;base64," + text}


def test_as_image_reads_every_form_of_image_to_the_same_caption(registry, captioners, tmp_path):
    compose_captioner(registry, "blip")
    expected = caption(registry, PICTURES[0])
    forms = image_forms(PICTURES[0], tmp_path)
    bare_base64 = forms.pop("base64")
    captions = {name: caption(registry, value) for name, value in forms.items()}
    assert captions == {name: expected for name in forms}
    record = mc.run(inputs={"image": forms["path"], "prompt": ""}, registry=registry).outcome.last
    assert np.array_equal(np.asarray(record.images[0]), np.asarray(PICTURES[0]))   # kept for the display
    compose_captioner(registry, "blip", image="${input.image as image;base64}")   # dialect §4: bare base64
    assert caption(registry, bare_base64) == expected


def test_a_list_input_may_mix_image_forms(registry, captioners, tmp_path):
    compose_captioner(registry, "git", image="${input.image}")
    forms = image_forms(PICTURES[1], tmp_path)
    out = caption(registry, [forms["path"], forms["bytes"], forms["numpy"], forms["data uri"]])
    assert out == [caption(registry, PICTURES[1])] * 4


def test_run_takes_an_image_from_a_python_variable_and_shows_it_with_its_caption(ip, captioners):
    run_cell(ip, component("blip", tiny_captioners.REPOS["blip"][0]).replace("\ncomponent:", "%%compose\ncomponent:"))
    ip.user_ns["photo"] = PICTURES[0]
    result = run_cell(ip, "%%run\nimage: $photo\nprompt: ''")
    assert isinstance(result, RunResult)
    bundle = result._repr_mimebundle_()
    assert result.output and result.output in bundle["text/plain"]
    assert bundle["text/html"].count("<img ") == 1 and "<figcaption" in bundle["text/html"]


# ------------------------------------------------------------------------------------------------
# Errors say what is wrong and leave the registry as it was


def test_a_corrupt_image_is_an_input_error_and_the_model_stays_loaded(registry, captioners):
    compose_captioner(registry, "blip")
    before = registry_state(registry)
    with pytest.raises(UserError, match="not a readable image"):
        caption(registry, b"\x89PNG\r\n\x1a\n not really a png")
    assert registry_state(registry) == before


def test_an_unknown_architecture_is_a_config_error_at_compose(registry, captioners):
    with pytest.raises(ConfigError, match=re.escape("unknown architecture `vit-bert`")) as failure:
        mc.compose(component("vit-bert", tiny_captioners.REPOS["blip"][0]), registry=registry)
    assert "(did you mean `vit-gpt2`?)" in str(failure.value)
    assert "Valid architectures: `blip`, `git`, `vit-gpt2`." in str(failure.value)
    assert registry.snapshot() == []


def test_a_text_only_model_is_a_load_error_naming_what_was_found_and_expected(registry, models, captioners):
    with pytest.raises(ModelLoadError) as failure:
        mc.compose(component(None, "gpt2"), registry=registry)
    message = str(failure.value)
    assert "`gpt2` is a `llama` model, not an image captioner" in message
    assert "blip (model_type `blip`), git (model_type `git`), vit-gpt2 (model_type `vision-encoder-decoder`)" in message
    assert registry.snapshot() == []


def test_an_architecture_that_does_not_match_the_model_is_a_load_error(registry, captioners):
    with pytest.raises(ModelLoadError, match=re.escape("`architecture: git` but `Salesforce/blip-image-captioning-"
                                                       "large` is a `blip` model (expected model_type `git`).\n"
                                                       "  Write `architecture: blip`, or leave it out")):
        mc.compose(component("git", tiny_captioners.REPOS["blip"][0]), registry=registry)
    assert registry.snapshot() == []


def test_a_list_of_prompts_is_an_input_error(registry, captioners):
    compose_captioner(registry, "git", extra="")
    with pytest.raises(InputError, match="one `prompt:` text for every image"):
        mc.run(inputs={"image": PICTURES[0], "prompt": ["a", "b"]}, registry=registry)
