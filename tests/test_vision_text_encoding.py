"""vision-text-encoding against plain transformers on a tiny SmolVLM (Idefics3): the hidden states of a prompt
with its images, per layer, batched or alone, the token types, the spec; bad input; the summary."""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import pytest
import torch
from PIL import Image

import mc_jupyter as mc
from mc_jupyter.display.vision_text_encoding import render_encodings
from mc_jupyter.errors import InputError
from tests import tiny_clip

TOLERANCE = 1e-5
RED, GREEN = Image.new("RGB", (48, 40), (200, 30, 30)), Image.new("RGB", (30, 60), (20, 200, 30))
PLAIN_TEMPLATE = ("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
                  "{% else %}[{{ c['text'] }}]{% endif %}{% endfor %}{% endfor %}")


@pytest.fixture(scope="session")
def smolvlm(hub_cache, tmp_path_factory):
    folder = tiny_clip.build_smolvlm(tmp_path_factory.mktemp("vlm") / "tiny-smolvlm")
    tiny_clip.place_in_hub_cache(hub_cache, tiny_clip.VLM_REPO, folder)
    return folder


@pytest.fixture(scope="module")
def raw(smolvlm):
    from transformers import AutoModel, AutoProcessor
    return AutoProcessor.from_pretrained(smolvlm), AutoModel.from_pretrained(smolvlm).eval()


def encoder(params: str = "", extra: str = "", batch: str = "") -> str:
    """A component in model-compose's shape: `components:`, `driver:`, the action's keys and `params:`."""
    return f"""
components:
  - id: encoder
    type: model
    task: vision-text-encoding
    driver: huggingface
    model: {tiny_clip.VLM_REPO}
    device: cpu{extra}
    action:
      text: ${{input.text}}
      images: ${{input.images}}
      frames: ${{input.frames}}{batch}
      params: {{{params}}}
"""


def encode(registry, text, images=None, frames=None):
    return mc.run("encoder", inputs={"text": text, "images": images, "frames": frames}, registry=registry).output


def raw_encoding(raw, text: str, images: List[Image.Image], layer: int = -1, add_special_tokens: bool = False,
                 max_length: Optional[int] = None, template: Optional[str] = None):
    """model-compose's call on plain transformers: the chat template's prompt, the processor, the model's
    hidden states at ``layer``; with transformers' token types asked for."""
    processor, model = raw
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                           add_generation_prompt=False, **({"chat_template": template} if template else {}))
    kwargs = dict(text=prompt, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens,
                  return_mm_token_type_ids=True)
    if max_length:
        kwargs.update(max_length=max_length, truncation=True)
    if images:
        kwargs["images"] = images
    inputs = processor(**kwargs)
    types = inputs.pop("mm_token_type_ids")[0].numpy() if images else np.zeros(inputs["input_ids"].shape[1], int)
    with torch.inference_mode():
        states = model(**inputs, output_hidden_states=True, return_dict=True).hidden_states
    return states[layer][0].numpy(), types, inputs["input_ids"][0]


def test_one_prompt_with_an_image_gives_the_models_last_hidden_states(registry, raw):
    mc.compose(encoder(), registry=registry)
    out = encode(registry, "What is this red thing?", RED)
    expected, types, ids = raw_encoding(raw, "What is this red thing?", [RED])
    assert isinstance(out["hidden_states"], np.ndarray) and out["hidden_states"].dtype == np.float32
    assert out["hidden_states"].shape == expected.shape == (len(ids), 32)
    assert np.allclose(out["hidden_states"], expected, atol=TOLERANCE)
    assert np.array_equal(out["token_types"], types)
    image_tokens = (ids == raw[0].image_token_id).numpy()
    assert image_tokens.sum() == 5 * 4                               # 4 tiles and the whole image, 4 tokens each
    assert (out["token_types"][image_tokens] == 1).all() and (out["token_types"][:3] == 0).all()
    assert out["spec"] == {"hidden_size": 32, "dtype": "float32", "layer": -1, "add_special_tokens": False,
                           "max_length": None}


@pytest.mark.parametrize("layer", [0, 1, -2])
def test_the_layer_picks_the_hidden_states(registry, raw, layer):
    mc.compose(encoder(f"layer: {layer}"), registry=registry)
    out = encode(registry, "Two colours", [RED, GREEN])
    assert np.allclose(out["hidden_states"], raw_encoding(raw, "Two colours", [RED, GREEN], layer)[0], atol=TOLERANCE)
    assert out["spec"]["layer"] == layer


