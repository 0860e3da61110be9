"""What every Hugging Face driver shares: where the weights are, and how they are loaded."""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ..binding import Scope, parse_template, render, scrub
from ..devices import module_bytes, parameter_count
from ..errors import ModelLoadError
from .base import Driver
from .table import DEFAULT_MODELS, EMBEDDED_MODELS

_LOCAL_PREFIXES = ("/", "./", "../", "~")


def is_local_path(text: str) -> bool:
    """The spec's recognition rules: absolute, relative, home, or a Windows drive."""
    return text.startswith(_LOCAL_PREFIXES) or (len(text) > 2 and text[1] == ":" and text[2] in "\\/")


@dataclass
class ModelSource:
    """A resolved ``model:``: a folder or hub id for ``from_pretrained`` and its keyword arguments."""

    location: str
    kwargs: Dict[str, Any] = field(default_factory=dict, repr=False)   # may hold a token
    filename: Optional[str] = None
    description: str = ""
    is_local: bool = False


def resolve_source(model: Any, task: str) -> ModelSource:
    """Turn the ``model:`` field (string or mapping) into a :class:`ModelSource`."""
    if model is None:
        model = DEFAULT_MODELS.get(task)
        if model is None:
            raise ModelLoadError(f"task `{task}` has no default model: add `model:` with a hub id or a path.")
    if isinstance(model, str):
        if is_local_path(model):
            return _local(model, "pytorch")
        return _hub({"repository": model})
    provider = model.get("provider") or ("local" if "path" in model else "huggingface")
    if provider == "local":
        return _local(model["path"], model.get("format", "pytorch"))
    return _hub(model)


def _local(path: str, fmt: str) -> ModelSource:
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(full):
        raise ModelLoadError(f"the local model path `{path}` does not exist (looked at {full}).\n"
                             f"  Check the path, or use a hub id such as `gpt2` for a Hugging Face model.")
    kwargs: Dict[str, Any] = {}
    if fmt == "safetensors":
        kwargs["use_safetensors"] = True
    elif fmt == "pytorch" and os.path.isdir(full) and not _has(full, ".safetensors"):
        kwargs["use_safetensors"] = False
    return ModelSource(full, kwargs, description=f"local: {path}", is_local=True)


def _has(folder: str, suffix: str) -> bool:
    return any(name.endswith(suffix) for name in os.listdir(folder))


def _hub(spec: Dict[str, Any]) -> ModelSource:
    repo = spec["repository"]
    kwargs: Dict[str, Any] = {"revision": str(spec.get("revision") or "main")}
    if spec.get("cache_dir"):
        kwargs["cache_dir"] = os.path.expanduser(str(spec["cache_dir"]))
    if _truthy(spec.get("local_files_only")):
        kwargs["local_files_only"] = True
    token = spec.get("token")
    if token is not None:
        value = render(parse_template(token), Scope()) if isinstance(token, str) else token
        if value:
            kwargs["token"] = value
    filename = spec.get("filename")
    if filename:
        kwargs["use_safetensors"] = filename.endswith(".safetensors")
    embedded = _embedded(repo, kwargs)
    if embedded is not None:
        return ModelSource(embedded, {}, filename, f"hub: {repo} (embedded copy, offline)", is_local=True)
    return ModelSource(repo, kwargs, filename, f"hub: {repo}@{kwargs['revision']}")


def _embedded(repo: str, kwargs: Dict[str, Any]) -> Optional[str]:
    """The packaged copy of an embedded model, used when the hub cache does not hold it."""
    if repo not in EMBEDDED_MODELS or kwargs.get("revision") not in ("main", None):
        return None
    from huggingface_hub import try_to_load_from_cache
    cached = try_to_load_from_cache(repo, "config.json", cache_dir=kwargs.get("cache_dir"))
    if isinstance(cached, str):
        return None
    module_name, function = EMBEDDED_MODELS[repo]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return str(getattr(module, function)())


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"))


