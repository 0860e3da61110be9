"""face-embedding with an InsightFace pack (tiny stand-ins of buffalo_l's det_10g and w600k_r50).

The detector of :mod:`tests.tiny_faces` finds bright squares, so every position is known: boxes,
landmarks and the aligned crop are checked against values computed here without the driver.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

import mc_jupyter as mc
from mc_jupyter.drivers.face_models import ARCFACE_TEMPLATE, norm_crop, similarity_transform
from mc_jupyter.errors import DeviceError, InputError, ModelLoadError
from tests import tiny_faces
from tests.test_spec_blocks import BLOCKS

COMPONENT = """
component:
  type: model
  task: face-embedding
  model: {model}
  image: ${{input.image as image}}
"""
FACE_A, FACE_B = (64, 48, 1), (192, 144, 2)     # (left, top, pattern seed)


@pytest.fixture(scope="session")
def insightface_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("insightface")
    tiny_faces.build_pack(home / "models" / "buffalo_l")
    return home


@pytest.fixture
def pack_home(insightface_home, monkeypatch):
    monkeypatch.setenv("INSIGHTFACE_HOME", str(insightface_home))
    return insightface_home


def faces_of(registry, image, model="buffalo_l"):
    mc.compose(COMPONENT.format(model=model), registry=registry)
    return mc.run(inputs={"image": image}, registry=registry).output


def sample(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at pixel coordinates (xs, ys), by torch's grid_sample, rounded."""
    height, width = image.shape[:2]
    grid = torch.from_numpy(np.stack([2 * xs / (width - 1) - 1, 2 * ys / (height - 1) - 1], axis=-1))
    source = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    out = torch.nn.functional.grid_sample(source, grid[None], mode="bilinear", align_corners=True)
    return np.rint(out[0].permute(1, 2, 0).numpy())


def aligned_crop(image: np.ndarray, left: int, top: int) -> np.ndarray:
    """The 112x112 crop of the face square at (left, top): the template is its landmarks scaled by 112/FACE."""
    ys, xs = np.mgrid[:112, :112] * (tiny_faces.FACE / 112.0)
    return sample(image, xs + left, ys + top)


def recognize(folder, crop: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(folder / "w600k_r50.onnx"), providers=["CPUExecutionProvider"])
    blob = ((crop - 127.5) / 127.5).transpose(2, 0, 1)[None].astype(np.float32)
    vector = session.run(None, {"input.1": blob})[0][0]
    return vector / np.linalg.norm(vector)


def test_each_face_is_found_at_its_square_with_landmarks_on_the_template(registry, pack_home):
    faces = faces_of(registry, Image.fromarray(tiny_faces.image_with_faces(FACE_A, FACE_B)))
    assert len(faces) == 2                                   # the second anchor's copy of each box is suppressed
    for face, (left, top, _) in zip(sorted(faces, key=lambda f: f["bbox"][0]), (FACE_A, FACE_B)):
        assert set(face) == {"bbox", "score", "landmarks", "embedding"}
        assert face["bbox"] == pytest.approx(tiny_faces.expected_bbox(left, top), abs=1.0)
        assert np.abs(np.array(face["landmarks"]) - tiny_faces.expected_landmarks(left, top)).max() < 0.5
        assert 0.9 < face["score"] <= 1.0
    assert faces[0]["score"] >= faces[1]["score"]
    assert registry.entries["default"].driver.info()["device"] == "cpu"


def test_an_image_without_faces_gives_an_empty_list(registry, pack_home):
    assert faces_of(registry, Image.new("RGB", (200, 100))) == []


def test_the_embedding_is_the_unit_recognizer_vector_of_the_aligned_crop(registry, pack_home):
    image = tiny_faces.image_with_faces(FACE_A)
    [face] = faces_of(registry, Image.fromarray(image))
    embedding = np.array(face["embedding"])
    assert embedding.shape == (512,) and np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-6)
    expected = recognize(pack_home / "models" / "buffalo_l", aligned_crop(image, FACE_A[0], FACE_A[1]))
    assert np.abs(embedding - expected).max() < 1e-4


def test_the_same_face_in_two_images_has_cosine_one_and_a_different_face_less(registry, pack_home):
    first = tiny_faces.image_with_faces(FACE_A)
    moved = tiny_faces.image_with_faces((FACE_B[0], FACE_B[1], FACE_A[2]))
    other = tiny_faces.image_with_faces((FACE_A[0], FACE_A[1], 7))
    # `as image` converts one value, so the list goes in as it is: the driver reads each item
    mc.compose(COMPONENT.format(model="buffalo_l").replace(" as image", ""), registry=registry)
    results = mc.run(inputs={"image": [Image.fromarray(a) for a in (first, moved, other)]}, registry=registry).output
    assert [len(faces) for faces in results] == [1, 1, 1]    # a list of images gives a list of lists
    a, b, c = (np.array(faces[0]["embedding"]) for faces in results)
    assert a @ b == pytest.approx(1.0, abs=1e-6)
    assert a @ c < 0.999


