"""Image inputs: the forms `as image` reads, and clear errors for the ones it cannot."""

import base64
import io
import socket

import numpy as np
import pytest
from PIL import Image

from mc_jupyter.errors import InputError
from mc_jupyter.media import load_image


def png_bytes(colour=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (5, 3), colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_every_input_form_gives_the_same_pixels(tmp_path):
    raw = png_bytes()
    path = tmp_path / "red.png"
    path.write_bytes(raw)
    b64 = base64.b64encode(raw).decode()
    forms = [raw, str(path), b64, f"data:image/png;base64,{b64}", Image.open(io.BytesIO(raw)),
             np.zeros((3, 5, 3), dtype=np.uint8) + np.array([255, 0, 0], dtype=np.uint8)]
    for form in forms:
        image = load_image(form)
        assert image.size == (5, 3) and image.convert("RGB").getpixel((2, 1)) == (255, 0, 0)


def test_an_unreachable_url_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed again: nothing listens there
    with pytest.raises(InputError) as info:
        load_image(f"http://127.0.0.1:{port}/cat.png")
    assert f"could not fetch the image at http://127.0.0.1:{port}/cat.png" in str(info.value)


def test_bytes_that_are_not_an_image_and_a_missing_file():
    with pytest.raises(InputError, match="not a readable image"):
        load_image(b"\x89PNG but not really")
    with pytest.raises(InputError, match="image file not found: nowhere.png"):
        load_image("nowhere.png")


# -- Issue #15 (Hardening II): bombs, empty images, EXIF orientation ----------------------------------

def encoded(image: Image.Image, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize("side,zone", [(12, "warning"), (20, "error")])
def test_a_decompression_bomb_is_an_input_error_with_its_size_the_limit_and_how_to_raise_it(monkeypatch, side, zone):
    """PIL warns above MAX_IMAGE_PIXELS and raises above twice it; both are refused with the numbers, and
    raising the limit as the message says lets the image through."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert load_image(encoded(Image.new("RGB", (10, 10)))).size == (10, 10)     # at the limit: read
    with pytest.raises(InputError) as info:
        load_image(encoded(Image.new("RGB", (side, side))))
    text = str(info.value)
    assert f"{side * side:,} pixels" in text and "limit of 100" in text and "PIL.Image.MAX_IMAGE_PIXELS =" in text
    if zone == "warning":
        assert f"{side}×{side} = " in text
    assert info.value.__cause__ is None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(text.split("MAX_IMAGE_PIXELS = ")[1].split("`")[0]))
    assert load_image(encoded(Image.new("RGB", (side, side)))).size == (side, side)


@pytest.mark.parametrize("value,size", [(np.zeros((0, 0, 3), dtype=np.uint8), "0×0"),
                                        (np.zeros((0, 7), dtype=np.uint8), "7×0"),
                                        (np.zeros((4, 0, 3), dtype=np.float32), "0×4"),
                                        (Image.new("RGB", (0, 5)), "0×5"), (Image.new("L", (3, 0)), "3×0")],
                         ids=["array-0x0", "array-grey-7x0", "array-float-0x4", "pil-0x5", "pil-3x0"])
def test_an_empty_array_or_image_is_refused_when_it_is_read(value, size):
    with pytest.raises(InputError) as info:
        load_image(value)
    assert f"is empty ({size} pixels)" in str(info.value) and "at least 1×1" in str(info.value)


def test_an_array_that_is_not_image_shaped_says_which_shapes_are():
    with pytest.raises(InputError, match=r"shape \(3, 4, 5, 6\) is not an image"):
        load_image(np.zeros((3, 4, 5, 6), dtype=np.uint8))


def exif_photo(orientation: int) -> bytes:
    """A 6x4 JPEG whose left half is red and right half blue, tagged with an EXIF Orientation."""
    image = Image.new("RGB", (6, 4), (255, 0, 0))
    image.paste((0, 0, 255), (3, 0, 6, 4))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(image, "JPEG", exif=exif.tobytes(), quality=100, subsampling=0)


@pytest.mark.parametrize("form", ["bytes", "path", "pil"])
def test_a_photo_is_turned_upright_by_its_exif_orientation(tmp_path, form):
    """Orientation 6 means "turn 90° clockwise to view": the 6x4 image becomes 4x6, red on top; a photo
    tagged 1 (upright) or untagged stays as it is."""
    raw = exif_photo(6)
    path = tmp_path / "photo.jpg"
    path.write_bytes(raw)
    value = {"bytes": raw, "path": str(path), "pil": Image.open(io.BytesIO(raw))}[form]
    image = load_image(value).convert("RGB")
    assert image.size == (4, 6)
    top, bottom = image.getpixel((2, 0)), image.getpixel((2, 5))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    assert image.getexif().get(0x0112, 1) == 1     # the tag is gone: nothing turns it twice
    for upright in (exif_photo(1), encoded(Image.new("RGB", (6, 4)), "JPEG")):
        assert load_image(upright).size == (6, 4)
