"""Image widgets: the gallery of generated images and the before/after slider of upscaling.

- :class:`Gallery` (``gallery.js``): thumbnails, a click enlarges one (a click on the enlarged image or
  Escape closes it), each image's seed under it, and a button "again with the next seed" that runs the
  same component action again with ``params.seed`` one more than the last image's
  (:func:`mc_jupyter.engine.rerun`) and adds what it draws. Python: ``gallery.again()`` returns the new
  images; ``gallery.images`` and ``gallery.seeds`` are what it holds.
- :class:`UpscaleSlider` (``slider.js``): the input (enlarged, its pixels kept) and the upscaled
  output stacked; drag (or the range input, or the arrow keys) to move the split between them.
  Python: ``slider.position`` (0..1, the part showing the input) and ``slider.pairs``.

A run's output shows as one MIME bundle: the widget view beside the static HTML/PNG of
:mod:`mc_jupyter.display.images`, which nbconvert, GitHub and a saved notebook show.
:func:`install` registers both views with :class:`~mc_jupyter.display.result.RunResult`.
anywidget is imported when the first widget is made, never on import.
"""

from __future__ import annotations

import copy
import pathlib
import random
from typing import Any, Dict, List, Optional, Tuple

from ..display import images as static
from ..display import renderers
from ..display.result import register_view
from ..engine import JobRecord, RunOutcome, rerun
from ..registry import Registry
from ..secrets import scrub

HERE = pathlib.Path(__file__).parent
THUMBNAIL_SIDE = 160   # a gallery thumbnail's longest side, px (the enlarged view is the embedded image)

_CLASSES: Dict[str, type] = {}


def _classes() -> Dict[str, type]:
    """The anywidget classes, defined on first use (importing anywidget imports ipywidgets)."""
    if not _CLASSES:
        import anywidget
        import traitlets

        class GalleryWidget(anywidget.AnyWidget):
            _esm = HERE / "gallery.js"
            _css = HERE / "gallery.css"
            items = traitlets.List().tag(sync=True)        # [{src, thumb, seed, width, height}]
            selected = traitlets.Int(-1).tag(sync=True)     # the enlarged item, -1 for none
            can_again = traitlets.Bool(False).tag(sync=True)
            again_hint = traitlets.Unicode("").tag(sync=True)
            busy = traitlets.Bool(False).tag(sync=True)
            error = traitlets.Unicode("").tag(sync=True)

        class UpscaleSliderWidget(anywidget.AnyWidget):
            _esm = HERE / "slider.js"
            _css = HERE / "gallery.css"
            pairs = traitlets.List().tag(sync=True)         # [{before, after, before_size, after_size}]
            position = traitlets.Float(0.5).tag(sync=True)  # 0..1: how much of the width shows the input

        _CLASSES.update(gallery=GalleryWidget, slider=UpscaleSliderWidget)
    return _CLASSES


def _src(image: Any, max_side: Optional[int] = None) -> str:
    shown = image
    if max_side and max(image.size) > max_side:
        shown = image.copy()
        shown.thumbnail((max_side, max_side))
    return "data:image/png;base64," + static.png_base64(shown)


def _as_images(output: Any) -> List[Any]:
    """An image-generation output as a flat list of images (one prompt, several, ``num_images``)."""
    if static.is_image(output):
        return [output]
    if isinstance(output, list):
        return [im for item in output for im in _as_images(item)]
    return []


def seed_of(fields: Optional[Dict[str, Any]]) -> Optional[int]:
    """The ``seed`` the driver got (in ``params:`` or the action's own fields), or None."""
    fields = fields or {}
    for where in (fields.get("params") or {}, fields):
        if where.get("seed") is not None:
            return int(where["seed"])
    return None


