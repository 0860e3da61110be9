"""Dense-vision results shown on their images: detections as labelled boxes, segments as coloured masks,
a depth map coloured beside its image, a cutout over a checkerboard.

Each renderer is ``function(value, fields) -> bundle or None`` (``renderers.TASK_RENDERERS``): ``value``
is the task's result, ``fields`` the job's evaluated fields, whose ``image`` is the input drawn on (a
blank canvas of the result's size stands in when it cannot be read). None when ``value`` is not the
task's shape (a workflow's output may be anything). Bundles are static: an ``image/png`` for one image,
``text/html`` with the PNGs embedded, and a ``text/plain`` summary.
"""

from __future__ import annotations

import html
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .images import BOX, is_image, png_base64

Bundle = Dict[str, Any]
Colour = Tuple[int, int, int]

#: Box and mask colours, by class index (detections) or rank (segments).
PALETTE: Tuple[Colour, ...] = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                               (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
                               (170, 110, 40), (128, 0, 0))
MASK_OPACITY = 0.5
CANVAS: Colour = (235, 235, 235)          # the stand-in for an input image that cannot be read
CHECKER: Tuple[Colour, Colour] = ((255, 255, 255), (204, 204, 204))
CHECKER_SQUARE = 8
#: The depth colour map (near/high = bright yellow, far/low = dark purple: matplotlib's "inferno"), as
#: anchors interpolated linearly over 0..255.
DEPTH_COLOURS: Tuple[Colour, ...] = ((0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66),
                                     (245, 125, 21), (250, 193, 39), (252, 255, 164))


def colour(index: int) -> Colour:
    return PALETTE[index % len(PALETTE)]


# ------------------------------------------------------------------------------------------------
# Shapes and inputs


def _results(value: Any, keys: Sequence[str]) -> Optional[List[Dict[str, Any]]]:
    """``value`` as a list of per-image results with ``keys``, or None when it is not one or a list of them."""
    def fits(item: Any) -> bool:
        return isinstance(item, dict) and all(k in item for k in keys)

    if fits(value):
        return [value]
    if isinstance(value, list) and value and all(fits(v) for v in value):
        return value
    return None


def _inputs(fields: Dict[str, Any], count: int) -> List[Optional[Any]]:
    """The job's input images (RGB), one per result; None where one cannot be read."""
    from ..media import load_image

    image = fields.get("image")
    items = list(image) if isinstance(image, (list, tuple)) else [image]
    if image is None or len(items) != count:
        return [None] * count
    out: List[Optional[Any]] = []
    for item in items:
        try:
            out.append(load_image(item).convert("RGB"))
        except Exception:    # a renderer never fails a run: the canvas stands in
            out.append(None)
    return out


def _base(image: Optional[Any], width: int, height: int) -> Any:
    """The input to draw on: a copy of it when its size matches the result's, else a blank canvas."""
    from PIL import Image

    if image is not None and image.size == (width, height):
        return image.copy()
    return Image.new("RGB", (max(width, 1), max(height, 1)), CANVAS)


def _line_width(image: Any) -> int:
    return max(2, round(max(image.size) / 256))


def _tag(draw: Any, x: int, y: int, text: str, fill: Colour) -> None:
    """``text`` in white on a ``fill`` strip whose bottom-left is (x, y) (inside the image)."""
    left, top, right, bottom = draw.textbbox((0, 0), text)
    w, h = right - left + 4, bottom - top + 4
    y = max(y - h, 0)
    draw.rectangle([x, y, x + w, y + h], fill=fill)
    draw.text((x + 2 - left, y + 2 - top), text, fill=(255, 255, 255))


def _corners(box: Dict[str, int]) -> List[int]:
    return [box["x"], box["y"], box["x"] + box["width"] - 1, box["y"] + box["height"] - 1]


