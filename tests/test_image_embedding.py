"""image-embedding (CLIP, SigLIP, DINOv2) and CLIP-family text-embedding against plain transformers on the same
tiny models: the vectors, the shared text-image space, batching, pooling; the map with thumbnails."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

import mc_jupyter as mc
from mc_jupyter.display import renderers
from mc_jupyter.display.image_embedding import render_image_embeddings
from mc_jupyter.display.result import WIDGET_VIEW, RunResult
from mc_jupyter.errors import InputError, ModelLoadError
from mc_jupyter.widgets import embedding_map
from tests import tiny_clip
from tests.test_spec_blocks import registry_state

TOLERANCE = 1e-5
COLOURS = [(230, 20, 20), (20, 200, 40), (30, 60, 220), (220, 40, 200)]   # red, green, blue, magenta: none in viridis
TEXTS = ["a red square", "a green field", "blue water"]


@pytest.fixture(scope="session")
def embedders(hub_cache, tmp_path_factory):
    """The tiny embedders' local folders; the hub cache holds them under the real repo ids."""
    return tiny_clip.build_all(tmp_path_factory.mktemp("embedders"), hub_cache)


def picture(colour, seed: int, size=(200, 180)) -> Image.Image:
    """A square of one colour with a little seeded noise (the same colour, different pixels per seed)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(colour, float) + rng.normal(0, 6, (size[1], size[0], 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


PICTURES = [picture(c, i) for i, c in enumerate(COLOURS)]


def image_component(architecture, params: str = "", cid: str = "images", batch: str = "") -> str:
    arch = f"\n    architecture: {architecture}" if architecture else ""
    model = tiny_clip.REPOS[architecture or "clip"]
    return f"""
  - id: {cid}
    type: model
    task: image-embedding
    driver: huggingface
    model: {model}{arch}
    device: cpu
    action:
      image: ${{input.image as image}}{batch}
      params: {{{params}}}
"""


def text_component(architecture: str, cid: str = "texts", arch_line: bool = True) -> str:
    arch = f"\n    architecture: {architecture}" if arch_line else ""
    return f"""
  - id: {cid}
    type: model
    task: text-embedding
    driver: huggingface
    model: {tiny_clip.REPOS[architecture]}{arch}
    device: cpu
    action:
      text: ${{input.text}}