def with_seed(fields: Dict[str, Any], seed: int) -> Dict[str, Any]:
    """``fields`` with ``seed`` where the driver reads it (``params.seed``; an action-level ``seed`` too)."""
    out = copy.copy(fields)
    out["params"] = dict(fields.get("params") or {}, seed=seed)
    if "seed" in out:
        out["seed"] = seed
    return out


class Gallery:
    """Generated images with their seeds; ``again()`` draws the next seed with the same component.

    ``registry`` and ``record`` (the job that drew the first images) enable :meth:`again`."""

    def __init__(self, images: List[Any], seed: Optional[int], registry: Optional[Registry] = None,
                 record: Optional[JobRecord] = None, why_no_again: str = ""):
        self.images: List[Any] = []
        self.seeds: List[Optional[int]] = []
        self.registry, self.record = registry, record
        can = registry is not None and record is not None and record.fields is not None
        self.widget = _classes()["gallery"](can_again=can, again_hint="" if can else why_no_again)
        self._add(images, seed)
        self.widget.on_msg(self._on_message)

    def _add(self, images: List[Any], seed: Optional[int]) -> None:
        self.images += images
        self.seeds += [seed] * len(images)
        self.widget.items = self.widget.items + [
            {"src": _src(im, static.GALLERY_SIDE * 2), "thumb": _src(im, THUMBNAIL_SIDE), "seed": seed,
             "width": im.size[0], "height": im.size[1]} for im in images if not static.is_empty(im)]

    def again(self) -> List[Any]:
        """Run the component again with the next seed (the last image's plus one; a random one when the
        first images had none); add and return the new images."""
        if not self.widget.can_again:
            raise ValueError(f"this gallery cannot draw again: {self.widget.again_hint}")
        last = self.seeds[-1] if self.seeds else None
        seed = last + 1 if last is not None else random.randrange(2**31)
        record = rerun(self.registry, self.record, with_seed(self.record.fields, seed))
        images = _as_images(record.output)
        if not images:
            raise ValueError(f"component `{self.record.component}` gave no image for seed {seed}")
        self._add(images, seed)
        return images

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """The view's button: ``{"type": "again"}``; an error shows in the widget, scrubbed."""
        if not isinstance(content, dict) or content.get("type") != "again":
            return
        self.widget.busy, self.widget.error = True, ""
        try:
            self.again()
        except Exception as e:
            self.widget.error = scrub(f"{type(e).__name__}: {e}")
        finally:
            self.widget.busy = False


class UpscaleSlider:
    """Before/after of upscaling: ``pairs`` of (input, output) images; ``.position`` moves the split."""

    def __init__(self, pairs: List[Tuple[Any, Any]], position: float = 0.5):
        self.pairs = pairs
        self.widget = _classes()["slider"](position=position, pairs=[
            {"before": _src(before), "after": _src(after), "before_size": list(before.size),
             "after_size": list(after.size)} for before, after in pairs])

    @property
    def position(self) -> float:
        return self.widget.position

    @position.setter
    def position(self, value: float) -> None:
        self.widget.position = min(max(float(value), 0.0), 1.0)


def view(outcome: RunOutcome, registry: Optional[Registry]) -> Any:
    """A gallery for image generation, a slider for upscaling, None for any other output."""
    last = outcome.last
    if last is None:
        return None
    kind = renderers.kind_of(outcome.output, last.task, last.images)
    if kind == "upscaled":
        pairs = [(b, a) for b, a in static.pair_upscaled(outcome.output, last.images)
                 if not (static.is_empty(b) or static.is_empty(a))]
        return UpscaleSlider(pairs) if pairs else None
    if last.task == "image-generation" and kind in ("image", "images", "value"):
        images = _as_images(outcome.output)
        if images:
            why = "no registry to run the component in" if registry is None else ""
            return Gallery(images, seed_of(last.fields), registry, last, why)
    return None


def install(registry: Optional[Registry] = None) -> None:
    """Show image-generation outputs as a gallery and upscaling as a slider (``registry``: where
    "again" runs)."""
    register_view(view, registry)