class HFDriver(Driver):
    """Loads a tokenizer and a transformers Auto class, honouring the source, device, precision,
    quantization and LoRA adapters."""

    auto_class: str = "AutoModel"

    def load(self) -> None:
        from tqdm.auto import tqdm
        import transformers

        # bitsandbytes' int8 matmul logs this on every forward call of a float32 model
        logging.getLogger("bitsandbytes.autograd._functions").addFilter(_quiet_int8_cast)

        from .placement import load_plan, placement

        source = resolve_source(self.settings.get("model"), self.settings["task"])
        if self.settings.get("trust_remote_code"):   # the tokenizer and processors run repository code too
            source.kwargs["trust_remote_code"] = True
        self.source, self.source_description = source, source.description
        plan = load_plan(self.settings)
        adapters = self.settings.get("peft_adapters") or []
        bar = tqdm(total=3 + len(adapters), desc=f"Loading {self.component_id}", unit="step", leave=False)
        try:
            bar.set_postfix_str("tokenizer")
            self.tokenizer = self._load_tokenizer(source)
            bar.update()
            bar.set_postfix_str("weights")
            self.model = _from_pretrained(getattr(transformers, self.auto_class), source,
                                          dict(source.kwargs, **plan["kwargs"]))
            bar.update()
            if plan["single"]:
                bar.set_postfix_str(plan["device"])
                self.model.to(plan["device"])
            self.placement = placement(self.model)
            bar.update()
            if adapters:
                from .adapters import attach
                bar.set_postfix_str("adapters")
                self.model = attach(self.model, adapters)
                bar.update(len(adapters))
            self.model.eval()
        finally:
            bar.close()
        self.device = ",".join(self.placement) if self.placement else _placement(self.model, plan["device"])
        self.dtype = str(plan["dtype"]).replace("torch.", "")
        quantization = self.settings.get("quantization", "none")
        if quantization != "none":
            self.dtype += f" · {quantization}"
        self.parameters = parameter_count(self.model)
        self.memory_bytes = module_bytes(self.model)
        self.after_load()

    def reconfigure(self, settings: Dict[str, Any]) -> None:
        """New adapter weights on the loaded model (nothing is reloaded)."""
        super().reconfigure(settings)
        if settings.get("peft_adapters"):
            from .adapters import apply_weights
            apply_weights(self.model, settings["peft_adapters"])

    def info(self) -> Dict[str, Any]:
        out = super().info()
        out["placement"] = getattr(self, "placement", None)
        return out

    def after_load(self) -> None:
        """A hook for task-specific set-up once weights are in place."""

    def _load_tokenizer(self, source: ModelSource):
        from transformers import AutoTokenizer
        kwargs = {k: v for k, v in source.kwargs.items() if k != "use_safetensors"}
        return _from_pretrained(AutoTokenizer, source, kwargs)

    def unload(self) -> None:
        for name in ("model", "tokenizer"):
            if hasattr(self, name):
                delattr(self, name)


def hub_file(model: Dict[str, Any]) -> str:
    """A hub mapping's ``filename`` (or, without one, its whole snapshot) as a local path."""
    source = _hub(model)
    if source.is_local:
        return source.location
    kwargs = {k: v for k, v in source.kwargs.items() if k in ("revision", "cache_dir", "token", "local_files_only")}
    from huggingface_hub import hf_hub_download, snapshot_download
    try:
        if source.filename:
            return hf_hub_download(source.location, source.filename, **kwargs)
        return snapshot_download(source.location, **kwargs)
    except Exception as e:   # huggingface_hub raises a family of its own errors here
        first = scrub(str(e)).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"could not get `{source.filename or 'the snapshot'}` of `{source.location}`: {first}\n"
                             f"  Check the repository, filename and revision; offline, download it first "
                             f"(huggingface-cli download {source.location} {source.filename or ''}).") from None


def local_file(source: ModelSource, name: str) -> Optional[str]:
    """The path of ``name`` in a local folder or the hub cache, if it is there."""
    if source.is_local:
        path = os.path.join(source.location, name)
        return path if os.path.exists(path) else None
    from huggingface_hub import try_to_load_from_cache
    found = try_to_load_from_cache(source.location, name, cache_dir=source.kwargs.get("cache_dir"),
                                   revision=source.kwargs.get("revision"))
    return found if isinstance(found, str) else None


def _quiet_int8_cast(record: logging.LogRecord) -> bool:
    return "inputs will be cast" not in record.getMessage()


def _placement(model: Any, device: str) -> str:
    """The devices a model's device map names ('cuda:0', 'cpu'), or ``device`` without a map."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map:
        return device
    return ",".join(sorted({f"cuda:{v}" if isinstance(v, int) else str(v) for v in device_map.values()}))


def _from_pretrained(cls: Any, source: ModelSource, kwargs: Dict[str, Any]) -> Any:
    try:
        return cls.from_pretrained(source.location, **kwargs)
    except (OSError, ValueError, EnvironmentError) as e:
        message = scrub(str(e)).strip().splitlines()
        first = message[0] if message else type(e).__name__
        if source.is_local:
            hint = "Check that the folder holds config.json and the weights (saved with save_pretrained)."
        elif os.environ.get("HF_HUB_OFFLINE") == "1" or kwargs.get("local_files_only"):
            hint = (f"The hub is offline here (HF_HUB_OFFLINE=1 or local_files_only): download `{source.location}` "
                    f"first (huggingface-cli download {source.location}) or give a local path.")
        else:
            hint = "Check the repository id and revision, and give `token:` for a private model."
        raise ModelLoadError(f"could not load {cls.__name__} for `{source.location}`: {first}\n  {hint}") from None
