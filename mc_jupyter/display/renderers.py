"""One renderer per kind of output. Each returns a MIME bundle whose ``text/html`` (or
``image/png``) is static, so saved notebooks, VS Code, Colab and nbconvert show it too.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import images
from .images import BOX as _BOX

Bundle = Dict[str, Any]


def _esc(text: Any) -> str:
    return html.escape(str(text))


# ------------------------------------------------------------------------------------------------
# Detection


def is_vector(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                              for x in value[:64])


def as_embedding(value: Any) -> Optional[List[float]]:
    if isinstance(value, dict) and is_vector(value.get("embedding")):
        return value["embedding"]
    if is_vector(value) and len(value) >= 8:
        return value
    return None


def as_classification(value: Any) -> Optional[Dict[str, Any]]:
    if isinstance(value, dict) and "label" in value and isinstance(value.get("score"), (int, float)):
        return value
    return None


def is_hit(value: Any) -> bool:
    """A vector store's search hit: ``{id, score, metadata?, distance?, document?}``."""
    return (isinstance(value, dict) and "id" in value and isinstance(value.get("score"), (int, float))
            and set(value) <= {"id", "score", "distance", "metadata", "document"})


def kind_of(value: Any, task: Optional[str] = None, inputs: Optional[Sequence[Any]] = None) -> str:
    """What ``value`` is, to pick its renderer; ``task`` and the job's input images show some
    outputs beside their inputs (captions, upscaling)."""
    if inputs and task == "image-to-text" and images.pair_captions(value, inputs):
        return "captioned"
    if inputs and task == "image-upscale" and images.pair_upscaled(value, inputs):
        return "upscaled"
    media = _media_kind(value)
    if media:
        return media
    if isinstance(value, str):
        return "text"
    if as_classification(value):
        return "classification"
    if images.face_groups(value, task) is not None:
        return "faces"
    if as_embedding(value) is not None:
        return "embedding"
    if isinstance(value, list) and value:
        if all(is_hit(v) for v in value):
            return "hits"
        if all(isinstance(v, list) and all(is_hit(h) for h in v) for v in value) and any(value):
            return "hit-lists"
        if all(as_classification(v) for v in value):
            return "classifications"
        if all(as_embedding(v) is not None for v in value):
            return "embeddings"
        if all(isinstance(v, str) for v in value):
            return "texts"
        if all(images.is_image(v) for v in value):
            return "images"
    if images.is_image(value):
        return "image"
    return "value"


def _media_kind(value: Any) -> Optional[str]:
    """"audio", "audios", "media" (video, file, 3D) or "markdown" for mc_jupyter.media's values (``as audio``...)."""
    import sys
    media = sys.modules.get("mc_jupyter.media")   # only a value made by it can be one of its types
    if media is None:
        return None
    if isinstance(value, media.Audio):
        return "audio"
    if isinstance(value, list) and value and all(isinstance(v, media.Audio) for v in value):
        return "audios"
    if isinstance(value, media.Media):
        return "media"
    if isinstance(value, media.Markdown):
        return "markdown"
    return None


# ------------------------------------------------------------------------------------------------
# Renderers



def render_text(text: str, footer: str = "") -> Bundle:
    body = f'<div style="{_BOX};white-space:pre-wrap">{_esc(text)}</div>'
    if footer:
        body += f'<div style="{_BOX};color:#777;font-size:11px;margin-top:4px">{_esc(footer)}</div>'
    return {"text/plain": text + (f"\n[{footer}]" if footer else ""), "text/html": body}


def render_texts(texts: Sequence[str], labels: Optional[Sequence[str]] = None) -> Bundle:
    rows = "".join(
        f'<tr><td style="color:#777;vertical-align:top;padding-right:8px">{_esc(labels[i] if labels else i + 1)}</td>'
        f'<td style="white-space:pre-wrap">{_esc(t)}</td></tr>' for i, t in enumerate(texts))
    plain = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(texts))
    return {"text/plain": plain, "text/html": f'<table style="{_BOX}">{rows}</table>'}


def _bars(scores: Dict[str, float], best: str) -> str:
    rows = []
    for label, p in sorted(scores.items(), key=lambda kv: -kv[1])[:10]:
        colour = "#2f7ed8" if label == best else "#9bbce0"
        rows.append(
            f'<div style="display:flex;align-items:center;gap:8px;margin:2px 0">'
            f'<span style="width:120px;text-align:right;{"font-weight:600" if label == best else ""}">{_esc(label)}</span>'
            f'<span style="flex:0 0 240px;background:#eee;height:12px;border-radius:2px">'
            f'<span style="display:block;width:{max(p, 0) * 100:.1f}%;height:12px;background:{colour};border-radius:2px"></span>'
            f'</span><span style="width:60px">{p:.3f}</span></div>')
    return "".join(rows)


