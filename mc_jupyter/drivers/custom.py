"""``driver: custom``: a user's own class runs a model, and plugs into the registry, the engine, the
display and the sidebar like a built-in driver.

The YAML names the class with ``class:``, as ``package.module:Class`` or ``path/to/file.py:Class``
(a path relative to the notebook's folder), and may pass ``options:``::

    component:
      type: model
      task: text-classification
      driver: custom
      model: {provider: local, path: ./sst2.onnx, format: onnx}
      class: mc_jupyter.custom.onnx:OnnxTextClassifier
      options: {tokenizer: ./sst2-tokenizer}
      text: ${input.text}

The protocol (duck-typed; see :class:`CustomModel` for a documented base to subclass):

``__init__(self, settings)``  the component's load settings (``model``, ``options``, ``device``, ...);
                              ``settings["model_path"]`` is the resolved local path of ``model:``;
                              a :class:`CustomModel` also gets ``self.config``, the typed config
``load(self)``                load weights (called once per compose that loads it)
``run(self, fields)``         one action: ``fields`` are its evaluated fields (``text``, ``params``...);
                              return the task's result (dialect §5 shapes show best)
``stream(self, fields, stop)`` optional: yield text chunks; stop soon after ``stop.is_set()``
``unload(self)``              optional: free what ``load`` took
``info(self)``                optional: ``{"device", "dtype", "parameters", "memory_bytes"}`` for the status

Instead of ``run``, a class may fill ``generate(self, items, params)``: then the component's task
(:mod:`mc_jupyter.tasks`) owns the fields, single-or-list, batches and the result's shape, as for a
built-in backend, and ``generate`` gets one batch of items (texts, images) and the task's typed
parameters, and returns one output per item (a probability row for text-classification, with the
class's ``labels``; a vector for text-embedding; ...). The shipped ONNX classes do this.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from enum import Enum
from typing import Any, Dict, Iterator, List, Optional

from ..catalog import Task
from ..config.schema import LOAD_FIELDS
from ..errors import ConfigError, ModelLoadError
from .base import Driver
from .sources import model_path

#: The task a class with ``generate(items, params)`` runs under, imported when one is used.
TASK_CLASSES: Dict[str, str] = {
    Task.TEXT_CLASSIFICATION: "mc_jupyter.tasks.classification:TextClassificationTask",
    Task.TEXT_EMBEDDING: "mc_jupyter.tasks.embedding:TextEmbeddingTask",
    Task.IMAGE_TO_TEXT: "mc_jupyter.tasks.image_to_text:ImageToTextTask",
    Task.IMAGE_GENERATION: "mc_jupyter.tasks.image_generation:ImageGenerationTask",
    Task.IMAGE_UPSCALE: "mc_jupyter.tasks.upscale:ImageUpscaleTask",
    Task.FACE_EMBEDDING: "mc_jupyter.tasks.face_embedding:FaceEmbeddingTask",
    Task.TEXT_TO_TEXT: "mc_jupyter.tasks.text_to_text:TextToTextTask",
    Task.IMAGE_TEXT_TO_TEXT: "mc_jupyter.tasks.image_text_to_text:ImageTextToTextTask",
    Task.TEXT_RERANKING: "mc_jupyter.tasks.reranking:TextRerankingTask",
    Task.SPEECH_TO_TEXT: "mc_jupyter.tasks.speech_to_text:SpeechToTextTask",
    Task.IMAGE_EMBEDDING: "mc_jupyter.tasks.image_embedding:ImageEmbeddingTask",
    Task.VISION_TEXT_ENCODING: "mc_jupyter.tasks.vision_text_encoding:VisionTextEncodingTask",
    Task.OBJECT_DETECTION: "mc_jupyter.tasks.object_detection:ObjectDetectionTask",
    Task.IMAGE_SEGMENTATION: "mc_jupyter.tasks.image_segmentation:ImageSegmentationTask",
    Task.DEPTH_ESTIMATION: "mc_jupyter.tasks.depth_estimation:DepthEstimationTask",
    Task.IMAGE_BACKGROUND_REMOVAL: "mc_jupyter.tasks.background_removal:BackgroundRemovalTask",
}


class CustomModel:
    """An optional base for custom models: fill :meth:`load` and :meth:`run` (and :meth:`stream`)."""

    #: The component's validated, typed config (``config.device``, ``config.labels``), set by the driver
    #: before :meth:`load`; ``settings`` is the same as written, a plain dict.
    config: Any = None

    def __init__(self, settings: Dict[str, Any]):
        self.settings = settings
        self.options: Dict[str, Any] = settings.get("options") or {}
        self.model_path: Optional[str] = settings.get("model_path")

    def load(self) -> None:
        raise NotImplementedError

    def run(self, fields: Dict[str, Any]) -> Any:
        raise NotImplementedError

    def unload(self) -> None:
        """Drop references to what :meth:`load` made."""

    def info(self) -> Dict[str, Any]:
        return {}


def user_settings(config: Any) -> Dict[str, Any]:
    """The component's load settings as the user wrote them, a plain dict (what ``ComponentSpec.settings``
    holds): the typed config's fields that were set, by their YAML names, enum values as plain text."""
    written = config.model_dump(by_alias=True, exclude_unset=True, mode="python")
    settings = dict({"task": config.task, "driver": config.driver},
                    **{k: v for k, v in written.items() if k in LOAD_FIELDS}, type=config.type)
    return {k: v.value if isinstance(v, Enum) else v for k, v in settings.items()}


