"""examples/image_search.ipynb runs top to bottom on a tiny CLIP placed under openai/clip-vit-base-patch32, and
its rankings are those plain transformers gives on the same pictures and sentences."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests import tiny_clip
from tests.test_examples import execute, outputs_of, text_of
from tests.tiny_models import place_in_hub_cache

pytestmark = pytest.mark.slow   # a real kernel and notebook: CI runs these (pytest -m slow)


def raw_scores(folder, pictures, queries) -> np.ndarray:
    """Each query's cosine with each picture, from the tiny CLIP's own features (the model card's calls)."""
    from transformers import AutoProcessor, CLIPModel

    processor, model = AutoProcessor.from_pretrained(folder), CLIPModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        images = model.get_image_features(**processor(images=pictures, return_tensors="pt")).pooler_output
        texts = model.get_text_features(**processor(text=queries, padding=True, return_tensors="pt")).pooler_output
    images, texts = (torch.nn.functional.normalize(v, dim=-1).numpy() for v in (images, texts))
    return texts @ images.T


def test_image_search_embeds_pictures_and_sentences_in_one_space_and_ranks_them(hub_cache, tmp_path):
    folder = tiny_clip.build_clip(tmp_path / "tiny-clip")
    place_in_hub_cache(hub_cache, tiny_clip.REPOS["clip"], folder)

    nb = execute("image_search.ipynb")
    drawings = {}
    exec(next(c.source for c in nb.cells if c.cell_type == "code" and "def sunset" in c.source), drawings)
    names = drawings["names"]
    pictures = [drawings[name]() for name in names]
    queries = ["a red apple on a table", "a sailing boat on the sea", "a house with a red roof"]
    scores = raw_scores(folder, pictures, queries)

    mapped = outputs_of(nb, "%%run clip_images -o embedded")
    data = [o for o in mapped if "data" in o][-1]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data                 # the interactive map
    plain = data["text/plain"]
    assert plain.startswith("5 image embeddings of 24 dimensions; cosine similarity:")
    assert [f"#{i + 1} {name}.png" in plain for i, name in enumerate(names)] == [True] * 5
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB")).astype(int)
    apple_red = (np.abs(png - (200, 20, 30)).max(axis=-1) <= 8).sum()
    assert apple_red >= 400                                                   # the apple's thumbnail is drawn

    vectors = text_of(outputs_of(nb, "image_vectors = np.array")).splitlines()
    assert vectors == ["image vectors: (5, 24)", "lengths: 1.000 1.000 1.000 1.000 1.000"]

    ranked = text_of(outputs_of(nb, "scores = text_vectors @ image_vectors.T")).splitlines()
    assert len(ranked) == 3
    for query, line, row in zip(queries, ranked, scores):
        best = np.argsort(-row)[:3]
        assert line == f"{query}: " + ", ".join(f"{names[i]} {row[i]:.3f}" for i in best)

    asked = text_of(outputs_of(nb, 'embedded.widget.query("a red apple on a table"')).splitlines()
    assert asked[0] == "queries go to: clip_texts"
    best = np.argsort(-scores[0])[:3]
    assert asked[1:] == [f"#{i + 1} {names[i]}.png  {scores[0][i]:.3f}" for i in best]
    down = text_of(outputs_of(nb, "%mc down"))
    assert "clip_images" in down and "clip_texts" in down
    assert re.search(r"unloaded", down)