def render_classification(result: Dict[str, Any], text: Optional[str] = None) -> Bundle:
    scores = result.get("scores") or {result["label"]: result["score"]}
    head = f'<div style="color:#555;margin-bottom:2px">{_esc(text)}</div>' if text else ""
    plain = f"{result['label']} ({result['score']:.3f})"
    return {"text/plain": plain, "text/html": f'<div style="{_BOX}">{head}{_bars(scores, result["label"])}</div>'}


def render_classifications(results: Sequence[Dict[str, Any]], texts: Optional[Sequence[str]] = None) -> Bundle:
    parts, plain = [], []
    for i, r in enumerate(results):
        t = texts[i] if texts and i < len(texts) else f"#{i + 1}"
        parts.append(render_classification(r, t)["text/html"])
        plain.append(f"{t}: {r['label']} ({r['score']:.3f})")
    return {"text/plain": "\n".join(plain), "text/html": "<hr style='margin:4px 0'>".join(parts)}


def _hit_text(hit: Dict[str, Any]) -> str:
    """The words of a hit: its document, else its metadata's text-like field, else its metadata."""
    meta = hit.get("metadata") or {}
    if hit.get("document"):
        return str(hit["document"])
    for key in ("text", "document", "content", "chunk", "passage", "title"):
        if isinstance(meta.get(key), str):
            return meta[key]
    return json.dumps(meta, ensure_ascii=False, default=str) if meta else ""


def render_hits(hits: Sequence[Dict[str, Any]], title: Optional[str] = None) -> Bundle:
    """A ranked table of search hits: rank, id, score (a bar), the passage, the other metadata."""
    top = max((abs(h["score"]) for h in hits), default=1.0) or 1.0
    rows, plain = [], []
    for rank, h in enumerate(hits, 1):
        meta = {k: v for k, v in (h.get("metadata") or {}).items() if _hit_text({"metadata": {k: v}}) != _hit_text(h)}
        extra = ", ".join(f"{k}: {v}" for k, v in meta.items())
        text = _hit_text(h)
        width = max(0.0, h["score"]) / top * 100
        rows.append(f'<tr><td style="color:#777;text-align:right">{rank}</td><td><code>{_esc(h["id"])}</code></td>'
                    f'<td style="white-space:nowrap"><span style="display:inline-block;width:60px;background:#eee;'
                    f'height:10px;border-radius:2px;vertical-align:middle"><span style="display:block;width:{width:.1f}%;'
                    f'height:10px;background:#2f7ed8;border-radius:2px"></span></span> {h["score"]:.4f}</td>'
                    f'<td style="white-space:pre-wrap;max-width:520px">{_esc(text if len(text) <= 400 else text[:397] + "...")}'
                    f'</td><td style="color:#777">{_esc(extra)}</td></tr>')
        plain.append(f"{rank}. {h['id']}  {h['score']:.4f}  {text[:100]}" + (f"  ({extra})" if extra else ""))
    head = f'<div style="color:#555;margin-bottom:2px">{_esc(title)}</div>' if title else ""
    table = (f'<table style="{_BOX};border-collapse:collapse"><thead><tr><th>#</th><th>id</th><th>score</th>'
             f'<th>passage</th><th>metadata</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return {"text/plain": ((title + "\n") if title else "") + ("\n".join(plain) or "no hits"),
            "text/html": f'<div style="{_BOX}">{head}{table if hits else "<i>no hits</i>"}</div>'}


def render_hit_lists(lists: Sequence[Sequence[Dict[str, Any]]], texts: Optional[Sequence[str]] = None) -> Bundle:
    parts = [render_hits(hits, texts[i] if texts and i < len(texts) else f"query {i + 1}") for i, hits in enumerate(lists)]
    return {"text/plain": "\n\n".join(p["text/plain"] for p in parts),
            "text/html": "<hr style='margin:4px 0'>".join(p["text/html"] for p in parts)}


def render_embedding(vector: Sequence[float]) -> Bundle:
    n = len(vector)
    norm = math.sqrt(sum(x * x for x in vector))
    head = ", ".join(f"{x:+.4f}" for x in vector[:6])
    lo, hi = min(vector), max(vector)
    spark = _sparkline(vector[:96], lo, hi)
    plain = f"embedding: {n} dimensions, L2 norm {norm:.4f}, [{head}, ...]"
    html_ = (f'<div style="{_BOX}"><b>embedding</b> · {n} dimensions · L2 norm {norm:.4f} · '
             f'min {lo:+.3f} · max {hi:+.3f}<br><code>[{_esc(head)}, …]</code><br>{spark}</div>')
    return {"text/plain": plain, "text/html": html_}