class CustomDriver(Driver):
    def __init__(self, component_id: str, config: Any):
        super().__init__(component_id, config)
        self.impl: Any = None
        self.delegate: Any = None

    def load(self) -> None:
        target = self.config.class_
        if not target:
            raise ConfigError(f"component `{self.component_id}` uses `driver: custom` but names no `class:`",
                              hint="Add `class: package.module:ClassName` or `class: ./my_model.py:ClassName`.")
        cls = load_class(str(target))
        self.impl = cls(dict(user_settings(self.config), model_path=model_path(self.config.model)))
        if isinstance(self.impl, CustomModel):
            self.impl.config = self.config
        generates = callable(getattr(self.impl, "generate", None)) and self.config.task in TASK_CLASSES
        for method in ("load",) if generates else ("load", "run"):
            if not callable(getattr(self.impl, method, None)):
                raise ConfigError(f"`{target}` has no `{method}()` method; a custom model needs load() and "
                                  f"run(fields) (or generate(items, params)), and may have stream(fields, stop) "
                                  f"and unload().",
                                  hint="See the protocol in mc_jupyter.drivers.custom (or subclass "
                                       "mc_jupyter.drivers.custom.CustomModel).")
        self.impl.load()
        if generates:
            self.delegate = _task_over(self.impl, self.component_id, self.config)
        self.streams = callable(getattr(self.impl, "stream", None))
        info = self.impl.info() if callable(getattr(self.impl, "info", None)) else {}
        self.device = info.get("device", "custom")
        self.dtype, self.parameters = info.get("dtype"), info.get("parameters")
        self.memory_bytes = info.get("memory_bytes")
        self.source_description = f"custom: {target}"

    def run(self, fields: Dict[str, Any]) -> Any:
        return self.delegate.run(fields) if self.delegate is not None else self.impl.run(fields)

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[Any]:
        return self.impl.stream(fields, stop)

    def unload(self) -> None:
        if self.impl is not None and callable(getattr(self.impl, "unload", None)):
            self.impl.unload()
        self.impl = self.delegate = None


class _Delegating:
    """The task's backend hook, ``generate``, is the user's object's."""

    impl: Any

    def generate(self, items: List[Any], params: Any) -> List[Any]:
        return list(self.impl.generate(items, params))


def _task_over(impl: Any, component_id: str, config: Any) -> Any:
    """The component's task over the user's loaded object: its ``generate``, and what the task reads of a
    backend (the task's ``backend_attributes``: ``labels``, ``native_scale``, ...) where the object has them."""
    module, _, name = TASK_CLASSES[config.task].partition(":")
    task_cls = getattr(importlib.import_module(module), name)
    task = type(f"Custom{name}", (_Delegating, task_cls), {})(component_id, config)
    task.impl = impl
    for attribute in getattr(task_cls, "backend_attributes", ()):
        if hasattr(impl, attribute):
            setattr(task, attribute, getattr(impl, attribute))
    return task


def load_class(target: str) -> type:
    """``package.module:Class`` or ``path/file.py:Class`` -> the class."""
    location, _, name = target.rpartition(":")
    if not location or not name:
        raise ConfigError(f"`class: {target}` is not of the form `module:Class` or `file.py:Class`")
    try:
        if location.endswith(".py"):
            path = os.path.abspath(os.path.expanduser(location))
            if not os.path.exists(path):
                raise ConfigError(f"`class: {target}`: the file {path} does not exist",
                                  hint="Paths are relative to the notebook's folder (the kernel's working directory).")
            module_name = f"mc_jupyter_custom_{abs(hash(path))}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(location)
    except ImportError as e:
        raise ModelLoadError(f"`class: {target}`: cannot import `{location}`: {e}\n"
                             f"  Install what it needs, or check the module path.") from None
    except ConfigError:
        raise
    except Exception as e:   # a SyntaxError or any error while the user's module runs
        where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
        raise ModelLoadError(f"`class: {target}`: `{location}` failed while it was imported{where}: "
                             f"{type(e).__name__}: {e}\n  Fix the module, then compose again.") from None
    cls = getattr(module, name, None)
    if cls is None:
        public = sorted(n for n in dir(module) if not n.startswith("_") and isinstance(getattr(module, n), type))
        raise ConfigError(f"`class: {target}`: `{location}` has no `{name}`",
                          hint=f"Classes there: {', '.join(public) or 'none'}.")
    return cls


