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


def kind_of(value: Any, task: Optional[str] = None, inputs: Optional[Sequence[Any]] = None) -> str:
    """What ``value`` is, to pick its renderer; ``task`` and the job's input images show some
    outputs beside their inputs (captions, upscaling)."""
    if inputs and task == "image-to-text" and images.pair_captions(value, inputs):
        return "captioned"
    if inputs and task == "image-upscale" and images.pair_upscaled(value, inputs):
        return "upscaled"
    if isinstance(value, str):
        return "text"
    if as_classification(value):
        return "classification"
    if images.face_groups(value, task) is not None:
        return "faces"
    if as_embedding(value) is not None:
        return "embedding"
    if isinstance(value, list) and value:
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


def render_embeddings(vectors: Sequence[Sequence[float]], labels: Optional[Sequence[str]] = None) -> Bundle:
    """A 2-D PCA scatter labelled by text, beside the cosine-similarity heatmap."""
    import numpy as np
    from matplotlib.figure import Figure

    x = np.asarray(vectors, dtype=float)
    n = len(x)
    labels = [str(l) for l in labels] if labels and len(labels) == n else [f"#{i + 1}" for i in range(n)]
    short = [l if len(l) <= 28 else l[:26] + "…" for l in labels]
    unit = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    sim = unit @ unit.T
    centred = x - x.mean(axis=0)
    if n >= 2:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        if xy.shape[1] == 1:
            xy = np.hstack([xy, np.zeros_like(xy)])
    else:
        xy = np.zeros((n, 2))
    fig = Figure(figsize=(11, 4.6), dpi=100)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ax1.scatter(xy[:, 0], xy[:, 1], c="#2f7ed8")
    for (px, py), label in zip(xy, short):
        ax1.annotate(label, (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax1.set_title("2-D projection (PCA)")
    ax1.set_xticks([]), ax1.set_yticks([])
    im = ax2.imshow(sim, cmap="viridis", vmin=min(0.0, float(sim.min())), vmax=1.0)
    ax2.set_xticks(range(n)), ax2.set_yticks(range(n))
    ax2.set_xticklabels(short, rotation=60, ha="right", fontsize=8)
    ax2.set_yticklabels(short, fontsize=8)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax2.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7,
                         color="white" if sim[i, j] < 0.6 else "black")
    ax2.set_title("cosine similarity")
    fig.colorbar(im, ax=ax2, fraction=0.046)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    png = buf.getvalue()
    plain = f"{n} embeddings of {x.shape[1]} dimensions; cosine similarity:\n" + "\n".join(
        f"{short[i]:>28}  " + " ".join(f"{v:+.2f}" for v in sim[i]) for i in range(n))
    return {"text/plain": plain, "image/png": base64.b64encode(png).decode(),
            "text/html": f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" '
                         f'alt="embeddings: PCA scatter and cosine similarity"/>'}


def render_value(value: Any) -> Bundle:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 20000:
        text = text[:20000] + "\n…"
    return {"text/plain": text, "text/html": f'<pre style="{_BOX}">{_esc(text)}</pre>'}


def render(value: Any, texts: Optional[Sequence[str]] = None, footer: str = "", task: Optional[str] = None,
           inputs: Optional[Sequence[Any]] = None) -> Bundle:
    """The bundle for any output value; ``texts`` label list outputs; ``task`` and ``inputs`` (the
    job's input images) put image outputs beside their inputs."""
    kind = kind_of(value, task, inputs)
    renderers: Dict[str, Callable[[], Bundle]] = {
        "text": lambda: render_text(value, footer),
        "texts": lambda: render_texts(value, texts),
        "classification": lambda: render_classification(value, texts[0] if texts and len(texts) == 1 else None),
        "classifications": lambda: render_classifications(value, texts),
        "embedding": lambda: render_embedding(as_embedding(value)),
        "embeddings": lambda: render_embeddings([as_embedding(v) for v in value], texts),
        "image": lambda: images.render_image(value),
        "images": lambda: images.render_gallery(value),
        "captioned": lambda: images.render_captioned(images.pair_captions(value, inputs)),
        "upscaled": lambda: images.render_upscaled(images.pair_upscaled(value, inputs)),
        "faces": lambda: images.render_faces(images.face_groups(value, task), inputs),
    }
    return renderers.get(kind, lambda: render_value(value))()