def _sparkline(values: Sequence[float], lo: float, hi: float) -> str:
    span = (hi - lo) or 1.0
    bars = "".join(
        f'<span style="display:inline-block;width:3px;margin-right:1px;background:#2f7ed8;'
        f'height:{2 + 22 * (v - lo) / span:.0f}px"></span>' for v in values)
    return f'<div style="display:flex;align-items:flex-end;height:26px">{bars}</div>'


#: The most texts the cosine heatmap is drawn for (beyond it, cells would be under a pixel or two).
HEATMAP_MAX = 50
#: UMAP replaces PCA from this many texts on, where umap-learn is installed (fewer: PCA says more).
UMAP_MIN = 10


class EmbeddingLayout:
    """The 2-D picture of several embeddings: ``xy`` (one point per vector), ``sim`` (the cosine
    similarity matrix) and ``method`` ("PCA" or "UMAP"). :meth:`project` places a new vector on the same
    axes (the map's query point); :meth:`cosines` scores it against every vector."""

    def __init__(self, vectors: Sequence[Sequence[float]]):
        import numpy as np

        self.vectors = np.asarray(vectors, dtype=float)
        n = len(self.vectors)
        self.unit = self.vectors / np.clip(np.linalg.norm(self.vectors, axis=1, keepdims=True), 1e-12, None)
        self.sim = self.unit @ self.unit.T
        self.mean = self.vectors.mean(axis=0)
        self.axes = np.zeros((2, self.vectors.shape[1]))
        if n >= 2:
            _, _, vt = np.linalg.svd(self.vectors - self.mean, full_matrices=False)
            self.axes[:min(2, len(vt))] = vt[:2]
        self.method, self._umap = "PCA", None
        self.xy = (self.vectors - self.mean) @ self.axes.T
        if n >= UMAP_MIN:
            self._try_umap()

    def _try_umap(self) -> None:
        try:
            import umap
        except ImportError:
            return
        try:
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(self.vectors) - 1), metric="cosine",
                                random_state=0)
            self.xy = reducer.fit_transform(self.vectors)
        except Exception:   # a degenerate set UMAP cannot lay out: PCA is still a faithful picture
            return
        self.method, self._umap = "UMAP", reducer

    def project(self, vector: Sequence[float]) -> List[float]:
        import numpy as np

        v = np.asarray(vector, dtype=float)
        if self._umap is not None:
            return [float(c) for c in self._umap.transform(v[None, :])[0]]
        return [float(c) for c in (v - self.mean) @ self.axes.T]

    def cosines(self, vector: Sequence[float]) -> List[float]:
        import numpy as np

        v = np.asarray(vector, dtype=float)
        return [float(c) for c in self.unit @ (v / max(float(np.linalg.norm(v)), 1e-12))]


def _fit(text: str, width: int) -> str:
    """``text`` on one line of at most ``width`` characters (an ellipsis says it was cut)."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:max(width - 1, 1)] + "…"


def _label_points(ax, xy, labels: Sequence[str], renderer) -> None:
    """Each point's number in its marker and its text beside it, each only where it overlaps nothing
    already drawn (a crowded point stays a plain dot: the widget's hover names it)."""
    taken = []

    def place(text, box_of):
        box = box_of(text)
        frame = ax.get_window_extent(renderer)
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        if not inside or any(box.overlaps(other) for other in taken):
            text.remove()
            return False
        taken.append(box)
        return True

    numbered = [place(ax.annotate(str(i + 1), (px, py), ha="center", va="center", fontsize=7, color="white",
                                  fontweight="bold", zorder=4),
                      lambda t: t.get_window_extent(renderer).expanded(2.2, 2.0))
                for i, (px, py) in enumerate(xy)]
    for i, (px, py) in enumerate(xy):
        if numbered[i]:
            place(ax.annotate(_fit(labels[i], 24), (px, py), textcoords="offset points", xytext=(9, -3),
                              fontsize=8, color="#333", zorder=3), lambda t: t.get_window_extent(renderer))


def _legend(ax, labels: Sequence[str]) -> None:
    """Number -> text, in one or two columns that fill the axes' height, each line cut to its column."""
    n = len(labels)
    columns = 1 if n <= 25 else 2
    rows = math.ceil(n / columns)
    size = max(6.0, min(9.5, 300 / max(rows, 1)))
    box = ax.get_position()
    column_px = box.width * ax.figure.get_figwidth() * ax.figure.dpi / columns
    chars = int(column_px / (0.55 * size * ax.figure.dpi / 72)) - 4
    ax.set_axis_off()
    for i, label in enumerate(labels):
        col, row = divmod(i, rows)
        ax.text(col / columns, 1 - (row + 0.5) / max(rows, 12), f"{i + 1:>2}  {_fit(label, chars)}",
                fontsize=size, va="center", ha="left", transform=ax.transAxes)


def draw_heatmap(ax, sim) -> None:
    """The cosine-similarity matrix on ``ax``: numbered ticks (at most 20), the values written up to 12 points."""
    n = len(sim)
    ax.imshow(sim, cmap="viridis", vmin=min(0.0, float(sim.min())), vmax=1.0)
    ticks = list(range(0, n, max(1, math.ceil(n / 20))))
    ax.set_xticks(ticks), ax.set_yticks(ticks)
    ax.set_xticklabels([str(i + 1) for i in ticks], fontsize=7)
    ax.set_yticklabels([str(i + 1) for i in ticks], fontsize=7)
    ax.tick_params(length=0)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7 if n > 8 else 8,
                        color="white" if sim[i, j] < 0.6 else "black")
    ax.set_title("cosine similarity", fontsize=10)


