"""image-upscale: Real-ESRGAN, ESRGAN, SwinIR and LDSR on tiny seeded weights in their published layouts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mc_jupyter as mc
from mc_jupyter.drivers.upscale_nets import RRDBNet, SwinIR
from mc_jupyter.errors import ModelLoadError, UserError
from tests import tiny_upscalers
from tests.test_spec_blocks import BLOCKS

SPEC_BLOCK = BLOCKS["8.3.7#1"]


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> dict:
    hub = Path(os.environ["HF_HOME"]) / "hub"   # the offline cache tests/conftest.py set up
    return tiny_upscalers.build_all(tmp_path_factory.mktemp("upscale") / "weights", hub)


@pytest.fixture(autouse=True)
def weights_dir(weights, monkeypatch, tmp_path):
    """Published names resolve in the tiny weights folder; the working folder is an empty one."""
    monkeypatch.setenv("MC_JUPYTER_WEIGHTS", str(weights["x4"].parent))
    monkeypatch.chdir(tmp_path)


def picture(width: int = 19, height: int = 13, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def component(model, architecture: str, extra: str = "", params: str = "{scale: 4, tile_size: 0}") -> str:
    return (f"component:\n  task: image-upscale\n  architecture: {architecture}\n  model: {model}\n"
            f"  image: ${{input.image as image}}\n  params: {params}\n{extra}")


def upscale(registry, text: str, image) -> Image.Image:
    mc.compose(text, registry=registry)
    return mc.run(inputs={"image": image}, registry=registry).output


def direct(net: torch.nn.Module, image: Image.Image) -> np.ndarray:
    """The network called on the image's tensor, as uint8 pixels (the reference)."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        y = net.eval()(x)
    return (y.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def published_rrdb(path: Path, scale: int = 4) -> RRDBNet:
    net = RRDBNet(scale=scale, **tiny_upscalers.RRDB_SIZE)
    net.load_state_dict(torch.load(path, weights_only=True)["params_ema"])
    return net


LDSR = ("ldsr", tiny_upscalers.LDSR_REPO, "  options: {num_inference_steps: 2}\n")
ARCHITECTURES = [("real-esrgan", "RealESRGAN_x4plus", ""), ("esrgan", "RRDB_ESRGAN_x4", ""),
                 ("swinir", tiny_upscalers.SWINIR_NAME, ""), LDSR]


@pytest.mark.slow
@pytest.mark.parametrize("architecture,model,extra", ARCHITECTURES, ids=[a[0] for a in ARCHITECTURES])
def test_scale_4_gives_four_times_the_width_and_height_for_each_architecture(registry, architecture, model, extra):
    out = upscale(registry, component(model, architecture, extra), picture(19, 13))
    assert isinstance(out, Image.Image) and out.size == (76, 52) and out.mode == "RGB"
    assert np.asarray(out).std() > 1   # not a flat image


def test_real_esrgan_output_equals_the_network_called_directly_and_old_esrgan_names_load_the_same(registry, weights):
    image = picture()
    expected = direct(published_rrdb(weights["x4"]), image)
    for architecture, model in (("real-esrgan", "RealESRGAN_x4plus"), ("esrgan", "RRDB_ESRGAN_x4"),
                                ("real-esrgan", weights["safetensors"])):
        out = upscale(registry, component(model, architecture), image)
        assert np.array_equal(np.asarray(out), expected), (architecture, model)


def test_swinir_loads_the_published_params_layout_and_equals_the_network_called_directly(registry, weights):
    state = torch.load(weights["swinir"], weights_only=True)["params"]
    assert "layers.0.residual_group.blocks.1.attn_mask" in state and "conv_before_upsample.0.weight" in state
    net = SwinIR(**tiny_upscalers.SWINIR_SIZE)
    net.load_state_dict({k: v for k, v in state.items() if not k.endswith(("attn_mask", "position_index"))})
    image = picture(20, 16)   # a multiple of the window: spandrel's SwinIR pads with reflection, ours mirrors
    out = upscale(registry, component(tiny_upscalers.SWINIR_NAME, "swinir"), image)
    assert np.array_equal(np.asarray(out), direct(net, image))


def test_ldsr_equals_the_diffusers_pipeline_called_directly(registry, weights):
    from diffusers import LDMSuperResolutionPipeline
    image = picture(32, 32)
    out = upscale(registry, component(LDSR[1], "ldsr", LDSR[2]), image)
    pipe = LDMSuperResolutionPipeline.from_pretrained(weights["ldsr"])
    pipe.set_progress_bar_config(disable=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)   # the pipeline draws DDIM's eta noise from the global generator
        raw = pipe(image, num_inference_steps=2, eta=1.0, generator=torch.Generator().manual_seed(0)).images[0]
    assert out.size == raw.size == (128, 128)
    assert np.array_equal(np.asarray(out), np.asarray(raw))


def test_tiles_give_the_same_pixels_as_one_pass_within_one_level(registry):
    image = picture(45, 38, seed=3)
    whole = upscale(registry, component("RealESRGAN_x4plus", "real-esrgan"), image)
    tiles = upscale(registry, component("RealESRGAN_x4plus", "real-esrgan", params="{scale: 4, tile_size: 16}"),
                    image)
    diff = np.abs(np.asarray(whole, dtype=int) - np.asarray(tiles, dtype=int))
    assert tiles.size == whole.size == (180, 152)
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_x2_weights_asked_for_scale_4_are_resized_with_lanczos_from_their_native_x2(registry, weights):
    image = picture(16, 12)   # a multiple of 4: spandrel pads the x2 net's input to one
    native = upscale(registry, component("RealESRGAN_x2plus", "real-esrgan", params="{scale: 2}"), image)
    assert np.array_equal(np.asarray(native), direct(published_rrdb(weights["x2"], scale=2), image))
    out = upscale(registry, component("RealESRGAN_x2plus", "real-esrgan", params="{scale: 4}"), image)
    assert out.size == (64, 48)
    assert np.array_equal(np.asarray(out), np.asarray(native.resize((64, 48), Image.LANCZOS)))


def test_the_spec_block_finds_realesrgan_x4plus_by_name_and_upscales_4x(registry, weights):
    mc.compose(SPEC_BLOCK, registry=registry)
    [row] = registry.snapshot()
    assert row["model"] == "RealESRGAN_x4plus" and row["state"] == "ready"
    assert registry.get(row["id"]).driver.info()["source"] == f"real-esrgan: {weights['x4']}"
    out = mc.run(inputs={"image": picture(10, 7)}, registry=registry).output
    assert out.size == (40, 28)


def test_a_list_of_images_gives_a_list_and_transparency_is_kept(registry):
    mc.compose(component("RealESRGAN_x4plus", "real-esrgan").replace(" as image", ""), registry=registry)
    clear = picture(6, 5).convert("RGBA")
    clear.putalpha(100)
    out = mc.run(inputs={"image": [picture(8, 6), picture(8, 6, seed=1), clear]}, registry=registry).output
    assert [im.size for im in out] == [(32, 24), (32, 24), (24, 20)]
    assert out[2].mode == "RGBA" and np.asarray(out[2])[..., 3].max() == 100


def test_precision_and_device_are_honoured(registry):
    mc.compose(component("RealESRGAN_x4plus", "real-esrgan", "  device: cpu\n  precision: bfloat16\n"),
               registry=registry)
    [row] = registry.snapshot()
    assert row["device"] == "cpu" and row["dtype"] == "bfloat16"
    out = mc.run(inputs={"image": picture()}, registry=registry).output
    reference = upscale(registry, component("RealESRGAN_x4plus", "real-esrgan"), picture())
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(reference, dtype=int)).mean() < 2