"""


def compose(registry, *components: str) -> None:
    mc.compose("components:" + "".join(components), registry=registry)


def run(registry, component: str, **inputs):
    return mc.run(component, inputs=inputs, registry=registry).output


def vectors(output) -> np.ndarray:
    return np.asarray([v["embedding"] for v in (output if isinstance(output, list) else [output])])


def raw_model(folder: Path, architecture: str):
    from transformers import CLIPModel, Dinov2Model, SiglipModel
    return {"clip": CLIPModel, "siglip": SiglipModel, "dinov2": Dinov2Model}[architecture].from_pretrained(folder).eval()


def raw_image_features(folder: Path, architecture: str, images: List[Image.Image]) -> torch.Tensor:
    """The model card's call: the processor's pixels, ``get_image_features``, L2-normalised."""
    from transformers import AutoProcessor
    inputs = AutoProcessor.from_pretrained(folder)(images=images, return_tensors="pt")
    with torch.inference_mode():
        features = raw_model(folder, architecture).get_image_features(**inputs).pooler_output
    return torch.nn.functional.normalize(features, dim=-1)


def raw_text_features(folder: Path, architecture: str, texts: List[str]) -> torch.Tensor:
    from transformers import AutoTokenizer
    padding = "max_length" if architecture == "siglip" else True   # SigLIP's card: padding="max_length"
    inputs = AutoTokenizer.from_pretrained(folder)(texts, padding=padding, return_tensors="pt")
    with torch.inference_mode():
        features = raw_model(folder, architecture).get_text_features(**inputs).pooler_output
    return torch.nn.functional.normalize(features, dim=-1)


@pytest.mark.parametrize("architecture", ["clip", "siglip"])
def test_image_vectors_are_the_models_projected_image_features(registry, embedders, architecture):
    compose(registry, image_component(architecture))
    output = run(registry, "images", image=PICTURES)
    expected = raw_image_features(embedders[architecture], architecture, PICTURES)
    assert [v["dimensions"] for v in output] == [expected.shape[1]] * len(PICTURES)
    assert expected.shape[1] == (24 if architecture == "clip" else 32)     # CLIP's projection_dim; SigLIP's width
    assert np.allclose(vectors(output), expected.numpy(), atol=TOLERANCE)
    assert np.allclose(np.linalg.norm(vectors(output), axis=1), 1, atol=TOLERANCE)
    one = run(registry, "images", image=PICTURES[2])                         # one image: one result, not a list
    assert isinstance(one, dict) and np.allclose(one["embedding"], expected[2].numpy(), atol=TOLERANCE)


@pytest.mark.parametrize("architecture", ["clip", "siglip"])
def test_text_vectors_lie_in_the_images_space_the_models_own_logits_say_so(registry, embedders, architecture):
    compose(registry, image_component(architecture), text_component(architecture))
    texts = vectors(run(registry, "texts", text=TEXTS))
    images = vectors(run(registry, "images", image=PICTURES))
    folder = embedders[architecture]
    assert np.allclose(texts, raw_text_features(folder, architecture, TEXTS).numpy(), atol=TOLERANCE)
    # the raw model's own image-text logits are the cosines of these vectors, scaled (SigLIP: plus its bias)
    from transformers import AutoProcessor
    processor = AutoProcessor.from_pretrained(folder)
    padding = "max_length" if architecture == "siglip" else True
    model = raw_model(folder, architecture)
    with torch.inference_mode():
        out = model(**processor(text=TEXTS, images=PICTURES, padding=padding, return_tensors="pt"))
    bias = model.logit_bias.item() if architecture == "siglip" else 0.0
    expected = (out.logits_per_image.numpy() - bias) / model.logit_scale.exp().item()
    assert expected.shape == (len(PICTURES), len(TEXTS))
    assert np.allclose(images @ texts.T, expected, atol=TOLERANCE)


def test_text_embedding_reads_a_clip_config_without_architecture_and_ignores_pooling(registry, embedders):
    compose(registry, text_component("clip", arch_line=False))
    plain = vectors(run(registry, "texts", text=TEXTS))
    assert np.allclose(plain, raw_text_features(embedders["clip"], "clip", TEXTS).numpy(), atol=TOLERANCE)
    mc.compose(f"""
component:
  id: texts
  type: model
  task: text-embedding
  model: {tiny_clip.REPOS['clip']}
  architecture: clip
  text: ${{input.text}}
  params: {{pooling: max, normalize: false}}
""", registry=registry)
    raw = vectors(run(registry, "texts", text=TEXTS))
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1)                  # not normalised ...
    assert np.allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), plain, atol=TOLERANCE)   # ... same direction


@pytest.mark.parametrize("architecture", ["clip", "siglip"])
def test_batches_give_the_vectors_one_by_one_gives(registry, embedders, architecture):
    compose(registry, image_component(architecture, batch="\n      batch_size: 3"), text_component(architecture))
    batched = vectors(run(registry, "images", image=PICTURES))
    alone = np.vstack([vectors(run(registry, "images", image=p)) for p in PICTURES])
    assert np.allclose(batched, alone, atol=TOLERANCE)
    texts = ["a cat", "a much longer sentence about the sea and the wind", "sky"]
    together = vectors(run(registry, "texts", text=texts))
    assert np.allclose(together, np.vstack([vectors(run(registry, "texts", text=t)) for t in texts]), atol=TOLERANCE)


def dinov2_hidden(folder: Path, images) -> torch.Tensor:
    from transformers import AutoImageProcessor
    inputs = AutoImageProcessor.from_pretrained(folder)(images=images, return_tensors="pt")
    with torch.inference_mode():
        return raw_model(folder, "dinov2")(**inputs).last_hidden_state


@pytest.mark.parametrize("pooling", ["cls", "mean", "max", None])
def test_dinov2_pools_its_tokens_as_asked_cls_by_default(registry, embedders, pooling):
    params = f"pooling: {pooling}, normalize: false" if pooling else "normalize: false"
    compose(registry, image_component("dinov2", params))
    output = vectors(run(registry, "images", image=PICTURES))
    hidden = dinov2_hidden(embedders["dinov2"], PICTURES)
    expected = {"cls": hidden[:, 0], "mean": hidden.mean(dim=1), "max": hidden.max(dim=1).values,
                None: hidden[:, 0]}[pooling]
    assert output.shape == (len(PICTURES), 32)
    assert np.allclose(output, expected.numpy(), atol=TOLERANCE)


def test_dinov2_normalises_by_default_and_its_architecture_is_read_from_the_config(registry, embedders):
    compose(registry, image_component(None).replace(tiny_clip.REPOS["clip"], tiny_clip.REPOS["dinov2"]))
    output = vectors(run(registry, "images", image=PICTURES))
    expected = torch.nn.functional.normalize(dinov2_hidden(embedders["dinov2"], PICTURES)[:, 0], dim=-1)
    assert np.allclose(output, expected.numpy(), atol=TOLERANCE)


def test_a_clip_image_embedder_without_architecture_uses_the_projection(registry, embedders):
    compose(registry, image_component(None, "pooling: mean"))
    assert np.allclose(vectors(run(registry, "images", image=PICTURES)),
                       raw_image_features(embedders["clip"], "clip", PICTURES).numpy(), atol=TOLERANCE)


def test_bad_input_names_the_field_and_the_fix(registry, embedders):
    compose(registry, image_component("clip"))
    with pytest.raises(InputError, match=r"at `components\[0\]\.action\.image`: `\$\{input\.image as image\}`: "
                                         r"cannot read an image from 42"):
        run(registry, "images", image=[PICTURES[0], 42])
    mc.compose(f"""
