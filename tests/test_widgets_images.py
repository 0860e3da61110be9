"""The gallery of generated images (a tiny SDXL pipeline) and the upscaling slider (a tiny Real-ESRGAN):
their Python side, the images they hold, and their MIME bundles (widget view beside the static picture)."""

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mc_jupyter as mc
from mc_jupyter.display.result import WIDGET_VIEW, RunResult
from mc_jupyter.widgets import images as image_widgets
from tests import tiny_diffusion, tiny_upscalers

SIZE, STEPS = 64, 2


def decode_src(src: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


@pytest.fixture(scope="module")
def pipelines(hub_cache, tmp_path_factory):
    return tiny_diffusion.build_all(tmp_path_factory.mktemp("diffusion"), hub_cache)


def generated(registry, seed_line: str = ", seed: 7") -> RunResult:
    image_widgets.install()
    mc.compose(f"""
component:
  id: painter
  type: model
  task: image-generation
  architecture: sdxl
  model: {tiny_diffusion.REPOS['sdxl']}
  device: cpu
  prompt: ${{input.prompt}}
  params: {{width: {SIZE}, height: {SIZE}, num_inference_steps: {STEPS}{seed_line}}}
""", registry=registry)
    outcome = mc.run("painter", inputs={"prompt": "a red fox in the snow"}, registry=registry).outcome
    return RunResult(outcome, registry=registry)


def test_again_draws_the_next_seed_with_the_same_component(registry, pipelines):
    result = generated(registry)
    gallery = result.widget
    assert isinstance(gallery, image_widgets.Gallery) and gallery.seeds == [7]
    first = np.asarray(gallery.images[0], dtype=int)
    [second] = gallery.again()
    assert gallery.seeds == [7, 8] and len(gallery.images) == 2
    assert second.size == (SIZE, SIZE)
    assert np.abs(np.asarray(second, dtype=int) - first).mean() > 1       # another seed, another picture
    reference = mc.run("painter", inputs={"prompt": "a red fox in the snow"}, registry=registry)
    assert np.array_equal(np.asarray(reference.output), first)             # seed 7 again: the first image
    items = gallery.widget.items
    assert [i["seed"] for i in items] == [7, 8] and [(i["width"], i["height"]) for i in items] == [(SIZE, SIZE)] * 2
    assert np.array_equal(np.asarray(decode_src(items[1]["src"])), np.asarray(second.convert("RGB")))


def test_the_gallerys_button_message_adds_an_image_and_an_error_shows_in_the_widget(registry, pipelines):
    gallery = generated(registry).widget
    gallery._on_message(gallery.widget, {"type": "again"}, [])
    assert gallery.seeds == [7, 8] and not gallery.widget.busy and gallery.widget.error == ""
    registry_less = image_widgets.Gallery(gallery.images[:1], 7, None, None, "no registry to run the component in")
    with pytest.raises(ValueError, match="cannot draw again: no registry"):
        registry_less.again()


def test_a_gallery_bundle_holds_the_widget_view_and_the_static_images(registry, pipelines):
    result = generated(registry)
    bundle = result._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == result.widget.widget.model_id
    png = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert png.size == (SIZE, SIZE)
    assert bundle["text/plain"] == f"<image {SIZE}x{SIZE}>"


def test_without_a_seed_again_picks_one_and_counts_on_from_it(registry, pipelines):
    gallery = generated(registry, seed_line="").widget
    assert gallery.seeds == [None]
    gallery.again()
    gallery.again()
    assert isinstance(gallery.seeds[1], int) and gallery.seeds[2] == gallery.seeds[1] + 1


@pytest.fixture
def upscaler(tmp_path, monkeypatch):
    hub = Path(os.environ["HF_HOME"]) / "hub"
    weights = tiny_upscalers.build_all(tmp_path / "weights", hub)
    monkeypatch.setenv("MC_JUPYTER_WEIGHTS", str(weights["x4"].parent))
    monkeypatch.chdir(tmp_path)


def test_upscaling_shows_a_slider_between_the_input_and_the_output(registry, upscaler):
    image_widgets.install()
    mc.compose("component:\n  task: image-upscale\n  architecture: real-esrgan\n  model: RealESRGAN_x4plus\n"
               "  image: ${input.image as image}\n  params: {scale: 4, tile_size: 0}\n", registry=registry)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (13, 19, 3), dtype=np.uint8))
    result = RunResult(mc.run(inputs={"image": picture}, registry=registry).outcome, registry=registry)
    slider = result.widget
    assert isinstance(slider, image_widgets.UpscaleSlider)
    [(before, after)] = slider.pairs
    assert before.size == (19, 13) and after.size == (76, 52)
    [pair] = slider.widget.pairs
    assert pair["before_size"] == [19, 13] and pair["after_size"] == [76, 52]
    assert np.array_equal(np.asarray(decode_src(pair["before"])), np.asarray(picture))
    assert np.array_equal(np.asarray(decode_src(pair["after"])), np.asarray(result.output.convert("RGB")))
    slider.position = 1.7
    assert slider.widget.position == 1.0
    bundle = result._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == slider.widget.model_id
    composite = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert composite.size == (152, 52)                                     # the static before | after
    assert bundle["text/plain"] == "upscaled 19x13 -> 76x52"
