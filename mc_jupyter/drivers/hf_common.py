"""What every Hugging Face driver shares: where the weights are, and how they are loaded."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from ..binding import Scope, parse_template, render
from ..secrets import scrub
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
    kwargs, unreachable = hub_access(source, kwargs)
    what = f"`{source.filename or 'the snapshot'}` of `{source.location}`"
    try:
        with quiet_hub():
            if source.filename:
                return hf_hub_download(source.location, source.filename, **kwargs)
            return snapshot_download(source.location, **kwargs)
    except Exception as e:   # huggingface_hub raises a family of its own errors here
        first = scrub(str(e)).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        failed = e
    if kwargs.get("local_files_only") and type(failed).__name__ == "LocalEntryNotFoundError":
        raise ModelLoadError(f"could not get {what}: " + not_cached(source, unreachable))
    raise ModelLoadError(f"could not get {what}: {first}\n"
                         f"  Check the repository, filename and revision; offline, download it first "
                         f"({download_command(source)}).")


# -- the hub: offline, unreachable, cached ----------------------------------------------------------

HUB_PROBE_SECONDS = 3.0      # connect/read timeout of the one request that asks whether the hub answers
_probes: Dict[str, Tuple[float, Optional[str]]] = {}   # endpoint -> (when, why it cannot be reached)


def hub_offline(kwargs: Dict[str, Any]) -> bool:
    """HF_HUB_OFFLINE (as huggingface_hub read it, or set since) or ``local_files_only``."""
    from huggingface_hub import constants
    return bool(kwargs.get("local_files_only") or constants.HF_HUB_OFFLINE
                or _truthy(os.environ.get("HF_HUB_OFFLINE", "")))


def hub_unreachable() -> Optional[str]:
    """Why the hub's endpoint cannot be reached (a refused or timed-out connection, no DNS), or None when it
    answers at all. One short request, remembered for a few seconds: huggingface_hub itself would retry
    each file five times over some 25 seconds, printing every attempt."""
    import httpx
    from huggingface_hub import constants

    endpoint = constants.ENDPOINT
    seen = _probes.get(endpoint)
    if seen is not None and time.monotonic() - seen[0] < 10:
        return seen[1]
    try:
        httpx.head(endpoint, timeout=HUB_PROBE_SECONDS, follow_redirects=False)   # any answer will do
        reason = None
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        text = str(e).strip().splitlines()
        reason = f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
    _probes[endpoint] = (time.monotonic(), reason)
    return reason


def cached_snapshot(source: ModelSource) -> Optional[str]:
    """The folder of the source's revision in the local hub cache, or None when it has none."""
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(source.location, revision=source.kwargs.get("revision"),
                                 cache_dir=source.kwargs.get("cache_dir"), local_files_only=True)
    except Exception:   # LocalEntryNotFoundError and its kin: not there
        return None


def hub_access(source: ModelSource, kwargs: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[str]]:
    """``(kwargs, unreachable)`` for a call into the hub: offline, ``local_files_only`` (HF_HUB_OFFLINE read
    now, not only when huggingface_hub was imported); online with the hub unreachable, the cache alone when
    it holds the revision, else a ModelLoadError at once."""
    if source.is_local:
        return kwargs, None
    if hub_offline(kwargs):
        return dict(kwargs, local_files_only=True), None
    unreachable = hub_unreachable()
    if unreachable is None:
        return kwargs, None
    if cached_snapshot(source) is None:
        raise ModelLoadError(f"could not load `{source.location}`: " + not_cached(source, unreachable))
    return dict(kwargs, local_files_only=True), unreachable


def download_command(source: ModelSource) -> str:
    revision = source.kwargs.get("revision")
    extra = f" --revision {revision}" if revision and revision != "main" else ""
    return f"huggingface-cli download {source.location}{' ' + source.filename if source.filename else ''}{extra}"


def not_cached(source: ModelSource, unreachable: Optional[str]) -> str:
    """The message for a hub id the local cache lacks, with the hub off or out of reach."""
    from huggingface_hub import constants
    cache = source.kwargs.get("cache_dir") or constants.HF_HUB_CACHE
    revision = source.kwargs.get("revision") or "main"
    hub = (f"the hub ({constants.ENDPOINT}) cannot be reached ({unreachable})" if unreachable else
           "the hub is offline here (HF_HUB_OFFLINE=1 or `local_files_only: true`)")
    command = download_command(source)
    return (f"it is not in the local Hugging Face cache ({cache}, revision {revision}), and {hub}.\n  Get it where "
            f"there is a network: `{command}` (or `{command.replace('huggingface-cli', 'hf', 1)}`), then compose "
            f"again; or give a local folder in `model:`"
            + ("; with the files cached, HF_HUB_OFFLINE=1 skips the hub altogether." if unreachable else "."))


@contextlib.contextmanager
def quiet_hub():
    """The hub's retry and connection warnings held back while it is asked (the error says what failed)."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "urllib3", "httpx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# -- weights files that are there but broken ----------------------------------------------------------

def safetensors_problem(path: str) -> Optional[str]:
    """What is wrong with a .safetensors file (truncated, a header that is not one), or None if it is whole:
    read from its header alone."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{size} bytes, shorter than a safetensors header"
            length = struct.unpack("<Q", head)[0]
            if length > size - 8:
                return f"{size} bytes, but its header alone claims {length}"
            header = json.loads(f.read(length))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return "its header is not valid safetensors JSON"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if 8 + length + end > size:
        return f"{size} bytes where its header describes {8 + length + end}: cut short"
    return None


def broken_weights(source: ModelSource) -> Optional[Tuple[str, str]]:
    """(path, problem) of the first truncated or corrupt .safetensors file of a local folder or cached
    snapshot, or None."""
    folder = source.location if source.is_local else cached_snapshot(source)
    if not folder or not os.path.isdir(folder):
        return None
    for root, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            if name.endswith(".safetensors"):
                path = os.path.join(root, name)
                problem = safetensors_problem(path)
                if problem:
                    return path, problem
    return None


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
