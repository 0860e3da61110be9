"""Where a component's weights are: the one resolver every backend, adapter and (later) vector store uses.

``model:`` is a hub id (``gpt2``), a local path (``./m``, ``/m``, ``~/m``, ``C:\\m``), a hub mapping
(``{repository, revision, filename, cache_dir, local_files_only, token}``) or a local mapping
(``{path, format}``); a mapping without ``provider:`` is local when it has ``path:``
(:func:`provider_of`, the one rule). :func:`resolve_source` gives ``from_pretrained``'s location and
keyword arguments (:func:`hub_kwargs` the ones the hub's own download functions take), the packaged
copy of an embedded model, and the hub's cache layout, offline and unreachable cases.
"""

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
from ..catalog import DEFAULT_MODELS, EMBEDDED_MODELS
from ..errors import ModelLoadError
from ..secrets import scrub

#: The keyword arguments of huggingface_hub's download functions (``from_pretrained`` takes more).
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only")


def provider_of(model: Dict[str, Any]) -> str:
    """A source mapping's provider: as written, else ``local`` when it has ``path:``, else ``huggingface``."""
    return model.get("provider") or ("local" if "path" in model else "huggingface")


def hub_kwargs(source: "ModelSource") -> Dict[str, Any]:
    """The part of ``source.kwargs`` that huggingface_hub's own functions (and peft's) take."""
    return {k: v for k, v in source.kwargs.items() if k in HUB_KWARGS}


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
    if provider_of(model) == "local":
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


def model_path(model: Any) -> Optional[str]:
    """The local path of ``model:`` (a local path, or a hub file downloaded/cached), or None."""
    if model is None:
        return None
    if isinstance(model, str):
        if is_local_path(model):
            return os.path.abspath(os.path.expanduser(model))
        return model
    if provider_of(model) == "local":
        path = os.path.abspath(os.path.expanduser(model["path"]))
        if not os.path.exists(path):
            raise ModelLoadError(f"the local model path `{model['path']}` does not exist (looked at {path}).")
        return path
    return hub_file(model)


def hub_file(model: Dict[str, Any]) -> str:
    """A hub mapping's ``filename`` (or, without one, its whole snapshot) as a local path."""
    source = _hub(model)
    if source.is_local:
        return source.location
    kwargs = hub_kwargs(source)
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


def local_file(source: ModelSource, name: str) -> Optional[str]:
    """The path of ``name`` in a local folder or the hub cache, if it is there."""
    if source.is_local:
        path = os.path.join(source.location, name)
        return path if os.path.exists(path) else None
    from huggingface_hub import try_to_load_from_cache
    found = try_to_load_from_cache(source.location, name, cache_dir=source.kwargs.get("cache_dir"),
                                   revision=source.kwargs.get("revision"))
    return found if isinstance(found, str) else None
