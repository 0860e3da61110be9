"""Image embeddings as a map of their images: the 2-D projection (PCA, as the text map) with each point drawn
as a thumbnail of the image it came from, beside the cosine heatmap; the matrix as text.

The images are the job's ``image`` field (:func:`input_images`), read as the task reads them; one that
cannot be read (or a run without them) stays a numbered dot. The interactive map
(:mod:`mc_jupyter.widgets.embedding_map`) takes its thumbnails and labels from here too.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any, Dict, List, Optional, Sequence

from . import renderers
from .images import png_base64

Bundle = Dict[str, Any]

MAP_THUMBNAIL = 52        # pixels: the longest side of a thumbnail on the static map


def input_images(fields: Dict[str, Any], count: int) -> List[Optional[Any]]:
    """The job's ``image`` field as ``count`` RGB PIL images (None for one that cannot be read; all None
    when the field does not hold ``count`` images)."""
    from ..errors import InputError
    from ..media import load_image

    value = fields.get("image")
    items = value if isinstance(value, (list, tuple)) else [value]
    if value is None or len(items) != count:
        return [None] * count
    images: List[Optional[Any]] = []
    for item in items:
        try:
            images.append(load_image(item).convert("RGB"))
        except (InputError, OSError, ValueError):
            images.append(None)
    return images


def image_labels(fields: Dict[str, Any], images: Sequence[Optional[Any]]) -> List[str]:
    """A label per image: ``#1 photo.jpg`` for a file (a path, or a PIL image opened from one), else
    ``#1 640x480`` (its size), else ``#1``."""
    value = fields.get("image")
    items = value if isinstance(value, (list, tuple)) else [value]
    labels = []
    for i, image in enumerate(images):
        item = items[i] if i < len(items) else None
        path = item.strip() if isinstance(item, str) and len(item) < 300 else getattr(item, "filename", "")
        if isinstance(path, str) and path and os.path.isfile(os.path.expanduser(path)):
            labels.append(f"#{i + 1} {os.path.basename(path)}")
        elif image is not None:
            labels.append(f"#{i + 1} {image.size[0]}x{image.size[1]}")
        else:
            labels.append(f"#{i + 1}")
    return labels


def thumbnail(image: Any, side: int) -> Any:
    """A copy of ``image`` whose longest side is at most ``side`` pixels (never enlarged)."""
    small = image.copy()
    small.thumbnail((side, side))
    return small


def thumbnail_uri(image: Any, side: int) -> str:
    """A ``data:image/png;base64,...`` URI of the image's thumbnail."""
    return "data:image/png;base64," + png_base64(thumbnail(image, side))


def image_map_figure(layout: Any, images: Sequence[Optional[Any]], labels: Sequence[str]) -> bytes:
    """The static map (PNG, 1100x460): the scatter with a numbered thumbnail per point, and the cosine
    heatmap (up to :data:`~mc_jupyter.display.renderers.HEATMAP_MAX` images)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    n = len(labels)
    heatmap = 2 <= n <= renderers.HEATMAP_MAX
    fig = Figure(figsize=(11, 4.6), dpi=100)
    grid = fig.add_gridspec(1, 2 if heatmap else 1, width_ratios=[6.2, 3.8] if heatmap else [1],
                            left=0.01, right=0.99, top=0.93, bottom=0.04, wspace=0.08)
    scatter = fig.add_subplot(grid[0, 0])
    xy = layout.xy
    dots = [i for i, image in enumerate(images) if image is None]   # a point without its image: a dot
    scatter.scatter(xy[:, 0], xy[:, 1], s=0)                          # the axes' limits take every point
    scatter.scatter(xy[dots, 0], xy[dots, 1], s=150, c="#2f7ed8", edgecolors="white", linewidths=0.8, zorder=2)
    scatter.set_title(f"2-D projection ({layout.method}) of {n} images", fontsize=10)
    scatter.set_xticks([]), scatter.set_yticks([])
    scatter.margins(0.14)
    for side in scatter.spines.values():
        side.set_color("#ccc")
    half = MAP_THUMBNAIL / 2 * 72 / fig.dpi   # points
    for i, ((x, y), image) in enumerate(zip(xy, images)):
        if image is not None:   # zoom: one image pixel per screen pixel
            picture = OffsetImage(np.asarray(thumbnail(image, MAP_THUMBNAIL)), zoom=72 / fig.dpi)
            scatter.add_artist(AnnotationBbox(picture, (x, y), frameon=True, pad=0.1, zorder=3,
                                              bboxprops={"edgecolor": "#555", "linewidth": 0.6}))
        corner = (-half, half) if image is not None else (0, 0)
        scatter.annotate(str(i + 1), (x, y), textcoords="offset points", xytext=corner, ha="center", va="center",
                         fontsize=7, fontweight="bold", color="#222" if image is not None else "white", zorder=4,
                         bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#555", "lw": 0.5}
                         if image is not None else None)
    if heatmap:
        renderers.draw_heatmap(fig.add_subplot(grid[0, 1]), layout.sim)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def render_image_embeddings(value: Any, fields: Dict[str, Any]) -> Optional[Bundle]:
    """image-embedding's bundle for several vectors: the map of thumbnails and the cosine matrix as text;
    None for anything else (one vector shows as text-embedding's does)."""
    if not isinstance(value, list) or len(value) < 2:
        return None
    vectors = [renderers.as_embedding(v) for v in value]
    if any(v is None for v in vectors):
        return None
    images = input_images(fields, len(vectors))
    return image_map_bundle(renderers.EmbeddingLayout(vectors), images, image_labels(fields, images))


def image_map_bundle(layout: Any, images: Sequence[Optional[Any]], labels: Sequence[str]) -> Bundle:
    """The static map of :func:`image_map_figure` as a bundle, with the cosine matrix as text."""
    png = base64.b64encode(image_map_figure(layout, images, labels)).decode()
    text = renderers.embeddings_text(layout, labels).replace(" embeddings of", " image embeddings of", 1)
    return {"text/plain": text, "image/png": png,
            "text/html": f'<img src="data:image/png;base64,{png}" style="max-width:100%" '
                         f'alt="{len(labels)} image embeddings: {layout.method} map of their thumbnails and cosine '
                         f'similarity"/>'}
