"""Image outputs as a person wants to see them, each with a static PNG/HTML fallback and plain text."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from mc_jupyter.display import images, renderers
from mc_jupyter.display.result import RunResult
from mc_jupyter.engine import JobRecord, RunOutcome

GREY = (128, 128, 128)


def decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def embedded(html: str) -> list:
    """The images a bundle's HTML embeds, decoded."""
    return [decode(d) for d in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def solid(colour, size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, colour)


def result_of(task: str, output, inputs) -> dict:
    """The bundle a %%run cell shows when its last job did ``task`` on ``inputs``."""
    record = JobRecord("job", "c", task, {}, output, 0.01, images=inputs)
    return RunResult(RunOutcome("w", output, [record], 0.01))._repr_mimebundle_()


def face(bbox, embedding, score=0.9):
    x1, y1, x2, y2 = bbox
    landmarks = [[x1 + 5, y1 + 5], [x2 - 5, y1 + 5], [(x1 + x2) / 2, (y1 + y2) / 2], [x1 + 6, y2 - 6],
                 [x2 - 6, y2 - 6]]
    return {"bbox": list(bbox), "score": score, "landmarks": landmarks, "embedding": list(embedding)}


def test_one_image_is_shown_inline_at_its_size():
    bundle = renderers.render(solid("red"))
    assert bundle["text/plain"] == "<image 40x30>"
    assert decode(bundle["image/png"]).size == (40, 30)
    assert decode(bundle["image/png"]).getpixel((5, 5)) == (255, 0, 0)
    assert "40×30" in bundle["text/html"] and len(embedded(bundle["text/html"])) == 1


def test_several_images_are_a_numbered_gallery():
    pictures = [solid(c) for c in ("red", "lime", "blue")]
    bundle = renderers.render(pictures)
    shown = embedded(bundle["text/html"])
    assert [im.getpixel((0, 0)) for im in shown] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert bundle["text/plain"] == "3 images: #1 40x30, #2 40x30, #3 40x30"
    assert "#2 · 40×30" in bundle["text/html"]


def test_gallery_images_larger_than_the_thumbnail_side_are_embedded_smaller():
    bundle = renderers.render([solid("red", (1024, 256)), solid("blue")])
    assert [im.size for im in embedded(bundle["text/html"])] == [(512, 128), (40, 30)]


def test_a_caption_is_shown_under_its_image():
    bundle = result_of("image-to-text", "a red <square>", [solid("red")])
    html = bundle["text/html"]
    assert bundle["text/plain"] == "a red <square>"
    [shown] = embedded(html)
    assert shown.getpixel((0, 0)) == (255, 0, 0)
    assert html.index("<img ") < html.index("<figcaption") < html.index("a red &lt;square&gt;")


def test_several_captions_each_go_under_their_own_image_in_order():
    bundle = result_of("image-to-text", ["red one", "blue one"], [solid("red"), solid("blue")])
    html = bundle["text/html"]
    assert [im.getpixel((0, 0)) for im in embedded(html)] == [(255, 0, 0), (0, 0, 255)]
    assert html.index("red one") < html.index("blue one")
    assert html.count("<figcaption") == 2
    assert bundle["text/plain"] == "1. red one\n2. blue one"


def test_several_captions_of_one_image_are_listed_under_it():
    bundle = result_of("image-to-text", ["first", "second"], [solid("red")])
    assert bundle["text/html"].count("<img ") == 1 and "first<br>second" in bundle["text/html"]


def test_captions_without_input_images_stay_plain_text():
    assert result_of("image-to-text", ["a", "b"], None) == renderers.render(["a", "b"])


def test_upscaling_is_shown_as_before_and_after():
    before = Image.new("RGB", (8, 8), "black")
    before.putpixel((0, 0), (255, 255, 255))
    after = solid("red", (32, 32))
    bundle = result_of("image-upscale", after, [before])
    pair = decode(bundle["image/png"])
    assert pair.size == (64, 32)
    assert pair.getpixel((3, 3)) == (255, 255, 255)      # the input's top-left pixel, enlarged 4x
    assert pair.getpixel((5, 5)) == (0, 0, 0)
    assert pair.getpixel((40, 10)) == (255, 0, 0)        # the output, on the right
    html = bundle["text/html"]
    assert "before · 8×8" in html and "after · 32×32" in html and "image-rendering:pixelated" in html
    assert bundle["text/plain"] == "upscaled 8x8 -> 32x32"


def test_an_upscaled_list_pairs_each_output_with_its_input():
    bundle = result_of("image-upscale", [solid("red", (16, 16)), solid("blue", (16, 16))],
                       [solid("red", (4, 4)), solid("blue", (4, 4))])
    assert len(embedded(bundle["text/html"])) == 4
    assert bundle["text/plain"] == "upscaled 4x4 -> 16x16, 4x4 -> 16x16"


def test_an_image_output_of_another_task_is_not_paired_with_the_input():
    assert "before" not in result_of("image-generation", solid("red"), [solid("blue")])["text/html"]


def test_faces_are_boxed_on_the_image_and_compared_by_cosine_similarity():
    photo = solid(GREY, (120, 80))
    faces = [face((10, 10, 50, 60), [1.0, 0.0, 0.0]), face((70, 15, 110, 65), [1.0, 1.0, 0.0], score=0.8)]
    bundle = result_of("face-embedding", faces, [photo])
    drawn = decode(bundle["image/png"])
    assert drawn.size == (120, 80)
    assert drawn.getpixel((10, 35)) == images.FACE_BOX_COLOUR     # left edge of the first box
    assert drawn.getpixel((110, 40)) == images.FACE_BOX_COLOUR    # right edge of the second
    assert drawn.getpixel((30, 45)) == GREY                       # inside a box: the photo
    assert drawn.getpixel((15, 15)) == images.FACE_LANDMARK_COLOUR
    assert photo.getpixel((10, 35)) == GREY                       # the input is not drawn on
    plain = bundle["text/plain"].splitlines()
    assert plain[:3] == ["2 faces", "#1: score 0.900, bbox [10, 10, 50, 60]", "#2: score 0.800, bbox [70, 15, 110, 65]"]
    assert plain[3:] == ["cosine similarity:", "#1  +1.00 +0.71", "#2  +0.71 +1.00"]
    assert "cosine similarity" in bundle["text/html"] and "+0.71" in bundle["text/html"]


def test_one_face_has_no_similarity_matrix():
    bundle = result_of("face-embedding", [face((10, 10, 50, 60), [1.0, 0.0])], [solid(GREY, (80, 80))])
    assert "cosine" not in bundle["text/plain"] and bundle["text/plain"].startswith("1 face\n")


def test_faces_of_several_images_are_numbered_across_them_and_all_compared():
    groups = [[face((5, 5, 30, 30), [1.0, 0.0])], [face((5, 5, 30, 30), [0.0, 1.0]), face((40, 5, 70, 30), [1.0, 0.0])]]
    bundle = result_of("face-embedding", groups, [solid(GREY, (80, 40)), solid(GREY, (80, 40))])
    assert len(embedded(bundle["text/html"])) == 2
    assert bundle["text/plain"].splitlines()[-3:] == ["#1  +1.00 +0.00 +1.00", "#2  +0.00 +1.00 +0.00",
                                                      "#3  +1.00 +0.00 +1.00"]


def test_faces_without_the_input_image_are_listed_with_their_similarity():
    bundle = renderers.render([face((1, 2, 3, 4), [1.0, 0.0]), face((5, 6, 7, 8), [0.0, 1.0])])
    assert "image/png" not in bundle and "<img" not in bundle["text/html"]
    assert bundle["text/plain"].splitlines()[-2:] == ["#1  +1.00 +0.00", "#2  +0.00 +1.00"]


def test_no_face_found_says_so_beside_the_image():
    bundle = result_of("face-embedding", [], [solid(GREY)])
    assert bundle["text/plain"] == "0 faces" and "no faces found" in bundle["text/html"]
    assert decode(bundle["image/png"]).getpixel((0, 0)) == GREY


def test_compare_faces_is_the_cosine_similarity_of_the_embeddings():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 512))
    faces = [face((0, 0, 1, 1), v) for v in vectors]
    matrix = np.asarray(images.compare_faces(faces))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert matrix == pytest.approx(unit @ unit.T, abs=1e-12)
    assert np.asarray(images.compare_faces([v.tolist() for v in vectors])) == pytest.approx(matrix)


