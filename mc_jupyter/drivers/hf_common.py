"""What every Hugging Face driver shares: where the weights are, and how they are loaded.

:class:`HFDriver` is a backend mixin: a transformers backend is ``class X(HFDriver, SomeTask)``, the task
(:mod:`mc_jupyter.tasks`) owning the fields, lists and batches, this class the load and unload.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from .. import progress
from ..catalog import Quantization
from ..devices import module_bytes, parameter_count
from ..errors import ModelLoadError
from ..secrets import scrub
from .base import Driver
from .sources import (ModelSource, broken_weights, cached_snapshot, config_source, download_command, hub_access,
                      not_cached, processor_kwargs, quiet_hub)


class HFDriver(Driver):
    """Loads a tokenizer and a transformers Auto class, honouring the source, device, precision,
    quantization and LoRA adapters."""

    auto_class: str = "AutoModel"

    def load(self) -> None:
        import transformers

        quiet_library_notices()
        from .placement import load_plan, placement

        source = config_source(self.config)
        self.source, self.source_description = source, source.description
        plan = load_plan(self.config)
        adapters = self.config.peft_adapters or []
        # the registry's load bar (or one of its own when the driver is used alone); transformers' and the
        # hub's bars are off while it is open
        with progress.bar(f"loading {self.component_id}", total=3 + bool(adapters),
                          done=f"loaded {self.component_id}") as bar:
            bar.step("tokenizer")
            self.tokenizer = self._load_tokenizer(source)
            bar.step("weights")
            self.model = _from_pretrained(getattr(transformers, self.auto_class), source,
                                          dict(source.kwargs, **plan["kwargs"]))
            bar.step("device")
            if plan["single"]:
                self.model.to(plan["device"])
            self.placement = placement(self.model)
            if adapters:
                from .adapters import attach
                bar.step("adapters")
                self.model = attach(self.model, adapters)
            self.model.eval()
        self.device = ",".join(self.placement) if self.placement else _placement(self.model, plan["device"])
        self.dtype = str(plan["dtype"]).replace("torch.", "")
        if self.config.quantization != Quantization.NONE:
            self.dtype += f" · {self.config.quantization}"
        self.parameters = parameter_count(self.model)
        self.memory_bytes = module_bytes(self.model)
        self.after_load()

    def reconfigure(self, config: Any) -> None:
        """New adapter weights on the loaded model (nothing is reloaded)."""
        super().reconfigure(config)
        if config.peft_adapters:
            from .adapters import apply_weights
            apply_weights(self.model, config.peft_adapters)

    def info(self) -> Dict[str, Any]:
        out = super().info()
        out["placement"] = getattr(self, "placement", None)
        return out

    def after_load(self) -> None:
        """A hook for task-specific set-up once weights are in place."""

    def _load_tokenizer(self, source: ModelSource):
        from transformers import AutoTokenizer
        return _from_pretrained(AutoTokenizer, source, processor_kwargs(source))

    def unload(self) -> None:
        for name in ("model", "tokenizer"):
            if hasattr(self, name):
                delattr(self, name)


def _corrupt(cls: Any, source: ModelSource, error: BaseException) -> ModelLoadError:
    detail = scrub(str(error)).strip().splitlines()
    detail = f"{type(error).__name__}: {detail[0]}" if detail else type(error).__name__
    found = broken_weights(source)
    if found is None:
        return ModelLoadError(f"could not load {cls.__name__} for `{source.location}`: a weights file is truncated or "
                              f"corrupt ({detail}).\n  Download the model again, or save it again.")
    path, problem = found
    if source.is_local:
        fix = "Replace it with a complete copy (save the model again with save_pretrained, or download it again)."
    else:
        name = os.path.relpath(path, cached_snapshot(source) or os.path.dirname(path))
        command = download_command(ModelSource(source.location, source.kwargs, name))
        fix = (f"Download it again: `{command} --force-download` (or `hf download ...`), or delete the cached "
               f"file ({path} and the blob it links to, {os.path.realpath(path)}) so the next load fetches it.")
    return ModelLoadError(f"could not load {cls.__name__} for `{source.location}`: the weights file `{path}` is "
                          f"truncated or corrupt ({problem}; {detail}).\n  {fix}")


def quiet_library_notices() -> None:
    """Hold back what the libraries print to stderr on a successful load that is no news to the user: a
    compose writes nothing to stderr (the notebook's pink block). Idempotent: a filter is added once."""
    # bitsandbytes' int8 matmul logs this on every forward call of a float32 model
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_quiet_int8_cast)
    # transformers 5 without torchvision (never installed here: design.md) takes the PIL image processor
    # itself, and says so once per class
    logging.getLogger("transformers.utils.import_utils").addFilter(_quiet_torchvision_fallback)
    # diffusers 0.42 still passes this deprecated argument to hf_hub_download on every config it reads
    warnings.filterwarnings("ignore", message=r"The `local_dir_use_symlinks` argument is deprecated")
    # bitsandbytes (imported by diffusers and transformers) on a CPU with AVX512-BF16 tries to fetch an optional
    # 4-bit CPU kernel from the hub when it is imported, and falls back to its own; offline, both say so
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_quiet_optional_kernel)
    logging.getLogger("kernels").addFilter(_quiet_optional_kernel)
    logging.getLogger("kernels._internals.hf_hub").addFilter(_quiet_optional_kernel)


