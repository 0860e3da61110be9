"""What every task of issue #18 shares with the older ones, checked across all of them on their tiny stand-ins:
the memory plan (``--dry-run``) counts the parameters the load then holds, the sidebar's card (the registry's
snapshot) says the task, device, dtype, parameters and memory of the loaded model, and an unload frees it.

Each family's own behaviour (outputs against the raw library call) is tested in its own file:
test_text_to_text, test_reranking, test_image_text_to_text, test_speech_to_text, test_image_embedding,
test_vision_text_encoding, test_dense_vision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest

import mc_jupyter as mc
from mc_jupyter.catalog import DRIVERS, TASKS
from tests import tiny_clip, tiny_seq2seq, tiny_vision, tiny_vlms, tiny_whisper
from tests.tiny_models import place_in_hub_cache

#: task -> (a builder of its stand-in folder, extra YAML of the component)
STAND_INS: Dict[str, Tuple[Callable[[Path], Path], str]] = {
    "text-to-text": (tiny_seq2seq.build_marian, ""),
    "text-reranking": (tiny_seq2seq.build_cross_encoder, ""),
    "image-text-to-text": (tiny_vlms.build_idefics3, ""),
    "speech-to-text": (tiny_whisper.build, ""),
    "image-embedding": (tiny_clip.build_clip, ""),
    "vision-text-encoding": (tiny_clip.build_smolvlm, ""),
    "object-detection": (tiny_vision.build_yolos, ""),
    "image-segmentation": (tiny_vision.build_sam, ""),
    "depth-estimation": (tiny_vision.build_depth_anything, ""),
    "image-background-removal": (lambda folder: tiny_vision.build_segformer(folder, tiny_vision.CLOTHES_CLASSES), ""),
}


def test_every_new_task_has_a_stand_in_here():
    older = {"text-generation", "chat-completion", "text-classification", "text-embedding", "image-to-text",
             "image-generation", "image-upscale", "face-embedding"}
    assert set(TASKS) - older == set(STAND_INS)
    assert all(("huggingface", task) in DRIVERS and ("custom", task) in DRIVERS for task in STAND_INS)


@pytest.mark.parametrize("task", list(STAND_INS))
def test_the_plan_counts_what_the_load_holds_and_the_card_says_it(task, registry, tmp_path):
    build, extra = STAND_INS[task]
    folder = build(tmp_path / "model")
    yaml = f"component:\n  id: m\n  type: model\n  task: {task}\n  model: {folder}\n  device: cpu\n{extra}"

    plan = mc.compose(yaml, registry=registry, dry_run=True).plan
    (estimate,) = plan.estimates
    assert registry.snapshot() == []                         # a dry run loads nothing
    mc.compose(yaml, registry=registry)
    model = registry.entries["m"].driver.model
    parameters = sum(p.numel() for p in model.parameters())
    if task == "text-to-text":   # Marian's files hold its logits bias (a buffer), not its sinusoidal positions
        positions = sum(p.numel() for n, p in model.named_parameters() if "embed_positions" in n)
        assert estimate.parameters == parameters - positions + model.final_logits_bias.numel()
    elif task == "vision-text-encoding":  # the files' language-model head, which hidden states do not need
        head = model.config.text_config.vocab_size * model.config.text_config.hidden_size
        assert estimate.parameters == parameters + head
    else:
        assert abs(estimate.parameters - parameters) <= 0.01 * parameters, (estimate.parameters, parameters)
    assert estimate.device == "cpu" and estimate.precision == "float32"
    assert estimate.weight_bytes == 4 * estimate.parameters

    (card,) = registry.snapshot()
    assert (card["id"], card["type"], card["task"], card["driver"]) == ("m", "model", task, "huggingface")
    assert (card["state"], card["device"], card["dtype"]) == ("ready", "cpu", "float32")
    assert card["parameters"] == parameters
    assert card["memory_bytes"] >= 4 * parameters
    assert card["error"] == ""

    mc.unload("m", registry=registry)
    assert registry.snapshot() == []


def test_the_readmes_more_tasks_block_composes_and_runs_on_its_stand_ins(registry, hub_cache, tmp_path):
    """The README's example of the new tasks, verbatim, on stand-ins under its model ids: each component runs
    and gives its task's result shape (the values are checked against the raw library in each family's file)."""
    import re

    import numpy as np
    from PIL import Image

    from tests.test_readme import ROOT

    text = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n%%compose\n(.*?)```", text[text.index("## More tasks"):], re.S).group(1)
    tiny_seq2seq.build_all(tmp_path / "seq2seq", hub_cache, ("marian", "cross-encoder"))
    folder = tiny_vlms.build_idefics3(tmp_path / "vlm")
    for repo in tiny_vlms.REPOS["idefics3"]:
        place_in_hub_cache(hub_cache, repo, folder)
    mc.compose(block, registry=registry)
    assert [row["task"] for row in registry.snapshot()] == ["text-to-text", "text-reranking", "image-text-to-text"]

    french = mc.run("translate", {"text": "Where is the station?"}, registry=registry).output
    assert isinstance(french, str) and french
    passages = ["The tower is 330 metres tall.", "Bread is baked.", "Paris is in France.", "A cat sleeps."]
    ranking = mc.run("rerank", {"query": "How tall is the tower?", "passages": passages}, registry=registry).output
    assert len(ranking) == 3 and [r["document"] for r in ranking] == [passages[r["index"]] for r in ranking]
    assert [r["score"] for r in ranking] == sorted((r["score"] for r in ranking), reverse=True)
    photo = Image.fromarray(np.full((40, 48, 3), 200, np.uint8))
    reply = mc.run("look", {"image": photo, "question": "What is this?"}, registry=registry).output
    assert isinstance(reply, str)
