"""examples/vision.ipynb runs top to bottom on tiny stand-ins placed under the real repo ids, and shows
the detections, segments, depth map and cutout it promises."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests import tiny_vision
from tests.test_examples import execute, outputs_of, text_of
from tests.test_examples_images import html_of, png_of, plain_of

pytestmark = pytest.mark.slow   # a real kernel and notebook: CI runs these (pytest -m slow)


@pytest.fixture(scope="module")
def vision(hub_cache, tmp_path_factory):
    """Tiny YOLOS, SAM, Depth Anything and SegFormer under the notebook's repo ids."""
    return tiny_vision.build_all(tmp_path_factory.mktemp("vision"), hub_cache)


def test_vision_detects_segments_the_boxes_estimates_depth_and_cuts_out(vision):
    nb = execute("vision.ipynb")
    assert png_of(outputs_of(nb, "picture = street()")).size == (480, 320)

    found = outputs_of(nb, "%%run -o found")
    assert png_of(found).size == (480, 320)                                   # the boxes drawn on the picture
    summary = plain_of(found).splitlines()
    count = int(summary[0].split()[0])
    assert summary[0] == f"{count} object{'s' * (count != 1)}" and 1 <= count <= 10
    listed = text_of(outputs_of(nb, 'for obj in found.output["objects"]')).splitlines()
    assert len(listed) == count
    assert all(re.fullmatch(r" *(person|cat|dog|car) (0\.[5-9]\d|1\.00) at x=\d+ y=\d+ \d+x\d+", line) for line in listed)
    scores = [float(line.split()[1]) for line in listed]
    assert scores == sorted(scores, reverse=True)
    assert "<table" in html_of(found)
    persons = [line for line in listed if line.split()[0] == "person"]
    assert persons, "the stand-in should find a person among its objects"
    people = outputs_of(nb, "%%run -o people")
    assert plain_of(people).splitlines()[0] == f"{len(persons)} object{'s' * (len(persons) != 1)}"
    assert text_of(outputs_of(nb, 'print("labels found:"')).strip() == "labels found: ['person']"

    assert text_of(outputs_of(nb, "boxes = [obj")).strip() == f"{count} box prompts"
    parts = text_of(outputs_of(nb, 'for segment in parts.output["segments"]')).splitlines()
    assert len(parts) == count                                                # a segment per box the detector gave
    assert sorted(int(line.split("#")[1].split(":")[0]) for line in parts) == list(range(count))
    assert all(re.fullmatch(r"box #\d+: score \d\.\d\d, \d+ pixels, mask L \(480, 320\)", line) for line in parts)
    assert png_of(outputs_of(nb, "%%run -o parts")).size == (480, 320)        # the masks laid over the picture
    everything = plain_of(outputs_of(nb, "%%run -o everything"))
    assert re.match(r"\d+ segments?", everything)

    depth = outputs_of(nb, "%%run -o depth_map")
    assert png_of(depth).size == (960, 320)                                   # the picture and its depth, side by side
    assert plain_of(depth).strip() == "depth map 480x320, levels 0-255"
    assert text_of(outputs_of(nb, "levels = np.asarray")).strip() == "L (480, 320), levels 0-255"

    cutout = outputs_of(nb, "%%run -o cutout")
    shown = np.asarray(png_of(cutout).convert("RGB"))
    assert shown.shape == (320, 480, 3)
    assert re.fullmatch(r"cutout 480x320, \d+% foreground", plain_of(cutout).strip())
    kept = text_of(outputs_of(nb, 'alpha = np.asarray(cutout')).strip()
    assert re.fullmatch(r"RGBA \(480, 320\), \d+% of the pixels kept", kept)

    down = text_of(outputs_of(nb, "%mc down"))
    assert all(name in down for name in ("detector", "segmenter", "depth", "remover"))
