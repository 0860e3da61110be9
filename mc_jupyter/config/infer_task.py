"""The task of a model component written without ``task:`` (spec 8.7), read from the model's files.

A ``type: model`` component may leave ``task:`` out (model-compose infers it too); :func:`infer_task`
then reads what the model's files say, offline and cheaply, and adds one note to the compose plan
saying which task came from which file:

============================================  ==============================================
what is found                                 task
============================================  ==============================================
``architecture: sdxl`` (a word of one task)   that task (``catalog.ARCHITECTURES``)
a ``.gguf`` file (``model:``, ``filename:``,  ``text-generation``
``format: gguf``, or the only weights of a
folder); ``driver: llamacpp`` on a folder
a diffusers ``model_index.json``              ``image-generation`` (an upscaling pipeline's
                                              ``_class_name``: ``image-upscale``)
``modules.json`` /                            ``text-embedding`` (a sentence-transformers
``config_sentence_transformers.json``         folder)
``config.json`` ``architectures``:            ``*ForCausalLM``, ``*LMHeadModel`` →
                                              ``text-generation``;
                                              ``*ForSequenceClassification`` →
                                              ``text-classification`` (one score written by
                                              sentence-transformers' CrossEncoder, ``sbert_ce_*``:
                                              ``text-reranking``);
                                              ``VisionEncoderDecoderModel``, BLIP, GIT →
                                              ``image-to-text``; Whisper → ``speech-to-text``;
                                              T5, BART, Marian, Pegasus, MBart, M2M100 →
                                              ``text-to-text``; Qwen2-VL, LLaVA, Idefics,
                                              SmolVLM, ``*ForImageTextToText`` →
                                              ``image-text-to-text``; ``CLIPModel``,
                                              ``SiglipModel`` → ambiguous (``image-embedding``
                                              or ``text-embedding``); DINOv2 →
                                              ``image-embedding``; ``*ForObjectDetection``,
                                              ``*ForDepthEstimation``, ``*For...Segmentation``
                                              and SAM, BiRefNet → their vision task; a bare
                                              ``*Model`` (no head) → ``text-embedding``;
                                              ``*ForMaskedLM`` → ambiguous
                                              (``text-embedding`` or ``text-classification``)
a single ``.pth`` file                        ``image-upscale`` (the one task loading one)
============================================  ==============================================

Where the files are follows :mod:`mc_jupyter.drivers.sources` (the load-time resolver, which this layer
may not import): a local path (``./m``, ``/m``, ``~/m``, ``C:\\m``; ``provider: local`` with ``path:``),
else a hub id looked up in the local Hugging Face cache only (``model.cache_dir`` / ``revision``, else
HF_HOME / HF_HUB_CACHE as huggingface_hub reads them). Nothing reaches the network, and at most
``config.json``, ``model_index.json``, ``modules.json`` and a folder listing are read.

A ``driver:`` narrows the candidates to the tasks it does. Files that fit several tasks, name an
architecture no task here runs, or cannot be read offline (not in the cache, a path not on disk, a
``${...}`` in ``model:``) give a :class:`~mc_jupyter.errors.ConfigError` at the component: the
required ``task:`` is missing, what the files say (the candidates), and ``task: <candidate>`` as the fix.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..catalog import ARCHITECTURES, DRIVERS, TASKS
from ..errors import ConfigError
from .positions import Path, Positions

_LOCAL_PREFIXES = ("/", "./", "../", "~")

#: config.json ``model_type`` values whose model reads images and writes text (image-to-text here).
_IMAGE_TO_TEXT_TYPES = ("vision-encoder-decoder", "blip", "blip-2", "git")

#: diffusers pipelines (model_index.json ``_class_name``) that upscale rather than generate.
_UPSCALE_PIPELINES = ("LDMSuperResolutionPipeline", "StableDiffusionUpscalePipeline",
                      "StableDiffusionLatentUpscalePipeline")

_GGUF_EXTRA = " (a llama.cpp model; `task: chat-completion` or `task: text-embedding` also run on it)"

_SENTENCE_TRANSFORMERS = ("modules.json", "config_sentence_transformers.json")


def is_local_path(text: str) -> bool:
    """The spec's recognition rules for a local ``model:`` (as ``drivers.sources.is_local_path``):
    absolute, relative, home, or a Windows drive."""
    return text.startswith(_LOCAL_PREFIXES) or (len(text) > 2 and text[1] == ":" and text[2] in "\\/")


@dataclass
class _Where:
    """The model's files: a local path, or a hub repository in the local cache."""

    name: str                          # as the user wrote it (shown in messages)
    local: Optional[str] = None        # absolute local path (file or folder)
    repo: Optional[str] = None
    revision: str = "main"
    cache_dir: Optional[str] = None
    filename: Optional[str] = None
    fmt: Optional[str] = None          # `format:` of a local mapping
    unreadable: Optional[str] = None   # why the files cannot be looked at while composing


