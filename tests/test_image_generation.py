"""image-generation through diffusers, against the raw pipelines on tiny SDXL, Flux and HunyuanDiT."""

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

import mc_jupyter as mc
from mc_jupyter.drivers.diffusers_generation import PIPELINES
from mc_jupyter.catalog import ARCHITECTURES
from mc_jupyter.errors import InputError, ModelLoadError
from tests import tiny_diffusion
from tests.test_spec_blocks import BLOCKS, registry_state

ARCHS = ("sdxl", "flux", "hunyuan")
SIZE, STEPS = 64, 2


@pytest.fixture(scope="module")
def pipelines(hub_cache, tmp_path_factory):
    """The tiny pipelines' local folders; the hub cache holds them under the real repo ids."""
    return tiny_diffusion.build_all(tmp_path_factory.mktemp("diffusion"), hub_cache)


def component(architecture: str, params: str = "", extra: str = "") -> str:
    return f"""
component:
  type: model
  task: image-generation
  architecture: {architecture}
  model: {tiny_diffusion.REPOS[architecture]}
  device: cpu
  prompt: ${{input.prompt}}{extra}
  params: {{width: {SIZE}, height: {SIZE}, num_inference_steps: {STEPS}{params}}}
"""


def generate(registry, prompt="a red fox in the snow", **inputs):
    return mc.run(inputs={"prompt": prompt, **inputs}, registry=registry).output


def pixels(image) -> np.ndarray:
    return np.asarray(image)


def raw_pipeline_image(folder: Path, prompt: str, seed: int, **arguments):
    """What diffusers gives on its own: the folder's pipeline class, a CPU generator with the seed."""
    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    if "use_resolution_binning" in inspect.signature(pipe.__call__).parameters:
        arguments["use_resolution_binning"] = False
    return pipe(prompt, width=SIZE, height=SIZE, num_inference_steps=STEPS,
                generator=torch.Generator("cpu").manual_seed(seed), **arguments).images[0]


def test_every_architecture_of_the_table_has_a_pipeline_class():
    assert sorted(PIPELINES) == sorted(ARCHITECTURES["image-generation"])


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHS)
def test_a_seeded_image_has_the_asked_size_repeats_and_equals_the_raw_pipeline(architecture, registry, pipelines):
    mc.compose(component(architecture, ", seed: 7"), registry=registry)
    image = generate(registry)
    assert image.size == (SIZE, SIZE) and image.mode == "RGB"
    assert np.array_equal(pixels(image), pixels(generate(registry)))
    raw = raw_pipeline_image(pipelines[architecture], "a red fox in the snow", seed=7)
    assert np.array_equal(pixels(image), pixels(raw))
    assert pixels(image).std() > 0   # not a blank image


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHS)
def test_a_different_seed_gives_different_pixels(architecture, registry, pipelines):
    mc.compose(component(architecture, ", seed: \"${input.seed}\""), registry=registry)
    seven, eight = generate(registry, seed=7), generate(registry, seed=8)
    assert not np.array_equal(pixels(seven), pixels(eight))


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHS)
def test_num_images_gives_a_list_of_that_many_distinct_images(architecture, registry, pipelines):
    mc.compose(component(architecture, ", seed: 3, num_images: 2"), registry=registry)
    images = generate(registry)
    assert isinstance(images, list) and len(images) == 2
    assert all(image.size == (SIZE, SIZE) for image in images)
    assert not np.array_equal(pixels(images[0]), pixels(images[1]))


def test_a_list_of_prompts_gives_a_list_batched_like_one_call(registry, pipelines):
    mc.compose(component("sdxl", ", seed: 5, batch_size: 2"), registry=registry)
    images = generate(registry, prompt=["a red fox", "a blue bird"])
    assert isinstance(images, list) and len(images) == 2
    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained(pipelines["sdxl"])
    raw = pipe(["a red fox", "a blue bird"], width=SIZE, height=SIZE, num_inference_steps=STEPS,
               generator=torch.Generator("cpu").manual_seed(5)).images
    assert [pixels(i).tolist() for i in images] == [pixels(i).tolist() for i in raw]


def test_negative_prompt_and_guidance_scale_reach_the_pipeline(registry, pipelines):
    mc.compose(component("sdxl", ", seed: 7, guidance_scale: 3.0", "\n  negative_prompt: blurry"), registry=registry)
    image = generate(registry)
    raw = raw_pipeline_image(pipelines["sdxl"], "a red fox in the snow", seed=7, guidance_scale=3.0,
                             negative_prompt="blurry")
    assert np.array_equal(pixels(image), pixels(raw))
    unguided = raw_pipeline_image(pipelines["sdxl"], "a red fox in the snow", seed=7)
    assert not np.array_equal(pixels(image), pixels(unguided))


def test_the_architecture_is_read_from_model_index_when_left_out(registry, pipelines):
    mc.compose(component("hunyuan").replace("  architecture: hunyuan\n", ""), registry=registry)
    assert generate(registry).size == (SIZE, SIZE)
    info = registry.entries["default"].driver.info()
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["parameters"] > 0 and info["memory_bytes"] >= 4 * info["parameters"]   # float32, plus buffers


def test_a_local_pipeline_folder_loads(registry, pipelines):
    mc.compose(component("sdxl").replace(tiny_diffusion.REPOS["sdxl"], str(pipelines["sdxl"])), registry=registry)
    assert generate(registry).size == (SIZE, SIZE)
    assert registry.entries["default"].driver.info()["source"] == f"local: {pipelines['sdxl']}"


def test_info_counts_every_torch_module_of_the_pipeline(registry, pipelines):
    mc.compose(component("flux"), registry=registry)
    from diffusers import FluxPipeline
    pipe = FluxPipeline.from_pretrained(pipelines["flux"])
    modules = [pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2]
    assert registry.entries["default"].driver.info()["parameters"] == sum(
        p.numel() for m in modules for p in m.parameters())


def test_the_spec_block_runs_with_a_smaller_size_and_fewer_steps(registry, pipelines):
    text = BLOCKS["8.3.6#1"]
    assert text.count("1024") == 2 and text.count("num_inference_steps: 50") == 1
    text = text.replace("1024", str(SIZE)).replace("num_inference_steps: 50", f"num_inference_steps: {STEPS}")
    mc.compose(text, registry=registry)
    image = generate(registry, prompt="a cat wearing sunglasses")
    assert image.size == (SIZE, SIZE)


def test_an_architecture_that_does_not_match_the_folder_names_both_and_changes_nothing(registry, pipelines):
    mc.compose(component("flux"), registry=registry)
    before = registry_state(registry)
    wrong = component("sdxl").replace(tiny_diffusion.REPOS["sdxl"], tiny_diffusion.REPOS["flux"])
    with pytest.raises(ModelLoadError, match="`architecture: sdxl` loads a StableDiffusionXLPipeline, "
                                             "but `black-forest-labs/FLUX.1-dev` holds a FluxPipeline"):
        mc.compose(wrong, registry=registry)
    assert registry_state(registry) == before


def test_a_run_without_a_prompt_says_so_and_changes_nothing(registry, pipelines):
    mc.compose(component("sdxl").replace("  prompt: ${input.prompt}\n", ""), registry=registry)
    before = registry_state(registry)
    with pytest.raises(InputError, match="image-generation got no prompt: give `prompt:`"):
        mc.run(inputs={}, registry=registry)
    assert registry_state(registry) == before


def test_unload_drops_the_pipeline(registry, pipelines):
    mc.compose(component("sdxl"), registry=registry)
    driver = registry.entries["default"].driver
    driver.unload()
    assert not hasattr(driver, "pipeline")