def test_a_batch_gives_each_prompt_what_it_gives_alone(registry, raw):
    texts = ["What is this red thing?", "Hi", "No picture here, only words"]
    images = [[RED], [RED, GREEN], []]
    mc.compose(encoder(batch="\n      batch_size: 3"), registry=registry)
    batched = encode(registry, texts, images)
    assert isinstance(batched, list) and len(batched) == 3
    for out, text, group in zip(batched, texts, images):
        expected, types, _ = raw_encoding(raw, text, group)
        assert out["hidden_states"].shape == expected.shape
        assert np.allclose(out["hidden_states"], expected, atol=TOLERANCE)
        assert np.array_equal(out["token_types"], types)
    assert not batched[2]["token_types"].any()                      # words only


def test_special_tokens_and_max_length_reach_the_processor(registry, raw):
    mc.compose(encoder("add_special_tokens: true, max_length: 6"), registry=registry)
    out = encode(registry, "The quick brown fox jumps over the lazy dog.")
    expected, _, ids = raw_encoding(raw, "The quick brown fox jumps over the lazy dog.", [], add_special_tokens=True,
                                    max_length=6)
    assert len(ids) == 6 and int(ids[0]) == raw[0].tokenizer.bos_token_id
    assert np.allclose(out["hidden_states"], expected, atol=TOLERANCE)
    assert out["spec"]["add_special_tokens"] is True and out["spec"]["max_length"] == 6


# model-compose's vision-text-encoding component has `chat_template:`
def test_the_components_chat_template_writes_the_prompt(registry, raw):
    template = PLAIN_TEMPLATE.replace("'", "''")
    mc.compose(encoder(extra=f"\n    chat_template: '{template}'"), registry=registry)
    out = encode(registry, "a red square", RED)
    expected, _, ids = raw_encoding(raw, "a red square", [RED], template=PLAIN_TEMPLATE)
    tokens = raw[0].tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "<fake_token_around_image>" and tokens[-1] == "]"   # no `User:`, no end of utterance
    assert np.allclose(out["hidden_states"], expected, atol=TOLERANCE)


def test_bad_input_names_the_field_and_the_fix(registry, raw):
    mc.compose(encoder(), registry=registry)
    with pytest.raises(InputError, match=r"vision-text-encoding got no text: give `text:`"):
        encode(registry, None)
    with pytest.raises(InputError, match=r"`images` must hold one list per text \(2 texts\)"):
        encode(registry, ["one", "two"], [RED, GREEN])
    with pytest.raises(InputError, match=r"`images\[1\]\[0\]`: cannot read an image from 7 \(a int\)"):
        encode(registry, ["one", "two"], [[RED], [7]])
    with pytest.raises(InputError, match=r"`text\[1\]` must be a text, not a int"):
        encode(registry, ["one", 2])
    with pytest.raises(InputError, match=r"`frames` need the model's video processor"):
        encode(registry, "a clip", None, frames=[RED, GREEN])
    mc.compose(encoder("layer: 9"), registry=registry)
    with pytest.raises(InputError, match=r"(?s)`layer: 9` is out of range: this model has 3 hidden states .*"
                                         r"Give a layer from -3 to 2"):
        encode(registry, "hello")


def test_the_summary_says_shape_dtype_layer_and_token_kinds(registry, raw):
    mc.compose(encoder(), registry=registry)
    one = encode(registry, "What is this red thing?", RED)
    bundle = render_encodings(one, {"text": "What is this red thing?"})
    tokens, pictured = one["hidden_states"].shape[0], int(one["token_types"].sum())
    assert bundle["text/plain"] == (f"hidden states {tokens} x 32 (float32), layer -1 · tokens: {tokens - pictured} "
                                    f"text, {pictured} image")
    assert "What is this red thing?" in bundle["text/html"]
    two = encode(registry, ["a", "b"], [[], [GREEN]])
    lines = render_encodings(two, {"text": ["a", "b"]})["text/plain"].splitlines()
    assert [line[:3] for line in lines] == ["1. ", "2. "] and "image" not in lines[0] and "image" in lines[1]
    assert render_encodings({"embedding": [0.1]}, {}) is None and render_encodings("text", {}) is None