component:
  id: images
  type: model
  task: image-embedding
  model: {tiny_clip.REPOS['clip']}
  image: ${{input.image}}
  params:
    pooling: ${{input.pooling}}
""", registry=registry)
    with pytest.raises(InputError, match=r"`image\[1\]`: cannot read an image from 42 \(a int\)"):
        run(registry, "images", image=[PICTURES[0], 42], pooling="cls")
    with pytest.raises(InputError, match=r"^`image`: image file not found: no/such/file.png"):
        run(registry, "images", image="no/such/file.png", pooling="cls")
    with pytest.raises(InputError, match=r"`pooling` must be one of cls, mean, max, not 'sum'"):
        run(registry, "images", image=PICTURES[0], pooling="sum")
    with pytest.raises(InputError, match=r"image-embedding got no image: give `image:`"):
        run(registry, "images", image=None, pooling="cls")


@pytest.mark.parametrize("task, architecture, repo", [("image-embedding", "siglip", "clip"),
                                                     ("image-embedding", "dinov2", "siglip"),
                                                     ("text-embedding", "siglip", "clip")])
def test_an_architecture_that_is_not_the_models_is_refused_before_loading(registry, embedders, task, architecture,
                                                                         repo):
    compose(registry, image_component("clip", cid="kept"))
    before = registry_state(registry)
    field = "image: ${input.image}" if task == "image-embedding" else "text: ${input.text}"
    with pytest.raises(ModelLoadError, match=rf"`architecture: {architecture}` but `{tiny_clip.REPOS[repo]}` is a "
                                             rf"`{repo}` model \(expected model_type `{architecture}`\)"):
        mc.compose(f"component:\n  id: wrong\n  type: model\n  task: {task}\n  model: {tiny_clip.REPOS[repo]}\n"
                   f"  architecture: {architecture}\n  {field}\n", registry=registry)
    assert registry_state(registry) == before


# ------------------------------------------------------------------------------------------------
# The map: thumbnails on the static PNG and in the widget, a text query in the same space


def decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def near_colour(image: Image.Image, colour, tolerance: int = 40) -> int:
    """How many of the image's pixels are within ``tolerance`` of ``colour`` in every channel."""
    pixels = np.asarray(image).astype(int)
    return int((np.abs(pixels - np.asarray(colour)).max(axis=-1) <= tolerance).sum())


def test_the_static_map_draws_each_image_as_a_thumbnail(registry, embedders):
    compose(registry, image_component("clip"))
    result = RunResult(mc.run("images", inputs={"image": PICTURES}, registry=registry).outcome)
    bundle = result._repr_mimebundle_()
    png = decode(bundle["image/png"])
    for colour in COLOURS:                      # every square's colour shows, in a thumbnail's worth of pixels
        assert near_colour(png, colour) >= 20 * 20, colour
    plain = bundle["text/plain"]
    assert plain.startswith(f"{len(PICTURES)} image embeddings of 24 dimensions; cosine similarity:")
    assert "#1 200x180" in plain
    assert 'src="data:image/png;base64,' in bundle["text/html"]