def embeddings_figure(layout: EmbeddingLayout, labels: Sequence[str]) -> bytes:
    """The static map (PNG, 1100×460, readable at a notebook's width): the 2-D scatter with numbered
    points (a text beside its point only where it fits), the cosine heatmap (up to :data:`HEATMAP_MAX`
    texts) and the legend of numbers to texts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(labels)
    heatmap = 2 <= n <= HEATMAP_MAX
    fig = Figure(figsize=(11, 4.6), dpi=100)
    grid = fig.add_gridspec(1, 3 if heatmap else 2, width_ratios=[4.2, 3.4, 3.4] if heatmap else [6, 4],
                            left=0.01, right=0.99, top=0.93, bottom=0.04, wspace=0.12)
    scatter = fig.add_subplot(grid[0, 0])
    xy = layout.xy
    scatter.scatter(xy[:, 0], xy[:, 1], s=150, c="#2f7ed8", edgecolors="white", linewidths=0.8, zorder=2)
    scatter.set_title(f"2-D projection ({layout.method})", fontsize=10)
    scatter.set_xticks([]), scatter.set_yticks([])
    scatter.margins(0.12)
    for side in scatter.spines.values():
        side.set_color("#ccc")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()   # the axes' final size, to know which texts fit
    _label_points(scatter, xy, labels, canvas.get_renderer())
    if heatmap:
        draw_heatmap(fig.add_subplot(grid[0, 1]), layout.sim)
    _legend(fig.add_subplot(grid[0, -1]), labels)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def embeddings_text(layout: EmbeddingLayout, labels: Sequence[str]) -> str:
    """The cosine matrix as text, one row per text."""
    short = [_fit(l, 28) for l in labels]
    return f"{len(labels)} embeddings of {layout.vectors.shape[1]} dimensions; cosine similarity:\n" + "\n".join(
        f"{short[i]:>28}  " + " ".join(f"{v:+.2f}" for v in row) for i, row in enumerate(layout.sim))


def embedding_labels(n: int, labels: Optional[Sequence[str]]) -> List[str]:
    """The texts that label ``n`` vectors, or ``#1``, ``#2``... when they are not known."""
    return [str(l) for l in labels] if labels and len(labels) == n else [f"#{i + 1}" for i in range(n)]


def render_embeddings(vectors: Sequence[Sequence[float]], labels: Optional[Sequence[str]] = None,
                      layout: Optional[EmbeddingLayout] = None) -> Bundle:
    """The static map: a PNG of the scatter, the cosine heatmap and the legend, and the matrix as text."""
    layout = layout or EmbeddingLayout(vectors)
    labels = embedding_labels(len(layout.vectors), labels)
    png = base64.b64encode(embeddings_figure(layout, labels)).decode()
    return {"text/plain": embeddings_text(layout, labels), "image/png": png,
            "text/html": f'<img src="data:image/png;base64,{png}" style="max-width:100%" '
                         f'alt="{len(labels)} embeddings: {layout.method} map and cosine similarity"/>'}