def _figure(image: Any, caption: str) -> str:
    return (f'<figure style="margin:0 8px 8px 0;display:inline-block;vertical-align:top">'
            f'<img src="data:image/png;base64,{png_base64(image)}"/>'
            f'<figcaption style="{BOX};color:#555">{caption}</figcaption></figure>')


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], swatches: Sequence[Colour]) -> str:
    cells = "".join(f'<th style="padding:1px 6px;text-align:left">{html.escape(h)}</th>' for h in head)
    body = "".join(
        f'<tr><td style="padding:1px 6px"><span style="display:inline-block;width:10px;height:10px;'
        f'background:rgb{tuple(c)}"></span></td>'
        + "".join(f'<td style="padding:1px 6px">{html.escape(v)}</td>' for v in row) + "</tr>"
        for row, c in zip(rows, swatches))
    return f'<table style="{BOX};border-collapse:collapse"><tr><th></th>{cells}</tr>{body}</table>'


def _bundle(pictures: List[Tuple[Any, str, str]], plain: str) -> Bundle:
    """(image, escaped caption, html beside it) per image; the ``image/png`` when there is one image."""
    parts = "".join(f'<div style="display:flex;gap:12px;align-items:flex-start;flex-wrap:wrap">'
                    f'{_figure(image, caption)}{extra}</div>' for image, caption, extra in pictures)
    bundle: Bundle = {"text/plain": plain, "text/html": parts}
    if len(pictures) == 1:
        bundle["image/png"] = png_base64(pictures[0][0])
    return bundle


def _numbered(blocks: List[str]) -> str:
    return blocks[0] if len(blocks) == 1 else "\n".join(f"image #{i + 1}: {b}" for i, b in enumerate(blocks))


def _box_text(box: Dict[str, int]) -> str:
    return f"({box['x']}, {box['y']}) {box['width']}×{box['height']}"


# ------------------------------------------------------------------------------------------------
# object-detection


