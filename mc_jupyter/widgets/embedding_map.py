"""The embedding map: a ``%%run`` of text-embedding over several texts, as a map you can explore.

An anywidget view (``embedding_map.js``, no build step): the 2-D scatter (PCA; UMAP where umap-learn
is installed and there are at least :data:`~mc_jupyter.display.renderers.UMAP_MIN` texts), each point
numbered, hover showing its whole text; the cosine heatmap beside it (up to
:data:`~mc_jupyter.display.renderers.HEATMAP_MAX` texts); a query box that embeds a new text with the
same component (the kernel reruns the job's action with ``text`` replaced, :func:`mc_jupyter.engine.rerun`)
and highlights its nearest neighbours with their cosine scores.

A map of image embeddings (an ``image-embedding`` job) draws each point as a thumbnail of its image and
shows the bigger picture on hover; its query box embeds a text with a ``text-embedding`` component of
the same model (a CLIP or SigLIP text tower gives vectors in its images' space), found among the loaded
components or named: ``m.query("a red apple", text_component="clip_text")``.

The Python side works without a browser::

    m = result.widget                      # or embedding_map.view(outcome, registry)
    m.query("a small cat")                 # [("kitten", 0.83), ("cat", 0.79), ...], best first

A run's output shows as one MIME bundle: this widget's view beside the static PNG (the same map,
drawn by matplotlib) and the text matrix, so nbconvert, GitHub and a saved notebook show the PNG.
:func:`install` registers the view with :class:`~mc_jupyter.display.result.RunResult`.

anywidget (and so ipywidgets) is imported when the first map is made, never on import.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..display import image_embedding, renderers
from ..display.result import WIDGET_VIEW, register_view, widget_view
from ..engine import JobRecord, RunOutcome, rerun
from ..registry import Registry
from ..secrets import scrub

HERE = pathlib.Path(__file__).parent
NEIGHBOURS = 5          # how many neighbours a query lists
THUMBNAIL = 160         # pixels: the longest side of an image point's picture (drawn small, shown whole on hover)


Embed = Callable[[str], List[float]]


def _widget_class() -> type:
    """The anywidget class, defined on first use (importing anywidget imports ipywidgets)."""
    global _CLASS
    if _CLASS is None:
        import anywidget
        import traitlets

        class EmbeddingMapWidget(anywidget.AnyWidget):
            _esm = HERE / "embedding_map.js"
            _css = HERE / "embedding_map.css"
            points = traitlets.List().tag(sync=True)        # [{x, y, text, image?}], texts scrubbed; image: a data URI
            method = traitlets.Unicode("PCA").tag(sync=True)
            sim = traitlets.List().tag(sync=True)           # the cosine matrix, [] past HEATMAP_MAX
            can_query = traitlets.Bool(False).tag(sync=True)
            query_hint = traitlets.Unicode("").tag(sync=True)
            query_text = traitlets.Unicode("").tag(sync=True)
            query_point = traitlets.List().tag(sync=True)   # [x, y] of the last query, on the map's axes
            neighbours = traitlets.List().tag(sync=True)    # [{index, score}], best first
            query_error = traitlets.Unicode("").tag(sync=True)
            busy = traitlets.Bool(False).tag(sync=True)

        _CLASS = EmbeddingMapWidget
    return _CLASS


_CLASS: Optional[type] = None


class EmbeddingMap:
    """An explorable map of ``vectors`` labelled by ``texts``; ``embed`` (a text -> its vector with the
    same component) enables :meth:`query`. ``images`` (PIL images or None, one per vector) draw the points
    as thumbnails; ``find_text_component`` (an id -> an ``embed``) lets :meth:`query` take another
    component. ``.widget`` is the anywidget shown in a notebook."""

    def __init__(self, vectors: Sequence[Sequence[float]], texts: Optional[Sequence[str]] = None,
                 embed: Optional[Embed] = None, why_no_query: str = "", images: Optional[Sequence[Any]] = None,
                 text_component: Optional[str] = None,
                 find_text_component: Optional[Callable[[str], Embed]] = None):
        self.layout = renderers.EmbeddingLayout(vectors)
        self.texts = renderers.embedding_labels(len(self.layout.vectors), texts)
        self.images = list(images) if images else []
        self.embed, self.text_component, self._find = embed, text_component, find_text_component
        points = [{"x": float(x), "y": float(y), "text": scrub(t)} for (x, y), t in zip(self.layout.xy, self.texts)]
        for point, image in zip(points, self.images):
            if image is not None:
                point["image"] = image_embedding.thumbnail_uri(image, THUMBNAIL)
        self.widget = _widget_class()(
            points=points,
            method=self.layout.method,
            sim=self.layout.sim.round(4).tolist() if len(self.texts) <= renderers.HEATMAP_MAX else [],
            can_query=embed is not None,
            query_hint=why_no_query if embed is None else "")
        self.widget.on_msg(self._on_message)

    @property
    def vectors(self) -> Any:
        """The vectors as a numpy array, one row per text."""
        return self.layout.vectors

    def query(self, text: str, k: int = NEIGHBOURS, text_component: Optional[str] = None) -> List[Tuple[str, float]]:
        """Embed ``text`` with the component (or ``text_component``, a loaded text-embedding component in
        the same space, which later queries and the query box then use) and return its ``k`` nearest
        points' labels with their cosine similarity, best first; the map shows the query's point and rings
        its neighbours."""
        if text_component is not None:
            if self._find is None:
                raise ValueError("this map embeds its queries with its own component; it takes no text_component")
            self.embed, self.text_component = self._find(text_component), text_component
            self.widget.set_state({"can_query": True, "query_hint": ""})
        if self.embed is None:
            raise ValueError(f"this map cannot embed a query: {self.widget.query_hint}")
        vector = self.embed(text)
        if len(vector) != self.layout.vectors.shape[1]:
            who = f"component `{self.text_component}`" if self.text_component else "the query's component"
            raise ValueError(f"{who} gives {len(vector)}-dimensional vectors, the map's have "
                             f"{self.layout.vectors.shape[1]}: query with a text-embedding component of the same "
                             f"model as the map's (the same space)")
        scores = self.layout.cosines(vector)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        self.widget.set_state({"query_text": scrub(text), "query_error": "",
                               "query_point": self.layout.project(vector),
                               "neighbours": [{"index": i, "score": scores[i]} for i in order]})
        return [(self.texts[i], scores[i]) for i in order]

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """The view's query box: ``{"type": "query", "text": ...}``; an error shows in the widget."""
        if not isinstance(content, dict) or content.get("type") != "query":
            return
        self.widget.busy = True
        try:
            self.query(str(content.get("text", "")))
        except Exception as e:   # shown where it was asked, scrubbed; the map stays as it was
            self.widget.query_error = scrub(f"{type(e).__name__}: {e}")
        finally:
            self.widget.busy = False

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        """The widget view beside the static map, one bundle (as a RunResult shows it)."""
        if any(image is not None for image in self.images):
            bundle = image_embedding.image_map_bundle(self.layout, self.images, self.texts)
        else:
            bundle = renderers.render_embeddings(self.layout.vectors, self.texts, layout=self.layout)
        bundle = {k: scrub(v) if k in ("text/plain", "text/html") else v for k, v in bundle.items()}
        bundle[WIDGET_VIEW] = widget_view(self.widget)
        return bundle


