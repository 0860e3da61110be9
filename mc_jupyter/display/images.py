"""Image outputs: one image, a gallery, captions under their images, upscaling before/after, faces.

Every bundle is static (``image/png`` and/or ``text/html`` with the PNGs embedded as base64) with a
``text/plain`` summary, so saved notebooks, nbconvert and plain terminals show it too. PIL and
numpy are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Dict, List, Optional, Sequence, Tuple

Bundle = Dict[str, Any]

BOX = "font-family:var(--jp-content-font-family,system-ui,sans-serif);font-size:13px;line-height:1.45"
GALLERY_SIDE = 512                 # longest side of a gallery image as embedded
FACE_BOX_COLOUR = (255, 48, 48)
FACE_LANDMARK_COLOUR = (255, 214, 0)


def is_image(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.")


def is_face(value: Any) -> bool:
    """A face-embedding face: ``{bbox, score, landmarks, embedding}``."""
    return isinstance(value, dict) and "bbox" in value and "embedding" in value


def face_groups(value: Any, task: Optional[str] = None) -> Optional[List[List[Dict[str, Any]]]]:
    """Face-embedding output as one list of faces per image (an empty list counts for that task)."""
    def faces(item: Any) -> bool:
        return isinstance(item, list) and all(is_face(f) for f in item) and (bool(item) or task == "face-embedding")

    if faces(value):
        return [value]
    if isinstance(value, list) and value and all(faces(v) for v in value):
        return value
    return None


def is_empty(image: Any) -> bool:
    """0 pixels wide or high: PIL cannot save it, so it is shown as its size only."""
    return image.size[0] == 0 or image.size[1] == 0


def png_base64(image: Any) -> str:
    """The image as base64 PNG; an empty image as one transparent pixel (PNG has no 0-pixel images)."""
    if is_empty(image):
        from PIL import Image
        image = Image.new("RGBA", (1, 1), (0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _size(image: Any) -> str:
    return f"{image.size[0]}×{image.size[1]}" + (" (empty)" if is_empty(image) else "")


def _figure(image: Any, caption: str, img_style: str = "", max_side: Optional[int] = None) -> str:
    """An embedded image with an (already escaped) caption under it."""
    shown = image
    if max_side and max(image.size) > max_side:
        shown = image.copy()
        shown.thumbnail((max_side, max_side))
    return (f'<figure style="margin:0 8px 8px 0;display:inline-block;vertical-align:top">'
            f'<img src="data:image/png;base64,{png_base64(shown)}" style="{img_style}"/>'
            f'<figcaption style="{BOX};color:#555;max-width:{shown.size[0]}px">{caption}</figcaption></figure>')


def render_image(image: Any) -> Bundle:
    """One image, inline at its size, with the size under it."""
    if is_empty(image):
        return {"text/plain": f"<empty image {image.size[0]}x{image.size[1]}>",
                "text/html": f'<div style="{BOX};color:#777">{_size(image)}</div>'}
    data = png_base64(image)
    return {"text/plain": f"<image {image.size[0]}x{image.size[1]}>", "image/png": data,
            "text/html": f'<figure style="margin:0"><img src="data:image/png;base64,{data}"/>'
                         f'<figcaption style="{BOX};color:#777">{_size(image)}</figcaption></figure>'}


def render_gallery(images: Sequence[Any]) -> Bundle:
    """Several images side by side, numbered, each with its size."""
    figures = "".join(_figure(im, f"#{i + 1} · {_size(im)}", max_side=GALLERY_SIDE) for i, im in enumerate(images))
    plain = f"{len(images)} images: " + ", ".join(f"#{i + 1} {im.size[0]}x{im.size[1]}" for i, im in enumerate(images))
    return {"text/plain": plain, "text/html": f'<div style="display:flex;flex-wrap:wrap">{figures}</div>'}


# ------------------------------------------------------------------------------------------------
# Outputs shown beside the job's input images


def pair_captions(value: Any, inputs: Sequence[Any]) -> Optional[List[Tuple[Any, List[str]]]]:
    """Each input image with its caption(s), or None when ``value`` is not captions of ``inputs``."""
    def texts(item: Any) -> Optional[List[str]]:
        if isinstance(item, str):
            return [item]
        if isinstance(item, list) and item and all(isinstance(t, str) for t in item):
            return item   # num_return_sequences > 1: several captions of one image
        return None

    if len(inputs) == 1 and texts(value) is not None:
        return [(inputs[0], texts(value))]
    if isinstance(value, list) and len(value) == len(inputs) and all(texts(v) is not None for v in value):
        return [(image, texts(v)) for image, v in zip(inputs, value)]
    return None


def render_captioned(pairs: Sequence[Tuple[Any, List[str]]]) -> Bundle:
    """Each image with its caption under it."""
    figures = "".join(_figure(image, "<br>".join(html.escape(c) for c in captions), max_side=GALLERY_SIDE)
                      for image, captions in pairs)
    lines = [" | ".join(captions) for _, captions in pairs]
    plain = lines[0] if len(lines) == 1 else "\n".join(f"{i + 1}. {line}" for i, line in enumerate(lines))
    return {"text/plain": plain, "text/html": f'<div style="display:flex;flex-wrap:wrap">{figures}</div>'}


def pair_upscaled(value: Any, inputs: Sequence[Any]) -> Optional[List[Tuple[Any, Any]]]:
    """(input, output) image pairs, or None when ``value`` is not one output image per input."""
    outputs = value if isinstance(value, list) else [value]
    if len(outputs) == len(inputs) and all(is_image(o) for o in outputs):
        return list(zip(inputs, outputs))
    return None


def before_after(before: Any, after: Any) -> Any:
    """One PNG: the input enlarged (nearest, so its pixels show) to the output's size, beside the output;
    None when either is empty."""
    from PIL import Image

    if is_empty(before) or is_empty(after):
        return None
    canvas = Image.new("RGB", (after.size[0] * 2, after.size[1]), "white")
    canvas.paste(before.convert("RGB").resize(after.size, Image.NEAREST), (0, 0))
    canvas.paste(after.convert("RGB"), (after.size[0], 0))
    return canvas


def render_upscaled(pairs: Sequence[Tuple[Any, Any]]) -> Bundle:
    """Before and after, shown at the same width; the ``image/png`` is the side-by-side composite."""
    rows, plain = [], []
    for before, after in pairs:
        width = min(after.size[0], GALLERY_SIDE)
        pixelated = f"width:{width}px;image-rendering:pixelated"
        rows.append(f'<div>{_figure(before, f"before · {_size(before)}", pixelated)}'
                    f'{_figure(after, f"after · {_size(after)}", f"width:{width}px")}</div>')
        plain.append(f"{before.size[0]}x{before.size[1]} -> {after.size[0]}x{after.size[1]}")
    bundle = {"text/plain": "upscaled " + ", ".join(plain), "text/html": "".join(rows)}
    composite = before_after(*pairs[0]) if len(pairs) == 1 else None
    if composite is not None:
        bundle["image/png"] = png_base64(composite)
    return bundle


# ------------------------------------------------------------------------------------------------
# Faces


def compare_faces(faces: Sequence[Any]) -> List[List[float]]:
    """The cosine-similarity matrix of faces (face dicts or bare embedding vectors)."""
    import numpy as np

    vectors = np.asarray([f["embedding"] if isinstance(f, dict) else f for f in faces], dtype=float)
    unit = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return (unit @ unit.T).tolist()


def draw_faces(image: Any, faces: Sequence[Dict[str, Any]], first_number: int = 1) -> Any:
    """A copy of ``image`` with each face's box, its number, and its landmarks drawn on."""
    from PIL import ImageDraw

    out = image.convert("RGB")   # a copy: the input image stays as it was
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 256))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (round(float(v)) for v in face["bbox"])
        draw.rectangle([x1, y1, x2, y2], outline=FACE_BOX_COLOUR, width=width)
        draw.text((x1 + width + 1, y1 + width + 1), str(first_number + i), fill=FACE_BOX_COLOUR)
        for x, y in face.get("landmarks") or []:
            draw.ellipse([x - width, y - width, x + width, y + width], fill=FACE_LANDMARK_COLOUR)
    return out