@dataclass
class _Finding:
    """What the files say: the candidate tasks and the file that says so."""

    tasks: Tuple[str, ...]
    source: str                        # "config.json (architectures: LlamaForCausalLM)"
    extra: str = ""                    # more for the note
    whole: bool = False                # ``source`` names the model itself (a local file)
    gguf: bool = False                 # a llama.cpp model


def infer_task(raw: dict, path: Path, positions: Positions, notes: List[str]) -> Optional[str]:
    """The task ``raw`` (a model component's keys as written, with no ``task:``) means, or None when its
    files do not say (the caller's "`task:` is missing" error then stands).

    On success one line is added to ``notes`` (shown as ``note:`` in the compose plan). Files that fit
    several tasks, or none, or cannot be read offline raise :class:`ConfigError` at ``path``."""
    cid = raw.get("id") or "default"
    driver = raw.get("driver") if isinstance(raw.get("driver"), str) else None
    arch = raw.get("architecture")
    if isinstance(arch, str):
        owners = [t for t, words in ARCHITECTURES.items() if arch in words]
        if len(owners) == 1:
            notes.append(f"component `{cid}` has no `task:`: `{owners[0]}`, from `architecture: {arch}`.")
            return owners[0]
    model = raw.get("model")
    if model is None:
        return None                    # no files to read: the task's default model needs the task
    where = _locate(model)
    if where is None:
        return None
    finding = _read(where, driver) if where.unreadable is None else None
    if finding is None:
        why = where.unreadable or _missing(where)
        raise ConfigError(f"the required key `task` is missing, and the files of `{where.name}` could not be "
                          f"read offline to infer it: {why}",
                          **positions.where(path), hint=_hint(_allowed(driver), where))
    tasks = finding.tasks
    allowed = _allowed(driver)
    fitting = tuple(t for t in tasks if t in allowed)
    of = "" if finding.whole else f" of `{where.name}`"
    if len(fitting) == 1:
        task = fitting[0]
        extra = finding.extra
        if finding.gguf and driver != "llamacpp":
            extra += "; it needs `driver: llamacpp`"
        notes.append(f"component `{cid}` has no `task:`: `{task}`, from {finding.source}{of}{extra}.")
        return task
    if not tasks:
        raise ConfigError(f"the required key `task` is missing, and {finding.source}{of} names "
                          f"no model that a task here runs", **positions.where(path), hint=_hint(allowed))
    if not fitting:
        raise ConfigError(f"the required key `task` is missing, and {finding.source}{of} says "
                          f"{_or(tasks)}, which `driver: {driver}` does not do", **positions.where(path),
                          hint=_hint(tasks, driver_note=driver))
    raise ConfigError(f"the required key `task` is missing, and {finding.source}{of} fits more "
                      f"than one task: {_or(fitting)}", **positions.where(path), hint=_hint(fitting))


# -- where the files are (the rules of drivers/sources.py) -----------------------------------------

def _locate(model: Any) -> Optional[_Where]:
    if isinstance(model, str):
        if "${" in model:
            return _Where(model, unreadable="`model:` is a `${...}` binding, known only when it runs")
        if is_local_path(model):
            return _Where(model, local=os.path.abspath(os.path.expanduser(model)))
        return _Where(model, repo=model)
    if not isinstance(model, dict):
        return None                    # the schema's own error says what `model:` takes
    if any(isinstance(v, str) and "${" in v for k, v in model.items() if k != "token"):
        name = str(model.get("repository") or model.get("path") or "model")
        return _Where(name, unreadable="a field of `model:` is a `${...}` binding, known only when it runs")
    provider = model.get("provider") or ("huggingface" if "repository" in model else
                                          "local" if ("path" in model or "url" in model) else "huggingface")
    if provider == "local":
        fmt = model.get("format") if isinstance(model.get("format"), str) else None
        path = model.get("path")
        if not isinstance(path, str):
            url = model.get("url")
            endpoint = url.get("endpoint") if isinstance(url, dict) else url
            name = str(endpoint or "model")
            if fmt == "gguf" or name.split("?")[0].endswith(".gguf"):
                return _Where(name, fmt="gguf", filename=name)
            return _Where(name, unreadable="it is fetched from its `url:` on first load, after composing")
        return _Where(path, local=os.path.abspath(os.path.expanduser(path)), fmt=fmt)
    if provider != "huggingface" or not isinstance(model.get("repository"), str):
        return None
    cache_dir = model.get("cache_dir")
    return _Where(model["repository"], repo=model["repository"], revision=str(model.get("revision") or "main"),
                  cache_dir=os.path.expanduser(str(cache_dir)) if cache_dir else None,
                  filename=model.get("filename") if isinstance(model.get("filename"), str) else None)