def test_images_given_as_files_are_labelled_by_their_names(registry, embedders, tmp_path):
    paths = []
    for name, image in zip(["red", "green", "blue", "magenta"], PICTURES):
        image.save(tmp_path / f"{name}.png")
        paths.append(str(tmp_path / f"{name}.png"))
    mc.compose(f"component:\n  id: images\n  type: model\n  task: image-embedding\n"
               f"  model: {tiny_clip.REPOS['clip']}\n  image: ${{input.image}}\n", registry=registry)
    outcome = mc.run("images", inputs={"image": paths}, registry=registry).outcome
    assert np.allclose(vectors(outcome.output), vectors(run(registry, "images", image=PICTURES)), atol=TOLERANCE)
    bundle = RunResult(outcome)._repr_mimebundle_()
    assert ["#1 red.png", "#2 green.png", "#3 blue.png", "#4 magenta.png"] == [
        line.strip().split("  ")[0] for line in bundle["text/plain"].splitlines()[1:]]
    assert near_colour(decode(bundle["image/png"]), COLOURS[3]) >= 20 * 20


def test_without_the_images_the_thumbnails_are_left_out_and_other_values_are_not_drawn(embedders):
    rng = np.random.default_rng(0)
    value = [{"embedding": list(rng.normal(size=16)), "dimensions": 16} for _ in range(3)]
    png = decode(render_image_embeddings(value, {"image": ["a/missing/path.png"] * 3})["image/png"])
    assert all(near_colour(png, c) < 20 for c in COLOURS)
    assert render_image_embeddings(value[0], {"image": PICTURES[0]}) is None       # one vector: the default view
    assert render_image_embeddings("a caption", {}) is None
    assert render_image_embeddings([{"label": "x", "score": 1.0}], {}) is None


def test_the_widget_shows_thumbnails_and_a_text_query_ranks_the_images_by_cosine(registry, embedders):
    compose(registry, image_component("clip"), text_component("clip"))
    embedding_map.install()
    result = RunResult(mc.run("images", inputs={"image": PICTURES}, registry=registry).outcome, registry=registry)
    m = result.widget
    points = m.widget.points
    assert [p["text"] for p in points] == [f"#{i + 1} 200x180" for i in range(len(PICTURES))]
    thumbs = [decode(p["image"].split(",", 1)[1]) for p in points]
    assert [t.size for t in thumbs] == [(embedding_map.THUMBNAIL, 144)] * 4       # hover: a bigger picture
    assert [near_colour(t, c) > 0.8 * t.size[0] * t.size[1] for t, c in zip(thumbs, COLOURS)] == [True] * 4
    assert m.widget.can_query and m.text_component == "texts"                    # found: the same model's texts
    ranked = m.query("a red square", k=4)
    images = vectors(result.output)
    text = vectors(run(registry, "texts", text="a red square"))[0]
    cosines = images @ text / np.linalg.norm(images, axis=1) / np.linalg.norm(text)
    assert [label for label, _ in ranked] == [points[i]["text"] for i in np.argsort(-cosines)]
    assert [s for _, s in ranked] == pytest.approx(sorted(cosines, reverse=True), abs=1e-5)
    assert result._repr_mimebundle_()[WIDGET_VIEW]["model_id"] == m.widget.model_id


def test_a_query_names_its_text_component_or_says_why_it_cannot(registry, embedders):
    compose(registry, image_component("clip"), text_component("siglip", cid="other"))
    m = embedding_map.view(mc.run("images", inputs={"image": PICTURES}, registry=registry).outcome, registry)
    assert not m.widget.can_query and "text_component=" in m.widget.query_hint
    with pytest.raises(ValueError, match="this map cannot embed a query"):
        m.query("a red square")
    compose(registry, image_component("clip"), text_component("clip", cid="clip_texts"))
    m = embedding_map.view(mc.run("images", inputs={"image": PICTURES}, registry=registry).outcome, registry)
    ranked = m.query("blue water", text_component="clip_texts")
    assert len(ranked) == 4 and m.widget.query_text == "blue water"