def _similarity_table(matrix: List[List[float]]) -> str:
    def cell(v: float) -> str:
        shade = round(255 - 160 * max(v, 0.0))
        return (f'<td style="background:rgb({shade},{shade},255);padding:2px 6px;text-align:right">'
                f'{v:+.2f}</td>')

    head = "".join(f'<th style="padding:2px 6px">#{j + 1}</th>' for j in range(len(matrix)))
    rows = "".join(f'<tr><th style="padding:2px 6px">#{i + 1}</th>{"".join(cell(v) for v in row)}</tr>'
                   for i, row in enumerate(matrix))
    return (f'<div style="{BOX};margin-top:6px"><b>cosine similarity</b>'
            f'<table style="border-collapse:collapse"><tr><th></th>{head}</tr>{rows}</table></div>')


def render_faces(groups: Sequence[Sequence[Dict[str, Any]]], inputs: Optional[Sequence[Any]] = None) -> Bundle:
    """Faces of one or several images: boxes drawn on each image (when the job's input images are
    known), numbered across images, and their cosine-similarity matrix when there are several."""
    faces = [face for group in groups for face in group]
    drawn, number = [], 1
    if inputs and len(inputs) == len(groups):
        for image, group in zip(inputs, groups):
            drawn.append(draw_faces(image, group, number))
            number += len(group)
    lines = [f"#{i + 1}: score {float(f.get('score', 0)):.3f}, bbox [{', '.join(f'{float(v):.0f}' for v in f['bbox'])}]"
             for i, f in enumerate(faces)]
    plain = f"{len(faces)} face{'s' if len(faces) != 1 else ''}" + ("".join("\n" + l for l in lines) if lines else "")
    parts = "".join(_figure(image, f"{_size(image)} · {len(group)} face{'s' if len(group) != 1 else ''}")
                    for image, group in zip(drawn, groups))
    parts += f'<div style="{BOX}">{"<br>".join(html.escape(l) for l in lines) or "no faces found"}</div>'
    if len(faces) > 1:
        matrix = compare_faces(faces)
        parts += _similarity_table(matrix)
        plain += "\ncosine similarity:\n" + "\n".join(
            f"#{i + 1:<3}" + " ".join(f"{v:+.2f}" for v in row) for i, row in enumerate(matrix))
    bundle = {"text/plain": plain, "text/html": parts}
    if len(drawn) == 1 and not is_empty(drawn[0]):
        bundle["image/png"] = png_base64(drawn[0])
    return bundle