def render_audio(audio: Any) -> Bundle:
    """An ``<audio controls>`` player (the same tag is the static fallback: the data is inline),
    with the mime type, sample rate and size under it."""
    rate = f" · {audio.sample_rate} Hz" if audio.sample_rate else ""
    caption = f"{audio.mime}{rate} · {len(audio.data):,} bytes"
    return {"text/plain": repr(audio),
            "text/html": f'<figure style="margin:0">{audio.html()}'
                         f'<figcaption style="{_BOX};color:#777">{_esc(caption)}</figcaption></figure>'}


def render_audios(audios: Sequence[Any]) -> Bundle:
    """Several players, numbered."""
    rows = "".join(f'<div style="display:flex;align-items:center;gap:8px"><span style="color:#777">#{i + 1}</span>'
                   f'{a.html()}</div>' for i, a in enumerate(audios))
    return {"text/plain": "\n".join(f"#{i + 1} {a!r}" for i, a in enumerate(audios)), "text/html": rows}


def render_markdown(text: str) -> Bundle:
    """Markdown text (``as markdown``); the HTML fallback is the text as written."""
    return {"text/plain": str(text), "text/markdown": str(text),
            "text/html": f'<div style="{_BOX};white-space:pre-wrap">{_esc(text)}</div>'}


def render_value(value: Any) -> Bundle:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 20000:
        text = text[:20000] + "\n…"
    return {"text/plain": text, "text/html": f'<pre style="{_BOX}">{_esc(text)}</pre>'}


#: A task's own picture of its result (boxes drawn on the image, a transcript beside its audio, a ranking):
#: ``"module:function"``, imported on first use and called as ``function(value, fields)`` with the job's
#: evaluated fields; it returns a bundle, or None to fall back to the renderers by kind below.
TASK_RENDERERS: Dict[str, str] = {
    "text-reranking": "mc_jupyter.display.reranking:render_ranking",
    "speech-to-text": "mc_jupyter.display.speech:render_transcript",
    "image-text-to-text": "mc_jupyter.display.vision_chat:render_reply",
    "image-embedding": "mc_jupyter.display.image_embedding:render_image_embeddings",
    "vision-text-encoding": "mc_jupyter.display.vision_text_encoding:render_encodings",
    "object-detection": "mc_jupyter.display.dense_vision:render_detections",
    "image-segmentation": "mc_jupyter.display.dense_vision:render_segments",
    "depth-estimation": "mc_jupyter.display.dense_vision:render_depth",
    "image-background-removal": "mc_jupyter.display.dense_vision:render_cutout",
}


def task_renderer(task: Optional[str]) -> Optional[Callable[[Any, Dict[str, Any]], Optional[Bundle]]]:
    """The task's own renderer (:data:`TASK_RENDERERS`), or None."""
    import importlib

    target = TASK_RENDERERS.get(task or "")
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def render(value: Any, texts: Optional[Sequence[str]] = None, footer: str = "", task: Optional[str] = None,
           inputs: Optional[Sequence[Any]] = None, fields: Optional[Dict[str, Any]] = None) -> Bundle:
    """The bundle for any output value; ``texts`` label list outputs; ``task`` and ``inputs`` (the
    job's input images) put image outputs beside their inputs; ``fields`` (the job's evaluated fields)
    go to the task's own renderer (:data:`TASK_RENDERERS`) when it has one."""
    own = task_renderer(task)
    if own is not None:
        bundle = own(value, dict(fields or {}))
        if bundle is not None:
            return bundle
    kind = kind_of(value, task, inputs)
    renderers: Dict[str, Callable[[], Bundle]] = {
        "text": lambda: render_text(value, footer),
        "texts": lambda: render_texts(value, texts),
        "classification": lambda: render_classification(value, texts[0] if texts and len(texts) == 1 else None),
        "classifications": lambda: render_classifications(value, texts),
        "hits": lambda: render_hits(value),
        "hit-lists": lambda: render_hit_lists(value, texts),
        "embedding": lambda: render_embedding(as_embedding(value)),
        "embeddings": lambda: render_embeddings([as_embedding(v) for v in value], texts),
        "image": lambda: images.render_image(value),
        "images": lambda: images.render_gallery(value),
        "captioned": lambda: images.render_captioned(images.pair_captions(value, inputs)),
        "upscaled": lambda: images.render_upscaled(images.pair_upscaled(value, inputs)),
        "faces": lambda: images.render_faces(images.face_groups(value, task), inputs),
        "audio": lambda: render_audio(value),
        "audios": lambda: render_audios(value),
        "media": lambda: {"text/plain": repr(value), "text/html": value.html()},
        "markdown": lambda: render_markdown(value),
    }
    return renderers.get(kind, lambda: render_value(value))()