def test_alignment_is_the_least_squares_similarity_onto_the_template():
    angle, scale, shift = np.deg2rad(25), 2.7, np.array([40.0, -12.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    noise = np.random.default_rng(0).normal(0, 1.5, (5, 2))
    landmarks = ARCFACE_TEMPLATE @ (scale * rotation).T + shift + noise
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    # the same fit by linear least squares over (a, b, tx, ty) of [[a, -b, tx], [b, a, ty]]
    rows = [[x, -y, 1, 0] for x, y in landmarks] + [[y, x, 0, 1] for x, y in landmarks]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.concatenate([ARCFACE_TEMPLATE[:, 0], ARCFACE_TEMPLATE[:, 1]]),
                                   rcond=None)[0]
    assert matrix == pytest.approx(np.array([[a, -b, tx], [b, a, ty]]), abs=1e-9)
    exact = similarity_transform(ARCFACE_TEMPLATE @ (scale * rotation).T + shift, ARCFACE_TEMPLATE)
    mapped = np.c_[ARCFACE_TEMPLATE @ (scale * rotation).T + shift, np.ones(5)] @ exact.T
    assert np.abs(mapped - ARCFACE_TEMPLATE).max() < 1e-9


def test_a_rotated_face_is_warped_upright_by_bilinear_sampling():
    image = np.random.default_rng(3).integers(0, 256, size=(90, 120, 3)).astype(np.uint8)
    angle = np.deg2rad(30)
    landmarks = (ARCFACE_TEMPLATE - 56) @ (0.6 * np.array([[np.cos(angle), -np.sin(angle)],
                                                           [np.sin(angle), np.cos(angle)]])).T + [60, 45]
    crop = norm_crop(image, landmarks)
    inverse = np.linalg.inv(np.vstack([similarity_transform(landmarks, ARCFACE_TEMPLATE), [0, 0, 1]]))
    ys, xs = np.mgrid[:112, :112].astype(np.float64)
    expected = sample(image, inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2],
                      inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2])
    inside = (slice(20, 92), slice(20, 92))               # away from the black border outside the image
    assert crop.dtype == np.uint8 and np.abs(crop[inside] - expected[inside]).max() <= 1


def test_the_spec_block_runs_on_the_pack_found_through_insightface_home(registry, pack_home):
    mc.compose(BLOCKS["8.3.8#1"], registry=registry)
    buffer = io.BytesIO()
    Image.fromarray(tiny_faces.image_with_faces(FACE_B)).save(buffer, format="PNG")
    [face] = mc.run(inputs={"image": buffer.getvalue()}, registry=registry).output
    assert face["bbox"] == pytest.approx(tiny_faces.expected_bbox(*FACE_B[:2]), abs=1.0)
    assert registry.entries["default"].driver.source_description == "insightface: buffalo_l"


def test_a_local_folder_is_read_as_the_pack(registry, insightface_home, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("INSIGHTFACE_HOME", raising=False)
    folder = insightface_home / "models" / "buffalo_l"
    image = Image.fromarray(tiny_faces.image_with_faces(FACE_A))
    by_mapping = faces_of(registry, image, model=f"{{provider: local, path: {folder}}}")
    assert faces_of(registry, image, model=str(folder)) == by_mapping and len(by_mapping) == 1


def test_a_missing_pack_lists_every_folder_looked_in_and_how_to_get_it(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "ifhome"))
    with pytest.raises(ModelLoadError) as info:
        faces_of(registry, None)
    message = str(info.value)
    assert f"{tmp_path}/ifhome/models/buffalo_l" in message
    assert f"{tmp_path}/home/.insightface/models/buffalo_l" in message
    assert "releases/download/v0.7/buffalo_l.zip" in message and "provider: local" in message
    assert registry.snapshot() == []


def test_a_folder_without_a_detector_says_what_each_file_is(registry, insightface_home, tmp_path):
    shutil.copy(insightface_home / "models" / "buffalo_l" / "w600k_r50.onnx", tmp_path / "det_10g.onnx")
    with pytest.raises(ModelLoadError, match=r"holds no SCRFD face detector .*det_10g.onnx \(recognizer\)"):
        faces_of(registry, None, model=str(tmp_path))
    (tmp_path / "det_10g.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelLoadError, match="det_10g.onnx` is not a readable ONNX model"):
        faces_of(registry, None, model=str(tmp_path))
    assert registry.snapshot() == []


def test_cuda_without_a_cuda_onnxruntime_is_a_device_error(registry, pack_home):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(DeviceError, match="device: cuda"):
        mc.compose(COMPONENT.format(model="buffalo_l") + "  device: cuda\n", registry=registry)
    assert registry.snapshot() == []


def test_a_corrupt_image_is_an_input_error_and_the_component_stays_loaded(registry, pack_home):
    faces_of(registry, Image.fromarray(tiny_faces.image_with_faces(FACE_A)))
    before = registry.snapshot()
    with pytest.raises(InputError, match="not a readable image"):
        mc.run(inputs={"image": b"\x89PNG broken"}, registry=registry)
    assert registry.snapshot() == before
