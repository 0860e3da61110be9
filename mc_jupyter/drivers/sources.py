"""Where a component's weights are: the one resolver every backend, adapter and (later) vector store uses.

``model:`` is a hub id (``gpt2``), a local path (``./m``, ``/m``, ``~/m``, ``C:\\m``), a hub mapping
(``{repository, revision, filename, cache_dir, local_files_only, token}``) or a local mapping
(``{path, format, url, bundled}``); a mapping without ``provider:`` is a hub one when it has
``repository:`` and local when it has ``path:`` or ``url:`` (:func:`provider_of`, model-compose's rule).
A local model with ``url:`` whose path is not on disk yet is fetched by :mod:`mc_jupyter.drivers.fetch`
when a component loads (:func:`local_path`), never while composing or planning. :func:`resolve_source` gives ``from_pretrained``'s location and
keyword arguments (:func:`hub_kwargs` the ones the hub's own download functions take), the packaged
copy of an embedded model, and the hub's cache layout, offline and unreachable cases.

Two tasks name their weights by other means, resolved here too: an upscaler's published weights file
(``RealESRGAN_x4plus``: :func:`find_weights`, looked for in :func:`weights_folders`, then in its hub
mirror, :data:`PUBLISHED`) and an InsightFace pack (``buffalo_l``: :func:`pack_folder`).
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
from typing import Any, Dict, List, Optional, Tuple

from .. import progress
from . import fetch as url_fetch
from ..binding import Scope, parse_template, render
from ..catalog import DEFAULT_MODELS, EMBEDDED_MODELS
from ..config.schema import HubSource, LocalSource
from ..errors import ModelLoadError
from ..secrets import scrub

#: The keyword arguments of huggingface_hub's download functions (``from_pretrained`` takes more).
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only")


def provider_of(model: Dict[str, Any]) -> str:
    """A source mapping's provider: as written, else ``huggingface`` with ``repository:``, ``local`` with
    ``path:`` or ``url:``, else ``huggingface``."""
    if model.get("provider"):
        return model["provider"]
    if "repository" in model:
        return "huggingface"
    return "local" if ("path" in model or "url" in model) else "huggingface"


def fetching(fetch: Optional[bool] = None) -> bool:
    """Whether a missing ``url:`` model is downloaded now: ``fetch`` when given, else only inside a component's
    load (the registry's load bar is open in this thread: :func:`mc_jupyter.progress.current`). Composing,
    ``--dry-run`` and memory planning run outside it, so they see the path to be fetched and fetch nothing."""
    return progress.current() is not None if fetch is None else fetch


def _loading_component() -> Optional[str]:
    bar = progress.current()
    title = bar.title if bar is not None else ""
    return title[len("loading "):] if title.startswith("loading ") else None


def local_path(local: LocalSource, fetch: Optional[bool] = None, component: Optional[str] = None) -> str:
    """The absolute path of a local source (``path:``, or the cache path model-compose derives from ``url:``),
    downloaded first when it is missing, has a ``url:`` and :func:`fetching` says so; otherwise the path as
    it is, there or not."""
    if fetching(fetch) and local.url is not None:
        return url_fetch.ensure_local(local, component or _loading_component())
    return os.path.abspath(os.path.expanduser(url_fetch.default_path(local)))


def hub_kwargs(source: "ModelSource") -> Dict[str, Any]:
    """The part of ``source.kwargs`` that huggingface_hub's own functions (and peft's) take."""
    return {k: v for k, v in source.kwargs.items() if k in HUB_KWARGS}


def processor_kwargs(source: "ModelSource") -> Dict[str, Any]:
    """``source.kwargs`` for a config, tokenizer or processor's ``from_pretrained`` (all but the weights' format)."""
    return {k: v for k, v in source.kwargs.items() if k != "use_safetensors"}


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


def pending_fetch(model: Any) -> Optional[str]:
    """For a local ``url:`` model not on disk yet, what will happen on its first load (``local: PATH (fetched
    from URL on first load)``, scrubbed); None for any other ``model:``. Planning skips the memory estimate
    of such a model (its files are not there to read)."""
    if not isinstance(model, dict) or provider_of(model) != "local" or "url" not in model:
        return None
    try:
        local = LocalSource.model_validate(model)
        return url_fetch.describe(local) if url_fetch.is_pending(local) else None
    except (ValueError, ModelLoadError):
        return None


def config_source(config: Any, fetch: Optional[bool] = None) -> ModelSource:
    """A model component's ``model:`` (its typed ``config``) as a :class:`ModelSource`, with
    ``trust_remote_code`` passed on (the tokenizer and processors run repository code too)."""
    source = resolve_source(config.model, config.task, fetch, component=config.id)
    if config.trust_remote_code:
        source.kwargs["trust_remote_code"] = True
    return source


def resolve_source(model: Any, task: Optional[str] = None, fetch: Optional[bool] = None,
                   component: Optional[str] = None) -> ModelSource:
    """Turn a ``model:`` field (string or mapping) into a :class:`ModelSource`; without one, the task's
    default model (an adapter's ``model:``, which has no task, is required). A local ``url:`` model not on
    disk yet is downloaded when :func:`fetching` (``fetch``) says so, else its source is the path it will
    have (``description`` says so) and nothing is checked."""
    if model is None:
        model = DEFAULT_MODELS.get(task) if task else None
        if model is None:
            what = f"task `{task}` has no default model" if task else "no `model:` is given"
            raise ModelLoadError(f"{what}: add `model:` with a hub id or a path.")
    if isinstance(model, str):
        if is_local_path(model):
            return _local(model, "pytorch")
        return _hub({"repository": model})
    if provider_of(model) == "local":
        local = LocalSource.model_validate(model)
        full = local_path(local, fetch, component)
        if local.url is not None and not os.path.exists(full):      # not fetched yet: planning
            return ModelSource(full, {}, description=url_fetch.describe(local), is_local=True)
        return _local(url_fetch.default_path(local), local.format, full)
    return _hub(model)


def _local(path: str, fmt: str, full: Optional[str] = None) -> ModelSource:
    full = full or os.path.abspath(os.path.expanduser(path))
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


def _hub(model: Dict[str, Any]) -> ModelSource:
    """A hub mapping (checked by the schema as a :class:`HubSource`) as a :class:`ModelSource`."""
    hub = HubSource.model_validate(model)
    repo = hub.repository
    kwargs: Dict[str, Any] = {"revision": str(hub.revision or "main")}
    if hub.cache_dir:
        kwargs["cache_dir"] = os.path.expanduser(str(hub.cache_dir))
    if _truthy(hub.local_files_only):
        kwargs["local_files_only"] = True
    if hub.token is not None:
        value = render(parse_template(hub.token), Scope())
        if value:
            kwargs["token"] = value
    filename = hub.filename
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


def model_path(model: Any, fetch: Optional[bool] = None, component: Optional[str] = None) -> Optional[str]:
    """The local path of ``model:`` (a local path, a ``url:`` model fetched when :func:`fetching`, or a hub
    file downloaded/cached), or None."""
    if model is None:
        return None
    if isinstance(model, str):
        if is_local_path(model):
            return os.path.abspath(os.path.expanduser(model))
        return model
    if provider_of(model) == "local":
        local = LocalSource.model_validate(model)
        path = local_path(local, fetch, component)
        if not os.path.exists(path) and local.url is None:
            raise ModelLoadError(f"the local model path `{local.path}` does not exist (looked at {path}).")
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
    """The hub's retry and connection warnings held back while it is asked (the error says what failed), and,
    inside a progress bar of ours, the hub's and transformers' own bars off (:mod:`mc_jupyter.progress`)."""
    progress.quiet_libraries()
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


# -- upscalers' weights files by their published names ---------------------------------------------

_REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_SWINIR = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0"


@dataclass(frozen=True)
class Published:
    """Where the authors publish a weights file, and a Hugging Face mirror of it (repository, filename)."""

    url: str
    hub: Optional[Tuple[str, str]] = None


PUBLISHED: Dict[str, Published] = {
    "RealESRGAN_x4plus": Published(f"{_REAL_ESRGAN}/v0.1.0/RealESRGAN_x4plus.pth",
                                   ("lllyasviel/Annotators", "RealESRGAN_x4plus.pth")),
    "RealESRNet_x4plus": Published(f"{_REAL_ESRGAN}/v0.1.1/RealESRNet_x4plus.pth"),
    "RealESRGAN_x4plus_anime_6B": Published(f"{_REAL_ESRGAN}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth"),
    "RealESRGAN_x2plus": Published(f"{_REAL_ESRGAN}/v0.2.1/RealESRGAN_x2plus.pth"),
    "RealESRGAN_x4": Published("https://huggingface.co/ai-forever/Real-ESRGAN",
                               ("ai-forever/Real-ESRGAN", "RealESRGAN_x4.pth")),
    "RealESRGAN_x2": Published("https://huggingface.co/ai-forever/Real-ESRGAN",
                               ("ai-forever/Real-ESRGAN", "RealESRGAN_x2.pth")),
    "RRDB_ESRGAN_x4": Published("https://github.com/xinntao/ESRGAN (README: pretrained models)"),
    **{name: Published(f"{_SWINIR}/{name}.pth") for name in (
        "001_classicalSR_DIV2K_s48w8_SwinIR-M_x2", "001_classicalSR_DIV2K_s48w8_SwinIR-M_x4",
        "001_classicalSR_DF2K_s64w8_SwinIR-M_x4", "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x4",
        "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN", "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN")},
}
ALIASES = {"ESRGAN_x4": "RRDB_ESRGAN_x4"}
WEIGHT_SUFFIXES = (".pth", ".safetensors")


def published(model: Any) -> Optional[Published]:
    """Where the weights file a published name (or its alias) names is published, if it is one."""
    return PUBLISHED.get(ALIASES.get(str(model), str(model)))


def weights_folders() -> List[str]:
    """Where a published name is looked for, in order."""
    env = [f for f in os.environ.get("MC_JUPYTER_WEIGHTS", "").split(os.pathsep) if f]
    cwd = os.getcwd()
    return [os.path.expanduser(f) for f in env] + [cwd, os.path.join(cwd, "weights"),
                                                    os.path.expanduser("~/.cache/mc_jupyter/weights")]


def find_weights(model: Any, task: Optional[str] = None) -> str:
    """The local path of an upscaler's ``model:``: a weights file, or a folder (a diffusers pipeline, a hub
    snapshot)."""
    if isinstance(model, dict) or is_local_path(model):
        source = resolve_source(model, task)
        return source.location if source.is_local else hub_file(model)
    name = ALIASES.get(model, model)
    for suffix in WEIGHT_SUFFIXES:
        name = name[:-len(suffix)] if name.endswith(suffix) else name
    looked = [os.path.join(folder, name + suffix) for folder in weights_folders() for suffix in WEIGHT_SUFFIXES]
    found = next((path for path in looked if os.path.isfile(path)), None)
    if found:
        return found
    known = PUBLISHED.get(name)
    if known and known.hub:
        repo, filename = known.hub
        try:
            return hub_file({"repository": repo, "filename": filename,
                             "local_files_only": os.environ.get("HF_HUB_OFFLINE") == "1"})
        except ModelLoadError as e:
            looked.append(f"the Hugging Face hub: {repo}/{filename} ({str(e).splitlines()[0]})")
    if "/" in name:   # a hub repository: a diffusers pipeline or a repo holding one weights file
        return hub_file({"repository": model})
    where = "\n    ".join(looked)
    fetch = f"download it from {known.url} and " if known else ""
    raise ModelLoadError(f"no weights file `{model}` was found. Looked at:\n    {where}\n  Fix: {fetch}put it in "
                         f"one of these folders (or a folder named in $MC_JUPYTER_WEIGHTS), or give its path in "
                         f"`model:`.")


def weights_file(path: str) -> str:
    """``path`` itself, or the one weights file in the folder ``path``."""
    if not os.path.isdir(path):
        return path
    files = sorted(f for f in os.listdir(path) if f.endswith(WEIGHT_SUFFIXES))
    if len(files) != 1:
        raise ModelLoadError(f"`{path}` is a folder holding {len(files)} weights files "
                             f"({', '.join(files) or 'none'}).\n  Name the file: a path to it, or `filename:` in a "
                             f"hub mapping.")
    return os.path.join(path, files[0])


# -- InsightFace packs --------------------------------------------------------------------------------

DEFAULT_FACE_PACK = "buffalo_l"
GET_PACK = ("Download the pack from the InsightFace releases "
            "(https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip) and unzip it "
            "into ~/.insightface/models/{name}/ (or $INSIGHTFACE_HOME/models/{name}/), or give "
            "`model: {{provider: local, path: /folder/with/the/onnx/files}}`.")


def pack_folders(name: str) -> List[str]:
    """The folders looked in for pack ``name``: $INSIGHTFACE_HOME/models, then ~/.insightface/models."""
    roots = [os.environ["INSIGHTFACE_HOME"]] if os.environ.get("INSIGHTFACE_HOME") else []
    roots.append("~/.insightface")
    return list(dict.fromkeys(os.path.join(os.path.expanduser(r), "models", name) for r in roots))


def find_pack(name: str) -> str:
    """The first of :func:`pack_folders` that holds ONNX files, or a ModelLoadError listing them all."""
    folders = pack_folders(name)
    for folder in folders:
        if os.path.isdir(folder) and any(f.endswith(".onnx") for f in os.listdir(folder)):
            return folder
    looked = "\n".join(f"    {f}" for f in folders)
    raise ModelLoadError(f"the face model pack `{name}` was not found; looked in:\n{looked}\n  "
                         + GET_PACK.format(name=name))


def pack_folder(model: Any, fetch: Optional[bool] = None) -> Tuple[str, str]:
    """(folder, description) of a face pack: a pack name (``buffalo_l`` without ``model:``), a path, or a
    ``{provider: local, path, url, bundled}`` mapping (fetched when :func:`fetching`). An archive that
    wraps the pack in a folder of its own name (``antelopev2.zip`` holding ``antelopev2/*.onnx``) is read
    from that inner folder, as model-compose's InsightFace driver flattens it."""
    model = DEFAULT_FACE_PACK if model is None else model
    if isinstance(model, dict):
        if provider_of(model) != "local":
            raise ModelLoadError(f"face-embedding reads InsightFace packs from local folders, not `{scrub(str(model))}`."
                                 f"\n  Give `model: buffalo_l` or `model: {{provider: local, path: /folder}}`.")
        local = LocalSource.model_validate(model)
        folder = local_path(local, fetch)
        if local.url is not None and not os.path.exists(folder):      # not fetched yet: planning
            return folder, url_fetch.describe(local)
        model = folder
    if not is_local_path(model):
        return find_pack(model), f"insightface: {model}"
    folder = os.path.abspath(os.path.expanduser(model))
    if not os.path.isdir(folder):
        raise ModelLoadError(f"the face model folder `{model}` does not exist (looked at {folder}).\n  "
                             f"Check the path; it should hold the pack's ONNX files (det_10g.onnx, w600k_r50.onnx).")
    nested = os.path.join(folder, os.path.basename(folder))
    if not _has(folder, ".onnx") and os.path.isdir(nested) and _has(nested, ".onnx"):
        folder = nested
    return folder, f"local: {model}"
