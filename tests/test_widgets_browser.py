"""The embedding map, the gallery and the upscaling slider in a real JupyterLab, driven through Debian's
Chromium with Playwright (the sidebar test's server and browser: tests/test_sidebar_browser.py).

A real kernel runs the real all-MiniLM-L6-v2 (its packaged copy) and the tiny diffusion pipeline.
Without Chromium these tests skip; in CI (``CI`` set) they fail instead. With
``MC_JUPYTER_UPDATE_DOCS=1`` they write docs/map.png, docs/gallery.png and docs/upscale.png.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests import tiny_diffusion
from tests import test_sidebar_browser as sidebar
from tests.test_sidebar_browser import ROOT, TIMEOUT_MS, Lab, Page, notebook

browser = sidebar.browser   # the sidebar test's Chromium fixture (skips without it; fails in CI)

pytestmark = pytest.mark.slow

TEXTS = ["The cat sleeps on the warm windowsill all afternoon, dreaming of birds in the garden.",
         "A kitten chases a ball of yarn across the floor.",
         "The stock market fell sharply after the announcement.", "Investors sold shares as prices dropped.",
         "Fresh bread is baked in the oven every morning.", "The bakery sells croissants and sourdough loaves.",
         "The train to the coast leaves at nine.", "Our flight was delayed by a storm."]

CELLS = [
    "import mc_jupyter\n%load_ext mc_jupyter\n"
    "from mc_jupyter.widgets import embedding_map, images\n"
    "embedding_map.install(mc_jupyter.REGISTRY); images.install(mc_jupyter.REGISTRY)",
    "%%compose\ncomponent:\n  id: embedder\n  type: model\n  task: text-embedding\n"
    "  model: sentence-transformers/all-MiniLM-L6-v2\n  text: ${input.text}",
    "%%run embedder\ntext: " + json.dumps(TEXTS),
    "%%compose\ncomponent:\n  id: painter\n  type: model\n  task: image-generation\n  architecture: sdxl\n"
    f"  model: {tiny_diffusion.REPOS['sdxl']}\n  device: cpu\n  prompt: ${{input.prompt}}\n"
    "  params: {width: 64, height: 64, num_inference_steps: 2, seed: 7}",
    "%%run painter\nprompt: a red fox in the snow",
    "from PIL import Image, ImageDraw\n"
    "small = Image.new('RGB', (24, 16), 'white'); d = ImageDraw.Draw(small)\n"
    "d.ellipse([3, 2, 20, 14], fill='tomato'); d.line([0, 15, 23, 0], fill='navy')\n"
    "big = small.resize((96, 64), Image.BICUBIC)\n"
    "from mc_jupyter.widgets.images import UpscaleSlider\n"
    "UpscaleSlider([(small, big)]).widget",
]


@pytest.fixture
def lab(models, hub_cache, tmp_path):
    tiny_diffusion.build_all(tmp_path / "diffusion", hub_cache)
    server = Lab(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct")
    (server.root / "widgets.ipynb").write_text(json.dumps(notebook("", cells=CELLS)))
    yield server
    server.stop()


def keep(shot, name: str) -> None:
    assert shot.stat().st_size > 5_000
    if os.environ.get("MC_JUPYTER_UPDATE_DOCS"):
        shutil.copyfile(shot, ROOT / "docs" / name)


def test_the_map_shows_whole_texts_on_hover_and_neighbours_of_a_query(browser, lab, tmp_path):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{lab.url}/lab?token={lab.token}")
    ui = Page(page)
    ui.open_notebook("widgets.ipynb")
    for i in range(3):
        ui.run(i)
    cell = ui.notebook.locator(".jp-CodeCell").nth(2)
    root = cell.locator(".mc-map")
    root.wait_for()
    assert cell.locator(".mc-map-point").count() == len(TEXTS)

    cell.locator('.mc-map-point[data-index="0"] circle').hover()
    tip = cell.locator(".mc-map-tip")
    tip.wait_for(state="visible")
    assert tip.inner_text() == f"1. {TEXTS[0]}"                      # the whole text, not a cut label

    cell.locator(".mc-map-query input").fill("Shares tumbled on Wall Street today.")
    cell.locator(".mc-map-query button").click()
    first = cell.locator(".mc-map-neighbours li").first
    first.wait_for()
    listed = cell.locator(".mc-map-neighbours li").all_inner_texts()
    assert len(listed) == 5
    assert {listed[0].split(". ", 1)[1], listed[1].split(". ", 1)[1]} == {TEXTS[2], TEXTS[3]}
    scores = [float(item.split()[0]) for item in listed]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    assert cell.locator(".mc-map-point.mc-near").count() == 5 and cell.locator(".mc-map-query-point").count() == 1
    page.mouse.move(0, 0)
    shot = tmp_path / "map.png"
    root.screenshot(path=str(shot))
    keep(shot, "map.png")

    ui.run(3)
    ui.run(4)
    gallery = ui.notebook.locator(".jp-CodeCell").nth(4).locator(".mc-gallery")
    gallery.wait_for()
    assert gallery.locator(".mc-gallery-item").count() == 1
    assert "seed 7" in gallery.locator(".mc-gallery-seed").first.inner_text()
    gallery.locator(".mc-gallery-again").click()
    gallery.locator(".mc-gallery-item").nth(1).wait_for()
    assert "seed 8" in gallery.locator(".mc-gallery-item").nth(1).inner_text()
    gallery.locator(".mc-gallery-item").nth(1).click()                 # enlarge
    gallery.locator(".mc-gallery-big img").wait_for()
    shot = tmp_path / "gallery.png"
    gallery.screenshot(path=str(shot))
    keep(shot, "gallery.png")

    ui.run(5)
    slider = ui.notebook.locator(".jp-CodeCell").nth(5).locator(".mc-slider")
    slider.wait_for()
    box = slider.locator(".mc-slider-box").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    clip = slider.locator(".mc-slider-before").evaluate("el => el.style.clipPath")
    assert clip.startswith("inset(0px 7") or clip.startswith("inset(0 7"), clip   # 30% shows the input
    shot = tmp_path / "upscale.png"
    slider.screenshot(path=str(shot))
    keep(shot, "upscale.png")
    page.close()