def _snapshot(where: _Where) -> Optional[str]:
    """The cached snapshot folder of a hub repository's revision, or None (never the network)."""
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(where.repo, revision=where.revision, cache_dir=where.cache_dir,
                                 local_files_only=True)
    except Exception:   # LocalEntryNotFoundError and its kin: not cached
        return None


def _cache(where: _Where) -> str:
    if where.cache_dir:
        return where.cache_dir
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


def _missing(where: _Where) -> str:
    if where.local is not None:
        return f"the local path `{where.name}` does not exist (looked at {where.local})"
    return (f"it is not in the local Hugging Face cache ({_cache(where)}, revision {where.revision}), and "
            f"composing never downloads")


# -- what the files say ------------------------------------------------------------------------------

def _read(where: _Where, driver: Optional[str]) -> Optional[_Finding]:
    """What the files say, or None when they cannot be read (not on disk, not cached)."""
    name = where.filename or where.name
    if where.fmt == "gguf" or (where.filename or "").endswith(".gguf") or \
            (where.local is not None and where.local.endswith(".gguf")):
        if where.local is not None and not os.path.exists(where.local):
            return None
        if where.local is not None or where.filename == where.name:
            return _Finding(("text-generation",), f"the GGUF file `{name}`", _GGUF_EXTRA, whole=True, gguf=True)
        return _Finding(("text-generation",), f"the GGUF file `{name}`", _GGUF_EXTRA, gguf=True)
    if where.local is not None:
        folder = where.local
        if not os.path.exists(folder):
            return None
        if not os.path.isdir(folder):
            if folder.endswith(".pth"):     # a bare PyTorch weights file: only the upscalers load one here
                return _Finding(("image-upscale",), f"the weights file `{where.name}` (.pth: an upscaler's)",
                                whole=True)
            return _Finding((), f"the file `{where.name}`", whole=True)
    else:
        folder = _snapshot(where)
        if folder is None:
            return None
    try:
        listing = sorted(os.listdir(folder))
    except OSError:
        return None
    return _from_folder(folder, listing, driver)


def _from_folder(folder: str, listing: Sequence[str], driver: Optional[str]) -> Optional[_Finding]:
    ggufs = [n for n in listing if n.endswith(".gguf")]
    if ggufs and (driver == "llamacpp" or "config.json" not in listing):
        return _Finding(("text-generation",), f"the GGUF file `{ggufs[0]}`", _GGUF_EXTRA, gguf=True)
    if "model_index.json" in listing:
        index = _json(os.path.join(folder, "model_index.json"))
        if index is None:
            return _Finding((), "model_index.json (not valid JSON)")
        cls = str(index.get("_class_name") or "")
        task = "image-upscale" if cls in _UPSCALE_PIPELINES else "image-generation"
        return _Finding((task,), f"model_index.json (a diffusers {cls or 'pipeline'})")
    st = [n for n in _SENTENCE_TRANSFORMERS if n in listing]
    if st:
        return _Finding(("text-embedding",), f"{st[0]} (a sentence-transformers model)")
    if "config.json" in listing:
        config = _json(os.path.join(folder, "config.json"))
        if config is None:
            return _Finding((), "config.json (not valid JSON)")
        return _from_config(config)
    return None


def _from_config(config: Dict[str, Any]) -> _Finding:
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    model_type = str(config.get("model_type") or "")
    shown = ", ".join(archs) if archs else f"model_type {model_type or 'unknown'}"
    source = f"config.json (architectures: {shown})" if archs else f"config.json ({shown}, no architectures)"
    if model_type in _IMAGE_TO_TEXT_TYPES:
        return _Finding(("image-to-text",), source)
    tasks: List[str] = []
    for arch in archs:
        for task in _arch_tasks(arch):
            if task not in tasks:
                tasks.append(task)
    if tasks == ["text-classification"] and _cross_encoder(config):
        return _Finding(("text-reranking",), source + " with one relevance score (a cross-encoder)")
    extra = ""
    if tasks == ["text-generation"]:
        extra = " (`task: chat-completion` fits too if it has a chat template)"
    return _Finding(tuple(tasks), source, extra)