def query_embedder(registry: Registry, record: JobRecord) -> Embed:
    """A text -> its vector, by the record's component and action, its fields with ``text`` replaced
    (a one-text list when the job embedded a list, so the output has the job's shape)."""
    def embed(text: str) -> List[float]:
        fields = dict(record.fields or {}, text=[text] if isinstance((record.fields or {}).get("text"), list) else text)
        output = rerun(registry, record, fields).output
        vector = renderers.as_embedding(output[0] if isinstance(output, list) and output and
                                        renderers.as_embedding(output) is None else output)
        if vector is None:
            raise ValueError(f"component `{record.component}` gave no vector for the query "
                             f"(its output: {scrub(repr(output))[:120]})")
        return vector
    return embed


def text_embedder(registry: Registry, component: str) -> Embed:
    """A text -> its vector by the text-embedding component ``component`` (its action with ``text`` given)."""
    entry = registry.get(component, then="Compose a text-embedding component of the same model as the images.")
    if entry.task != "text-embedding":
        raise ValueError(f"component `{component}` is a {entry.task or entry.spec.type} component, not "
                         f"text-embedding: give a text-embedding component of the same model as the images")
    return query_embedder(registry, JobRecord("query", component, entry.task, {}, None, 0.0, fields={"text": ""}))


def same_space_text_component(registry: Registry, component: str) -> Optional[str]:
    """A loaded text-embedding component of the same model as ``component`` (its texts share the images'
    space), or None."""
    with registry.lock:
        entries = list(registry.entries.values())
    model = next((e.describe()["model"] for e in entries if e.id == component), None)
    return next((e.id for e in entries if e.task == "text-embedding" and model and e.describe()["model"] == model),
                None)


def image_map(vectors: List[List[float]], record: JobRecord, registry: Optional[Registry]) -> EmbeddingMap:
    """The map of an image-embedding job: its images as thumbnails, a text query by a text-embedding component
    of the same model when one is loaded (or named later in :meth:`EmbeddingMap.query`)."""
    fields = record.fields or {}
    images = image_embedding.input_images(fields, len(vectors))
    labels = image_embedding.image_labels(fields, images)
    if registry is None:
        return EmbeddingMap(vectors, labels, None, "no registry to run a text component in", images)
    found = same_space_text_component(registry, record.component)
    why = ("" if found else f"no text-embedding component of the same model as `{record.component}` is loaded: compose "
           f"one (task: text-embedding, architecture: clip or siglip) and query with m.query(text, text_component=ID)")
    return EmbeddingMap(vectors, labels, text_embedder(registry, found) if found else None, why, images, found,
                        lambda cid: text_embedder(registry, cid))


def view(outcome: RunOutcome, registry: Optional[Registry]) -> Optional[EmbeddingMap]:
    """The map of a run whose output is several embeddings (None for any other output)."""
    last = outcome.last
    value = outcome.output
    if last is None or renderers.kind_of(value, last.task, last.images) != "embeddings" or len(value) < 2:
        return None
    vectors = [renderers.as_embedding(v) for v in value]
    if last.task == "image-embedding":
        return image_map(vectors, last, registry)
    if registry is None:
        return EmbeddingMap(vectors, last.texts, None, "no registry to run the component in")
    if not isinstance((last.fields or {}).get("text"), (list, str)):
        return EmbeddingMap(vectors, last.texts, None,
                            f"component `{last.component}` takes no `text` field to put a query in")
    return EmbeddingMap(vectors, last.texts, query_embedder(registry, last))


def install(registry: Optional[Registry] = None) -> None:
    """Show several-embedding run outputs as this map (``registry``: the one queries run in)."""
    register_view(view, registry)
