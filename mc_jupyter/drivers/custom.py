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
                              ``settings["model_path"]`` is the resolved local path of ``model:``
``load(self)``                load weights (called once per compose that loads it)
``run(self, fields)``         one action: ``fields`` are its evaluated fields (``text``, ``params``...);
                              return the task's result (dialect §5 shapes show best)
``stream(self, fields, stop)`` optional: yield text chunks; stop soon after ``stop.is_set()``
``unload(self)``              optional: free what ``load`` took
``info(self)``                optional: ``{"device", "dtype", "parameters", "memory_bytes"}`` for the status
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from typing import Any, Dict, Iterator, Optional

from .sources import model_path
from ..errors import ConfigError, ModelLoadError
from .base import Driver


class CustomModel:
    """An optional base for custom models: fill :meth:`load` and :meth:`run` (and :meth:`stream`)."""

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


class CustomDriver(Driver):
    def __init__(self, component_id: str, settings: Dict[str, Any]):
        super().__init__(component_id, settings)
        self.impl: Any = None

    def load(self) -> None:
        target = self.settings.get("class")
        if not target:
            raise ConfigError(f"component `{self.component_id}` uses `driver: custom` but names no `class:`",
                              hint="Add `class: package.module:ClassName` or `class: ./my_model.py:ClassName`.")
        cls = load_class(str(target))
        settings = dict(self.settings, model_path=model_path(self.settings.get("model")))
        self.impl = cls(settings)
        for method in ("load", "run"):
            if not callable(getattr(self.impl, method, None)):
                raise ConfigError(f"`{target}` has no `{method}()` method; a custom model needs load() and "
                                  f"run(fields), and may have stream(fields, stop) and unload().",
                                  hint="See the protocol in mc_jupyter.drivers.custom (or subclass "
                                       "mc_jupyter.drivers.custom.CustomModel).")
        self.impl.load()
        self.streams = callable(getattr(self.impl, "stream", None))
        info = self.impl.info() if callable(getattr(self.impl, "info", None)) else {}
        self.device = info.get("device", "custom")
        self.dtype, self.parameters = info.get("dtype"), info.get("parameters")
        self.memory_bytes = info.get("memory_bytes")
        self.source_description = f"custom: {target}"

    def run(self, fields: Dict[str, Any]) -> Any:
        return self.impl.run(fields)

    def stream(self, fields: Dict[str, Any], stop: threading.Event) -> Iterator[Any]:
        return self.impl.stream(fields, stop)

    def unload(self) -> None:
        if self.impl is not None and callable(getattr(self.impl, "unload", None)):
            self.impl.unload()
        self.impl = None


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