def draw_detections(image: Any, objects: Sequence[Dict[str, Any]]) -> Any:
    """The image with each object's box in its class colour and ``label score`` on a strip above it."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    width = _line_width(image)
    for obj in objects:
        fill = colour(int(obj.get("label_id") or 0))
        x1, y1, x2, y2 = _corners(obj["bounding_box"])
        draw.rectangle([x1, y1, x2, y2], outline=fill, width=width)
        _tag(draw, x1, y1, f"{obj.get('label') or obj.get('label_id')} {float(obj['score']):.2f}", fill)
    return image


def render_detections(value: Any, fields: Dict[str, Any]) -> Optional[Bundle]:
    results = _results(value, ("objects", "width", "height"))
    if results is None:
        return None
    pictures, blocks = [], []
    for result, image in zip(results, _inputs(fields, len(results))):
        objects = result["objects"]
        drawn = draw_detections(_base(image, result["width"], result["height"]), objects)
        rows = [(str(o.get("label")), f"{float(o['score']):.3f}", _box_text(o["bounding_box"])) for o in objects]
        table = _table(("label", "score", "box (x, y) w×h"), rows, [colour(int(o.get("label_id") or 0)) for o in objects])
        pictures.append((drawn, f"{len(objects)} object{'s' * (len(objects) != 1)}", table if objects else ""))
        blocks.append(f"{len(objects)} object{'s' * (len(objects) != 1)}"
                      + "".join(f"\n  {label} {score} at {box}" for label, score, box in rows))
    return _bundle(pictures, _numbered(blocks))


# ------------------------------------------------------------------------------------------------
# image-segmentation


def draw_segments(image: Any, segments: Sequence[Dict[str, Any]]) -> Any:
    """The image with each segment's mask laid over it in its colour (half opaque) and its box outlined."""
    import numpy as np
    from PIL import Image, ImageDraw

    pixels = np.asarray(image, dtype=np.float32)
    for i, segment in reversed(list(enumerate(segments))):      # the best on top
        mask = segment.get("mask")
        if is_image(mask) and mask.size == image.size:
            where = np.asarray(mask.convert("L")) > 127
            pixels[where] = (1 - MASK_OPACITY) * pixels[where] + MASK_OPACITY * np.array(colour(i), np.float32)
    out = Image.fromarray(pixels.round().astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for i, segment in enumerate(segments):
        draw.rectangle(_corners(segment["bounding_box"]), outline=colour(i), width=_line_width(out))
    return out


def _segment_name(segment: Dict[str, Any]) -> str:
    if segment.get("label") is not None:
        return str(segment["label"])
    if segment.get("prompt_index") is not None:
        return f"box {segment['prompt_index']}"
    return "segment"


def render_segments(value: Any, fields: Dict[str, Any]) -> Optional[Bundle]:
    results = _results(value, ("segments", "width", "height"))
    if results is None:
        return None
    pictures, blocks = [], []
    for result, image in zip(results, _inputs(fields, len(results))):
        segments = result["segments"]
        drawn = draw_segments(_base(image, result["width"], result["height"]), segments)
        rows = [(_segment_name(s), f"{float(s['score']):.3f}", f"{int(s['area'])} px", _box_text(s["bounding_box"]))
                for s in segments]
        table = _table(("segment", "score", "area", "box (x, y) w×h"), rows, [colour(i) for i in range(len(rows))])
        pictures.append((drawn, f"{len(segments)} segment{'s' * (len(segments) != 1)}", table if segments else ""))
        blocks.append(f"{len(segments)} segment{'s' * (len(segments) != 1)}"
                      + "".join(f"\n  {name} {score}, {area} at {box}" for name, score, area, box in rows))
    return _bundle(pictures, _numbered(blocks))


# ------------------------------------------------------------------------------------------------
# depth-estimation and image-background-removal


def depth_colours(depth: Any) -> Any:
    """A grey depth image coloured by :data:`DEPTH_COLOURS` (level 0 the first anchor, 255 the last)."""
    import numpy as np
    from PIL import Image

    anchors = np.array(DEPTH_COLOURS, dtype=np.float32)
    at = np.linspace(0, 255, len(anchors))
    levels = np.arange(256)
    table = np.stack([np.interp(levels, at, anchors[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)
    return Image.fromarray(table[np.asarray(depth.convert("L"))])


def side_by_side(left: Any, right: Any) -> Any:
    from PIL import Image

    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas


def _images(value: Any, check: Callable[[Any], bool]) -> Optional[List[Any]]:
    items = value if isinstance(value, list) else [value]
    return items if items and all(is_image(v) and check(v) for v in items) else None


def render_depth(value: Any, fields: Dict[str, Any]) -> Optional[Bundle]:
    maps = _images(value, lambda v: v.mode == "L")
    if maps is None:
        return None
    pictures, blocks = [], []
    for depth, image in zip(maps, _inputs(fields, len(maps))):
        coloured = depth_colours(depth)
        shown = side_by_side(image, coloured) if image is not None and image.size == depth.size else coloured
        low, high = depth.getextrema()
        pictures.append((shown, f"depth {depth.width}×{depth.height} · bright = high value", ""))
        blocks.append(f"depth map {depth.width}x{depth.height}, levels {low}-{high}")
    return _bundle(pictures, _numbered(blocks))


def over_checkerboard(image: Any) -> Any:
    """An RGBA image over a grey-and-white checkerboard, so its transparent parts show as such."""
    import numpy as np
    from PIL import Image

    ys, xs = np.indices((image.height, image.width)) // CHECKER_SQUARE
    board = np.where(((xs + ys) % 2 == 0)[..., None], CHECKER[0], CHECKER[1]).astype(np.uint8)
    return Image.alpha_composite(Image.fromarray(board).convert("RGBA"), image.convert("RGBA")).convert("RGB")


def render_cutout(value: Any, fields: Dict[str, Any]) -> Optional[Bundle]:
    import numpy as np

    results = _images(value, lambda v: v.mode in ("RGBA", "L"))
    if results is None:
        return None
    pictures, blocks = [], []
    for result, image in zip(results, _inputs(fields, len(results))):
        alpha = result.getchannel("A") if result.mode == "RGBA" else result
        share = float(np.asarray(alpha, dtype=np.float32).mean() / 255.0)
        if result.mode == "RGBA":
            shown, what = over_checkerboard(result), "cutout"
        else:
            fits = image is not None and image.size == result.size
            shown, what = (side_by_side(image, result.convert("RGB")) if fits else result.convert("RGB")), "mask"
        pictures.append((shown, f"{what} {result.width}×{result.height} · {share:.0%} foreground", ""))
        blocks.append(f"{what} {result.width}x{result.height}, {share:.0%} foreground")
    return _bundle(pictures, _numbered(blocks))
