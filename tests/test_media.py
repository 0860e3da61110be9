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
