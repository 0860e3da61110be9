"""The embedding map: a ``%%run`` of text-embedding over several texts, as a map you can explore.

An anywidget view (``embedding_map.js``, no build step): the 2-D scatter (PCA; UMAP where umap-learn
is installed and there are at least :data:`~mc_jupyter.display.renderers.UMAP_MIN` texts), each point
numbered, hover showing its whole text; the cosine heatmap beside it (up to
:data:`~mc_jupyter.display.renderers.HEATMAP_MAX` texts); a query box that embeds a new text with the
same component (the kernel reruns the job's action with ``text`` replaced, :func:`mc_jupyter.engine.rerun`)
and highlights its nearest neighbours with their cosine scores.

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

from ..display import renderers
from ..display.result import WIDGET_VIEW, register_view, widget_view
from ..engine import JobRecord, RunOutcome, rerun
from ..registry import Registry
from ..secrets import scrub

HERE = pathlib.Path(__file__).parent
NEIGHBOURS = 5          # how many neighbours a query lists


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
            points = traitlets.List().tag(sync=True)        # [{x, y, text}], texts scrubbed
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
    same component) enables :meth:`query`. ``.widget`` is the anywidget shown in a notebook."""

    def __init__(self, vectors: Sequence[Sequence[float]], texts: Optional[Sequence[str]] = None,
                 embed: Optional[Embed] = None, why_no_query: str = ""):
        self.layout = renderers.EmbeddingLayout(vectors)
        self.texts = renderers.embedding_labels(len(self.layout.vectors), texts)
        self.embed = embed
        self.widget = _widget_class()(
            points=[{"x": float(x), "y": float(y), "text": scrub(t)} for (x, y), t in zip(self.layout.xy, self.texts)],
            method=self.layout.method,
            sim=self.layout.sim.round(4).tolist() if len(self.texts) <= renderers.HEATMAP_MAX else [],
            can_query=embed is not None,
            query_hint=why_no_query if embed is None else "")
        self.widget.on_msg(self._on_message)

    @property
    def vectors(self) -> Any:
        """The vectors as a numpy array, one row per text."""
        return self.layout.vectors

    def query(self, text: str, k: int = NEIGHBOURS) -> List[Tuple[str, float]]:
        """Embed ``text`` with the component and return its ``k`` nearest texts with their cosine
        similarity, best first; the map shows the query's point and rings its neighbours."""
        if self.embed is None:
            raise ValueError(f"this map cannot embed a query: {self.widget.query_hint}")
        vector = self.embed(text)
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


def view(outcome: RunOutcome, registry: Optional[Registry]) -> Optional[EmbeddingMap]:
    """The map of a run whose output is several embeddings (None for any other output)."""
    last = outcome.last
    value = outcome.output
    if last is None or renderers.kind_of(value, last.task, last.images) != "embeddings" or len(value) < 2:
        return None
    vectors = [renderers.as_embedding(v) for v in value]
    if registry is None:
        return EmbeddingMap(vectors, last.texts, None, "no registry to run the component in")
    if not isinstance((last.fields or {}).get("text"), (list, str)):
        return EmbeddingMap(vectors, last.texts, None,
                            f"component `{last.component}` takes no `text` field to put a query in")
    return EmbeddingMap(vectors, last.texts, query_embedder(registry, last))


def install(registry: Optional[Registry] = None) -> None:
    """Show several-embedding run outputs as this map (``registry``: the one queries run in)."""
    register_view(view, registry)