_held: Dict[Tuple[str, Callable], int] = {}
_held_lock = threading.RLock()   # (a finalizer's exit may run inside another's block)


@contextlib.contextmanager
def holding_back(names: Sequence[str], keep: Callable[[logging.LogRecord], bool]) -> Iterator[None]:
    """``keep`` filters the records of the loggers ``names`` while the block runs, and only then: a model's
    notices are held back on its own calls, not on every other model's. Blocks may overlap (two threads):
    the filter goes when the last of them ends."""
    with _held_lock:
        for name in names:
            count = _held.get((name, keep), 0)
            if count == 0:
                logging.getLogger(name).addFilter(keep)
            _held[(name, keep)] = count + 1
    try:
        yield
    finally:
        with _held_lock:
            for name in names:
                _held[(name, keep)] -= 1
                if _held[(name, keep)] == 0:
                    del _held[(name, keep)]
                    logging.getLogger(name).removeFilter(keep)


def _quiet_optional_kernel(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("kernels-community/quantization-bitsandbytes" in message or
                "Failed to load CPU gemm_4bit_forward" in message)


def _quiet_int8_cast(record: logging.LogRecord) -> bool:
    return "inputs will be cast" not in record.getMessage()


def _quiet_torchvision_fallback(record: logging.LogRecord) -> bool:
    return "requires torchvision (not installed); falling back to" not in record.getMessage()


def _placement(model: Any, device: str) -> str:
    """The devices a model's device map names ('cuda:0', 'cpu'), or ``device`` without a map."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map:
        return device
    return ",".join(sorted({f"cuda:{v}" if isinstance(v, int) else str(v) for v in device_map.values()}))


def model_type_of(source: ModelSource) -> str:
    """config.json's ``model_type`` of the model at ``source`` (the config alone is read: no weights)."""
    from transformers import AutoConfig

    from .sources import processor_kwargs
    return _from_pretrained(AutoConfig, source, processor_kwargs(source)).model_type


def checked_architecture(asked: Optional[str], model_type: str, table: Mapping[str, Sequence[str]],
                         location: str) -> Optional[str]:
    """The name ``table`` (``architecture:`` -> its config.json ``model_type``\ s) gives ``model_type``, None
    for a model outside it; a ModelLoadError, before any weights load, when ``asked`` names another one."""
    found = next((name for name, types in table.items() if model_type in types), None)
    if asked is not None and asked != found:
        expected = " or ".join(f"`{t}`" for t in table[asked])
        fix = (f"Write `architecture: {found}`, or leave it out" if found else "Leave `architecture:` out")
        raise ModelLoadError(f"`architecture: {asked}` but `{location}` is a `{model_type}` model (expected "
                             f"model_type {expected}).\n  {fix} to infer it from the model.")
    return found


def _from_pretrained(cls: Any, source: ModelSource, kwargs: Dict[str, Any]) -> Any:
    """``cls.from_pretrained`` with clear errors: a hub id missing from the cache with the hub off or out of
    reach (at once, without the hub's retries), a truncated weights file, a folder without a model."""
    from safetensors import SafetensorError

    kwargs, unreachable = hub_access(source, kwargs)
    if kwargs.get("local_files_only") and _auto_model(cls):
        # transformers 5.24's Auto classes look for adapter_config.json without local_files_only: with the hub
        # out of reach, that alone retries for some 25 seconds
        kwargs["adapter_kwargs"] = dict(kwargs.get("adapter_kwargs") or {}, local_files_only=True)
    try:
        with quiet_hub():
            return cls.from_pretrained(source.location, **kwargs)
    except SafetensorError as e:
        error = _corrupt(cls, source, e)
    except (OSError, ValueError, EnvironmentError) as e:
        error = _load_failed(cls, source, kwargs, unreachable, e)
    raise error   # outside the handler: no chain back to the library's error


def _auto_model(cls: Any) -> bool:
    try:
        from transformers.models.auto.auto_factory import _BaseAutoModelClass
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, _BaseAutoModelClass)


def _load_failed(cls: Any, source: ModelSource, kwargs: Dict[str, Any], unreachable: Optional[str],
                 e: BaseException) -> ModelLoadError:
    message = scrub(str(e)).strip().splitlines()
    first = message[0] if message else type(e).__name__
    what = f"could not load {cls.__name__} for `{source.location}`: "
    if source.is_local:
        hint = "Check that the folder holds config.json and the weights (saved with save_pretrained)."
    elif kwargs.get("local_files_only") and cached_snapshot(source) is None:
        return ModelLoadError(what + not_cached(source, unreachable))
    elif kwargs.get("local_files_only"):
        hint = (f"The hub is offline here (HF_HUB_OFFLINE=1 or local_files_only) or out of reach, and the cache "
                f"lacks a file: download `{source.location}` first ({download_command(source)}) or give a local path.")
    else:
        hint = "Check the repository id and revision, and give `token:` for a private model."
    return ModelLoadError(f"{what}{first}\n  {hint}")
