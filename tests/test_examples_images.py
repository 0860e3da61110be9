"""The image example notebooks run top to bottom on tiny stand-ins placed under the real names.

Each test lays its stand-ins where the notebook's real model would be found (the offline hub cache
under the real repo id, ``$MC_JUPYTER_WEIGHTS``, ``$INSIGHTFACE_HOME``), sets the variables before the
kernel starts (it inherits this process's environment), runs the notebook and checks its key outputs.
"""

from __future__ import annotations

import base64
import io
import re

import pytest
import torch
from PIL import Image

from tests import tiny_captioners, tiny_diffusion, tiny_faces, tiny_upscalers
from tests.test_examples import execute, outputs_of, text_of
from tests.tiny_models import place_in_hub_cache

pytestmark = pytest.mark.slow   # real kernels and notebooks: CI runs these (pytest -m slow)

SDXL_TURBO = "stabilityai/sdxl-turbo"


@pytest.fixture(scope="module")
def captioners(hub_cache, tmp_path_factory):
    """Tiny BLIP (and GIT, ViT-GPT2) under Salesforce/blip-image-captioning-base and -large."""
    return tiny_captioners.build_all(tmp_path_factory.mktemp("captioners"), hub_cache)


def pngs(outputs) -> list:
    """Every PNG of the outputs, as PIL images: ``image/png`` data and images embedded in ``text/html``."""
    found = []
    for output in outputs:
        data = output.get("data", {})
        if "image/png" in data:
            found.append(data["image/png"])
        found += re.findall(r'src="data:image/png;base64,([^"]+)"', data.get("text/html", ""))
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in found]


def png_of(outputs) -> Image.Image:
    """The ``image/png`` of the outputs (the static fallback)."""
    data = next(o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {}))
    return Image.open(io.BytesIO(base64.b64decode(data)))


def plain_of(outputs) -> str:
    """The ``text/plain`` of the cell's result, shown last (not a progress bar shown before it)."""
    return [o for o in outputs if "data" in o][-1]["data"].get("text/plain", "")


def html_of(outputs) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def test_image_generation_same_seed_same_pixels_and_a_gallery_of_two(hub_cache, tmp_path):
    folder = tmp_path / "tiny-sdxl"
    tiny_diffusion.sdxl().save_pretrained(folder)
    place_in_hub_cache(hub_cache, SDXL_TURBO, folder)

    nb = execute("image_generation.ipynb")
    fox = outputs_of(nb, "%%run -o fox\n")
    assert png_of(fox).size == (512, 512) and plain_of(fox).strip() == "<image 512x512>"
    assert png_of(outputs_of(nb, "%%run -o other_fox")).size == (512, 512)
    assert text_of(outputs_of(nb, "same = np.array_equal")).splitlines() == [
        "seed 7 twice gives identical pixels: True", "seed 8 gives a different image: True"]
    gallery = outputs_of(nb, "%%run -o pair")
    assert plain_of(gallery).strip() == "2 images: #1 512x512, #2 512x512"
    images = pngs(gallery)
    assert [im.size for im in images] == [(512, 512)] * 2
    assert images[0].tobytes() != images[1].tobytes()
    assert text_of(outputs_of(nb, "for i, image in enumerate(pair.output")).splitlines() == [
        "#1: 512x512 RGB", "#2: 512x512 RGB"]
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded painter"


def test_captioning_one_image_a_prompt_and_a_list_show_captions_under_their_images(captioners):
    nb = execute("captioning.ipynb")
    one = outputs_of(nb, "%%run -o one")
    [shown] = pngs(one)
    assert shown.size == (384, 384)
    caption = plain_of(one).strip()
    assert caption and caption in html_of(one)                       # the caption under its image
    assert text_of(outputs_of(nb, 'print(repr(one.output))')).strip() == repr(caption)
    steered = outputs_of(nb, "%%run -o steered")
    assert plain_of(steered).strip() and plain_of(steered).strip() != caption   # the prompt changed the caption
    many = outputs_of(nb, "%%run -o many")
    assert [im.size for im in pngs(many)] == [(384, 384)] * 3
    listed = text_of(outputs_of(nb, "for i, caption in enumerate(many.output")).splitlines()
    assert len(listed) == 3 and listed[0] == f"1. {caption}"          # the list's first is the single caption
    assert all(re.match(r"^\d\. \S", line) for line in listed)
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded captioner"