def test_a_name_found_nowhere_lists_every_place_looked_and_where_to_download_it(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("MC_JUPYTER_WEIGHTS", str(tmp_path / "mine"))
    with pytest.raises(ModelLoadError) as info:
        mc.compose(component("RealESRGAN_x4plus", "real-esrgan"), registry=registry)
    text = str(info.value)
    for place in (tmp_path / "mine" / "RealESRGAN_x4plus.pth", tmp_path / "RealESRGAN_x4plus.safetensors",
                  tmp_path / "weights" / "RealESRGAN_x4plus.pth",
                  Path("~/.cache/mc_jupyter/weights/RealESRGAN_x4plus.pth").expanduser()):
        assert str(place) in text
    assert "lllyasviel/Annotators/RealESRGAN_x4plus.pth" in text
    assert "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth" in text
    assert registry.snapshot() == []


def test_weights_of_another_architecture_fail_clearly_and_leave_the_registry_as_it_was(registry):
    mc.compose(component("RealESRGAN_x4plus", "real-esrgan"), registry=registry)
    before = registry.snapshot()
    with pytest.raises(ModelLoadError) as info:
        mc.compose(component(tiny_upscalers.SWINIR_NAME, "real-esrgan"), registry=registry)
    assert "do not fit the RRDBNet network" in str(info.value) and "missing (body.*" in str(info.value)
    assert "unexpected (patch_embed.* (2), layers.* (" in str(info.value) and "look like SwinIR" in str(info.value)
    with pytest.raises(ModelLoadError, match="(?s)do not fit the SwinIR network.*look like RRDBNet"):
        mc.compose(component("RealESRGAN_x4plus", "swinir"), registry=registry)
    assert registry.snapshot() == before


def test_a_corrupt_image_or_a_bad_scale_is_an_input_error_and_the_registry_stays(registry):
    mc.compose(component("RealESRGAN_x4plus", "real-esrgan", params="{scale: '${input.scale}'}"), registry=registry)
    before = registry.snapshot()
    with pytest.raises(UserError, match="not a readable image"):
        mc.run(inputs={"image": b"\x89PNG not really", "scale": 4}, registry=registry)
    with pytest.raises(UserError, match="`params.scale` must be a positive number, not 0"):
        mc.run(inputs={"image": picture(), "scale": 0}, registry=registry)
    assert mc.run(inputs={"image": picture(8, 6), "scale": 1.5}, registry=registry).output.size == (12, 9)
    assert registry.snapshot() == before


def test_a_hub_mapping_with_filename_loads_the_safetensors_file(registry, weights):
    from tests.tiny_models import place_in_hub_cache
    place_in_hub_cache(Path(os.environ["HF_HOME"]) / "hub", "tiny/realesrgan", weights["safetensors"].parent)
    text = component("{repository: tiny/realesrgan, filename: tiny-realesrgan-x4.safetensors}", "real-esrgan")
    out = upscale(registry, text, picture())
    assert np.array_equal(np.asarray(out), direct(published_rrdb(weights["x4"]), picture()))


# -- Issue #15: spandrel's architectures, its fallback, broken files and empty images ----------------

from mc_jupyter.drivers import upscale_nets  # noqa: E402
from mc_jupyter.errors import InputError  # noqa: E402

SPANDREL = upscale_nets.import_spandrel()
needs_spandrel = pytest.mark.skipif(SPANDREL is None, reason="spandrel is not installed (pip install spandrel "
                                                             "einops; the `upscale` extra)")
#: published name -> (spandrel's architecture name, scale)
SPANDREL_ONLY = {"realesr-general-x4v3": ("RealESRGAN Compact", 4), "realesr-animevideov3": ("RealESRGAN Compact", 4),
                 "HAT_SRx4": ("HAT", 4), "DAT_x2": ("DAT", 2), "Swin2SR_ClassicalSR_X2": ("Swin2SR", 2),
                 "ESRGAN_x8_2018": ("ESRGAN", 8), "ESRGAN_x2_2018": ("ESRGAN", 2)}


def spandrel_reference(path: Path, image: Image.Image) -> np.ndarray:
    """spandrel's own model, loaded from the file by spandrel alone, called on the image's tensor."""
    state = torch.load(path, weights_only=True)
    model = SPANDREL.ModelLoader().load_from_state_dict(state.get("params_ema", state)).model.eval()
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        y = model(x)
    return (y.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


@needs_spandrel
@pytest.mark.parametrize("name", list(SPANDREL_ONLY))
def test_architectures_only_spandrel_loads_upscale_by_their_scale_and_equal_spandrels_forward(registry, weights, name):
    arch, scale = SPANDREL_ONLY[name]
    image = picture(16, 16, seed=4)          # a size every one takes as it is (window multiples, HAT's minimum 16)
    text = component(name, "real-esrgan" if arch == "RealESRGAN Compact" else "esrgan" if arch == "ESRGAN" else "",
                     params=f"{{scale: {scale}, tile_size: 0}}").replace("  architecture: \n", "")
    out = upscale(registry, text, image)
    assert out.size == (16 * scale, 16 * scale)
    driver = registry.get(registry.snapshot()[0]["id"]).driver
    assert driver.native_scale == scale and driver.net.name == arch
    assert np.array_equal(np.asarray(out), spandrel_reference(weights[name], image))
    assert np.asarray(out).std() > 1


@needs_spandrel
def test_spandrel_runs_here_without_torchvision_and_leaves_no_torchvision_behind():
    script = ("import importlib.util, sys; from mc_jupyter.drivers.upscale_nets import import_spandrel; "
              "s = import_spandrel(); print(s is not None, importlib.util.find_spec('torchvision') is None, "
              "'torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    installed = __import__("importlib.util").util.find_spec("torchvision") is not None
    assert done.stdout.split() == ["True", str(not installed), "False" if not installed else "True"], done.stderr


@needs_spandrel
def test_compact_weights_named_as_swinir_are_refused_naming_what_they_are(registry, weights):
    with pytest.raises(ModelLoadError, match="(?s)do not fit the SwinIR network.*look like RealESRGAN Compact"):
        mc.compose(component("realesr-general-x4v3", "swinir"), registry=registry)
    assert registry.snapshot() == []


@pytest.fixture
def without_spandrel(monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)     # as if it were not installed


def test_without_spandrel_our_networks_still_load_and_equal_the_network_called_directly(registry, weights,
                                                                                       without_spandrel):
    image = picture(16, 12)
    out = upscale(registry, component("RealESRGAN_x4plus", "real-esrgan"), image)
    assert registry.get("default").driver.net.name == "rrdb"
    assert np.array_equal(np.asarray(out), direct(published_rrdb(weights["x4"]), image))
    out = upscale(registry, component(tiny_upscalers.SWINIR_NAME, "swinir"), picture(20, 16))
    assert registry.get("default").driver.net.name == "swinir" and out.size == (80, 64)


@needs_spandrel
def test_without_spandrel_other_architectures_say_to_install_it(registry, weights, without_spandrel):
    with pytest.raises(ModelLoadError, match="(?s)do not fit the SwinIR network.*install it \\(pip install spandrel"):
        mc.compose(component("HAT_SRx4", "real-esrgan").replace("  architecture: real-esrgan\n", ""),
                   registry=registry)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_truncated_weights_file_is_named_with_how_to_get_it_again(registry, weights, tmp_path, suffix):
    mc.compose(component("RealESRGAN_x4plus", "real-esrgan"), registry=registry)
    before = registry.snapshot()
    source = weights["safetensors"] if suffix == ".safetensors" else weights["x4"]
    broken = tmp_path / f"RealESRGAN_x4plus{suffix}"
    data = source.read_bytes()
    broken.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelLoadError) as info:
        mc.compose(component(broken, "real-esrgan"), registry=registry)
    text = str(info.value)
    assert f"could not read the weights file `{broken}`: it is truncated or corrupt" in text
    assert "Download it again" in text
    if suffix == ".safetensors":
        assert "cut short" in text
    assert registry.snapshot() == before


def test_a_published_name_whose_file_is_truncated_gives_its_download_address(registry, weights, tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "RealESRGAN_x4plus.pth").write_bytes(weights["x4"].read_bytes()[:1000])
    monkeypatch.setenv("MC_JUPYTER_WEIGHTS", str(folder))
    with pytest.raises(ModelLoadError, match="Its published copy: https://github.com/xinntao/Real-ESRGAN/releases/"):
        mc.compose(component("RealESRGAN_x4plus", "real-esrgan"), registry=registry)


def test_an_empty_image_or_a_scale_that_empties_it_is_an_input_error(registry):
    mc.compose(component("RealESRGAN_x4plus", "real-esrgan", params="{scale: '${input.scale}', tile_size: 0}"),
               registry=registry)
    before = registry.snapshot()
    with pytest.raises(InputError, match=r"is empty \(0×5 pixels\)"):
        mc.run(inputs={"image": np.zeros((5, 0, 3), dtype=np.uint8), "scale": 4}, registry=registry)
    with pytest.raises(InputError, match=r"`params.scale: 0.1` makes the 6×5 image 0×0 pixels"):
        mc.run(inputs={"image": picture(6, 5), "scale": 0.1}, registry=registry)
    assert registry.snapshot() == before


def test_a_tile_size_that_is_not_a_number_names_it(registry):
    mc.compose(component("RealESRGAN_x4plus", "real-esrgan", params="{tile_size: '${input.t}'}"), registry=registry)
    with pytest.raises(InputError, match="`tile_size` must be a whole number of at least 0, not 'big'"):
        mc.run(inputs={"image": picture(), "t": "big"}, registry=registry)