# -- Issue #15: an empty image (0 pixels wide or high) is shown by its size, never a crash -------------

EMPTY = Image.new("RGB", (0, 6))


def test_an_empty_image_alone_is_shown_as_its_size():
    bundle = renderers.render(EMPTY)
    assert bundle["text/plain"] == "<empty image 0x6>" and "0×6 (empty)" in bundle["text/html"]
    assert "image/png" not in bundle


def test_an_empty_image_in_a_gallery_or_under_a_caption_does_not_stop_the_others():
    bundle = renderers.render([solid("red"), EMPTY])
    shown = embedded(bundle["text/html"])
    assert shown[0].getpixel((0, 0)) == (255, 0, 0) and shown[1].size == (1, 1)
    assert "#2 · 0×6 (empty)" in bundle["text/html"]
    captioned = result_of("image-to-text", "a caption", [EMPTY])
    assert captioned["text/plain"] == "a caption" and "0×6" not in captioned["text/plain"]


def test_an_empty_upscaling_output_is_listed_without_a_composite():
    bundle = result_of("image-upscale", Image.new("RGB", (0, 0)), [solid("red", (4, 4))])
    assert bundle["text/plain"] == "upscaled 4x4 -> 0x0" and "image/png" not in bundle
    assert "after · 0×0 (empty)" in bundle["text/html"]


def test_faces_drawn_on_an_empty_image_are_listed_without_a_png():
    bundle = result_of("face-embedding", [], [EMPTY])
    assert bundle["text/plain"] == "0 faces" and "image/png" not in bundle