def _cross_encoder(config: Dict[str, Any]) -> bool:
    """A sequence classifier with one output that sentence-transformers' CrossEncoder wrote (``sbert_ce_*``
    keys) or that says it ranks: a reranker, not a classifier."""
    labels = config.get("id2label") or {}
    one_score = config.get("num_labels") == 1 or (isinstance(labels, dict) and len(labels) == 1)
    return one_score and (any(str(k).startswith("sbert_ce_") for k in config)
                          or "rerank" in str(config.get("_name_or_path", "")).lower())


#: config.json ``architectures`` of the tasks read by their model family (checked before the heads below).
_FAMILY_TASKS: Tuple[Tuple[Tuple[str, ...], Tuple[str, ...]], ...] = (
    (("Whisper",), ("speech-to-text",)),
    (("T5For", "MT5For", "BartFor", "MBartFor", "MarianMT", "PegasusFor", "M2M100For"), ("text-to-text",)),
    (("Qwen2VL", "Qwen2_5_VL", "Llava", "Idefics", "SmolVLM", "InternVL", "LightOnOcr", "PaliGemma"),
     ("image-text-to-text",)),
    (("CLIPModel", "SiglipModel", "Siglip2Model"), ("image-embedding", "text-embedding")),
    (("CLIPVisionModel", "SiglipVisionModel", "Dinov2Model"), ("image-embedding",)),
    (("BiRefNet",), ("image-background-removal",)),
    (("SamModel", "Sam2Model"), ("image-segmentation",)),
)
#: config.json ``architectures`` heads of the dense vision tasks.
_HEAD_TASKS: Tuple[Tuple[str, str], ...] = (
    ("ForObjectDetection", "object-detection"),
    ("ForDepthEstimation", "depth-estimation"),
    ("ForSemanticSegmentation", "image-segmentation"),
    ("ForUniversalSegmentation", "image-segmentation"),
    ("ForInstanceSegmentation", "image-segmentation"),
    ("ForImageTextToText", "image-text-to-text"),
)


def _arch_tasks(arch: str) -> Tuple[str, ...]:
    if arch.startswith(("Blip", "Git")) or arch == "VisionEncoderDecoderModel":
        return ("image-to-text",)
    for prefixes, tasks in _FAMILY_TASKS:
        if arch.startswith(prefixes):
            return tasks
    for head, task in _HEAD_TASKS:
        if arch.endswith(head):
            return (task,)
    if arch.endswith(("ForCausalLM", "LMHeadModel")):
        return ("text-generation",)
    if arch.endswith("ForSequenceClassification"):
        return ("text-classification",)
    if arch.endswith("ForMaskedLM"):
        return ("text-embedding", "text-classification")
    if arch.endswith("Model") and "For" not in arch:
        return ("text-embedding",)
    return ()


def _json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- messages ------------------------------------------------------------------------------------------

def _allowed(driver: Optional[str]) -> Tuple[str, ...]:
    tasks = tuple(str(t) for t in TASKS)
    if driver is None or not any(d == driver for d, _ in DRIVERS):
        return tasks
    return tuple(t for t in tasks if (driver, t) in DRIVERS)


def _or(tasks: Sequence[str]) -> str:
    items = [f"`{t}`" for t in tasks]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _hint(tasks: Sequence[str], where: Optional[_Where] = None, driver_note: Optional[str] = None) -> str:
    if len(tasks) <= 3:
        text = f"Add `task: {tasks[0]}`" + "".join(f" (or `task: {t}`)" for t in tasks[1:])
    else:
        text = f"Add `task:` with the model's task: one of {', '.join(f'`{t}`' for t in tasks)}"
    if driver_note:
        text += f", with a driver that does it instead of `driver: {driver_note}`"
    if where is not None and where.repo is not None:
        command = f"huggingface-cli download {where.repo}"
        if where.revision != "main":
            command += f" --revision {where.revision}"
        if where.cache_dir:
            command += f" --cache-dir {where.cache_dir}"
        text += f"; or download the model first where there is a network (`{command}`) and compose again"
    return text + "."