def test_upscaling_finds_realesrgan_by_name_and_shows_4x_before_after_with_tiles(monkeypatch, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save({"params_ema": tiny_upscalers.rrdb(4).state_dict()}, weights / "RealESRGAN_x4plus.pth")
    monkeypatch.setenv("MC_JUPYTER_WEIGHTS", str(weights))

    nb = execute("upscaling.ipynb")
    assert png_of(outputs_of(nb, "small = Image.new")).size == (96, 64)
    big = outputs_of(nb, "%%run -o big")
    assert plain_of(big).strip() == "upscaled 96x64 -> 384x256"
    assert png_of(big).size == (2 * 384, 256)                        # before | after, side by side
    assert sorted(im.size for im in pngs(big))[:2] == [(96, 64), (384, 256)]
    assert text_of(outputs_of(nb, 'print("before:"')).strip() == "before: (96, 64) after: (384, 256)"
    assert plain_of(outputs_of(nb, "%%run -o tiled")).strip() == "upscaled 96x64 -> 384x256"
    compared = text_of(outputs_of(nb, "difference = np.abs")).splitlines()
    assert compared[0] == "same size: True"
    assert float(re.search(r"difference, tiled vs whole: ([\d.]+)", compared[1]).group(1)) < 10
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded upscaler"


def test_face_embedding_finds_the_faces_boxes_them_and_compares_two_images(monkeypatch, tmp_path):
    tiny_faces.build_pack(tmp_path / "insightface" / "models" / "buffalo_l")
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "insightface"))

    nb = execute("face_embedding.ipynb")
    group = outputs_of(nb, "%%run -o group")
    assert png_of(group).size == (320, 240)                          # the image with the boxes drawn on
    plain = plain_of(group)
    assert plain.startswith("2 faces\n#1: score") and "bbox [64, 48, 96, 80]" in plain
    assert "bbox [192, 144, 224, 176]" in plain and "cosine similarity:" in plain
    listed = text_of(outputs_of(nb, 'for i, face in enumerate(group.output')).splitlines()
    assert len(listed) == 2 and all("embedding of 512 numbers, length 1.000" in line for line in listed)

    both = outputs_of(nb, "%%run -o both")
    assert [im.size for im in pngs(both)] == [(320, 240)] * 2         # each image with its boxes
    assert plain_of(both).startswith("3 faces") and "cosine similarity" in html_of(both)
    pairs = text_of(outputs_of(nb, "matrix = compare_faces")).splitlines()
    assert len(pairs) == 2
    similarity = {line.split(":")[0]: float(line.rsplit(" ", 1)[1]) for line in pairs}
    # image B's square is image A's square at (64, 48) drawn again: the same pattern, the same embedding
    same = next(i for i, line in enumerate(listed, 1) if "box (64, 48)-(96, 80)" in line)
    assert similarity[f"A face {same} vs B face 1"] == pytest.approx(1.0, abs=1e-3)
    assert similarity[f"A face {3 - same} vs B face 1"] < 0.999
    assert text_of(outputs_of(nb, "%mc down")).strip() == "unloaded faces"


def test_multi_step_workflow_captions_then_embeds_and_plots_the_captions(models, captioners):
    nb = execute("multi_step_workflow.ipynb")
    mapped = outputs_of(nb, "%%run -o mapped")
    assert any("image/png" in o.get("data", {}) for o in mapped)     # the 2-D map and the heatmap
    assert plain_of(mapped).startswith("5 embeddings of 384 dimensions")
    listed = text_of(outputs_of(nb, "captions = mapped.jobs")).splitlines()
    assert [line[:3] for line in listed[:5]] == ["1. ", "2. ", "3. ", "4. ", "5. "]
    assert all(line[3:].strip() for line in listed[:5])              # every image got a caption
    assert listed[5] == "5 embeddings of 384 dimensions"
    assert re.fullmatch(r"most alike: #\d and #\d \(cosine -?[\d.]+\)",
                        text_of(outputs_of(nb, "similarity = np.array")).strip())
    down = text_of(outputs_of(nb, "%mc down")).strip()
    assert "captioner" in down and "embedder" in down
