"""model-compose 0.4.120's own keys for model components, and what each comes to here: one table.

The seed chapter is an older snapshot of model-compose's language; its current schema (the wheel's
``mindor/dsl/schema/``) has more keys, other spellings and shorthands. :func:`from_model_compose` brings
a component written for it into the shape :mod:`mc_jupyter.config.schema` validates, before validation:

- **aliases** (the same meaning, another spelling): ``image-upscaling`` for ``image-upscale``,
  ``peft_adapter`` for ``peft_adapters``, ``family:`` for ``architecture:``, ``inference_steps`` for
  ``num_inference_steps``...;
- **noted** keys (model-compose's, with nothing to do in a notebook kernel, or not built here): accepted,
  and the compose says so in one line per component;
- **refused** values (a precision or quantization no backend here has): a clear error with the reason.

A key that neither model-compose nor mc_jupyter knows stays an error with a did-you-mean (the schema's
strict models). ``docs/reference.md`` prints these tables (:mod:`mc_jupyter.reference`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from ..catalog import TASKS
from ..errors import ConfigError, choices_text
from .positions import Path, Positions, clip

#: model-compose's task names that are ours under another spelling.
TASK_ALIASES: Dict[str, str] = {"image-upscaling": "image-upscale"}

#: Every task of model-compose 0.4.120 (``ModelTaskType``); those not in ``catalog.TASKS`` are not built here yet.
MODEL_COMPOSE_TASKS: Tuple[str, ...] = tuple("""
    text-generation chat-completion text-to-text text-classification text-embedding vision-text-encoding
    text-reranking typed-decision image-to-text image-text-to-text image-generation image-embedding video-embedding
    image-text-scoring video-text-scoring image-upscaling image-background-removal image-segmentation
    depth-estimation image-edge-detection text-to-video image-to-video video-to-video image-to-3d talking-head
    lip-sync object-detection object-tracking shot-boundary-detection face-detection face-embedding face-tracking
    face-swap face-emotion-classification pose-detection pose-tracking text-to-speech speech-to-text
    audio-text-alignment voice-activity-detection speaker-diarization music-generation motion-generation
    music-source-separation music-transcription music-beat-tracking music-pitch-estimation music-embedding
    voice-embedding""".split())

#: ``family:`` (model-compose's built-in implementations of ``driver: custom``) -> ours, per task.
#: A family is our ``architecture:`` (upscaling) or names the pack format (face embedding).
FAMILIES: Dict[str, Dict[str, str]] = {
    "image-upscale": {"esrgan": "esrgan", "real-esrgan": "real-esrgan", "swinir": "swinir", "ldsr": "ldsr"},
    "face-embedding": {"insightface": ""},
    "image-segmentation": {"sam": ""},      # SAM in transformers' format (facebook/sam-vit-base), box prompts alike
}

#: model-compose's built-in families with no counterpart here, per task: what to write instead.
FAMILY_INSTEAD: Dict[str, str] = {
    "yolo": "Ultralytics YOLO weights need the ultralytics package; detection here runs transformers detectors: "
            "`driver: huggingface` with e.g. `model: hustvl/yolos-tiny` (the same keys and result shape)",
    "faster-whisper": "CTranslate2 weights are not read here; transcription runs Whisper through transformers: "
                      "`driver: huggingface` with e.g. `model: openai/whisper-small` (the same keys)",
    "crisper-whisper": "transcription here runs Whisper through transformers: `driver: huggingface` with a "
                       "transformers Whisper checkpoint (e.g. `model: nyrahealth/CrisperWhisper`)",
}

#: Component keys of model-compose with no effect here: key -> why (shown in the compose's note).
NOTED_COMPONENT_KEYS: Dict[str, str] = {
    "runtime_spec": "memory hints for model-compose's scheduler; the sidebar shows measured memory",
    "on_demand": "a model here stays loaded until `%mc unload` (`preload: false` loads it on first run)",
    "fast_tokenizer": "transformers picks the fast tokenizer when the model has one",
    "max_seq_length": "inputs are cut by `max_input_length` or the model's own limit",
    "version": "the weights given by `model:` decide the version",
    "input_size": "the pack's model gives its own input size",
    "scheduler": "the pipeline's own scheduler is used (not built here yet)",
    "cpu_offload": "placement comes from `device:`/`device_mode:` (not built here yet)",
    "vae_tiling": "not built here yet",
    "vae": "the pipeline's own VAE is used (not built here yet)",
    "controlnet": "ControlNet conditioning is not built here yet",
    "tools": "tool calling is not built here yet: the reply is the model's text",
    "reasoning_parser": "the reply is the model's whole text (reasoning spans included)",
    "tool_call_parser": "tool calling is not built here yet",
    "language": "a RapidOCR setting; no OCR family here",
}

#: Action keys (at the action's level) of model-compose with no effect here.
NOTED_ACTION_KEYS: Dict[str, str] = {
    "tools": "tool calling is not built here yet",
    "color_format": "images are read as RGB",
    "return_landmarks": "the face result always carries its landmarks",
    "return_gender_age": "no gender/age model here",
    "method": "image generation here is `generate` (inpainting is not built yet)",
}

#: model-compose's ``params:`` per task that have no effect here (ours are in ``catalog.TASKS``).
NOTED_PARAMS: Dict[str, Tuple[str, ...]] = {
    "image-upscale": ("denoise_strength", "tile_batch_size", "tile_pad_size", "pre_pad_size", "half_precision",
                      "tile_overlap", "window_size", "task", "jpeg_quality", "inference_steps", "eta",
                      "downsample_method"),
    "face-embedding": ("face_detection", "alignment", "normalize_embeddings", "min_face_size",
                       "detection_threshold", "detection_size", "max_num_faces", "crop_margin", "image_size",
                       "prewhiten", "scale_factor", "upsampling", "num_jitters", "landmark_type"),
    "image-generation": ("clip_skip", "sigmas", "max_sequence_length", "true_cfg_scale", "distilled_guidance_scale",
                         "denoise_strength", "controlnet_conditioning_scale", "control_guidance_start",
                         "control_guidance_end"),
}

#: model-compose's parameter spellings that are ours under another name, per task.
PARAM_ALIASES: Dict[str, Dict[str, str]] = {
    "image-generation": {"inference_steps": "num_inference_steps", "num_return_images": "num_images"},
}

#: model-compose's ``architecture:`` words that are not ours, per task: None = a hint transformers does not
#: need (its Auto classes read the model's config; taken out, noted), text = refused with that reason.
ARCHITECTURE_WORDS: Dict[str, Dict[str, Any]] = {
    "text-embedding": {"bert": None, "sbert": None,
                       "xclip": "X-CLIP (video) text towers are not built here; `clip` and `siglip` are"},
    "image-to-text": {"blip2": "BLIP-2 is not built here yet; captioners here: blip, git, vit-gpt2",
                      "pix2struct": "Pix2Struct is not built here yet; captioners here: blip, git, vit-gpt2",
                      "donut": "Donut is not built here yet; captioners here: blip, git, vit-gpt2",
                      "kosmos2": "Kosmos-2 is not built here yet; captioners here: blip, git, vit-gpt2"},
}

#: Values model-compose takes that no backend here has: (key, value) -> the reason.
REFUSED_VALUES: Dict[Tuple[str, str], str] = {
    ("precision", "float8_e4m3"): "no float8 weights here; use `quantization: int8` (or nf4/int4) for smaller weights",
    ("precision", "float8_e5m2"): "no float8 weights here; use `quantization: int8` (or nf4/int4) for smaller weights",
    ("quantization", "fp8"): "bitsandbytes here quantizes to int8, int4 and nf4; use one of those",
    ("quantization", "fp4"): "bitsandbytes here quantizes to int8, int4 and nf4; use `nf4` (4-bit)",
}

#: llama.cpp's engine keys model-compose's older files write on the component -> the ``options:`` key.
LLAMACPP_KEYS: Dict[str, str] = {"context_length": "n_ctx", "n_ctx": "n_ctx", "n_batch": "n_batch",
                                 "n_threads": "n_threads", "n_gpu_layers": "n_gpu_layers"}

#: Keys of older model-compose files that 0.4.120 no longer reads (it drops them silently): key -> what to write.
OLDER_KEYS: Dict[str, str] = {
    "stream": "write `streaming: true` (model-compose 0.4.120 ignores `stream:`, so the reply would not stream there either)",
    "response_type": "remove it: the response is read by its content type (JSON, text, or bytes for audio and images)",
}

#: model-compose's ``quantization: {type, compute_dtype, double_quant}`` keys.
QUANTIZATION_KEYS = ("type", "compute_dtype", "double_quant")


def check_older_keys(raw: Dict[str, Any], path: Path, positions: Positions) -> None:
    """A key of an older model-compose (``stream:``, ``response_type:``) on a component or its actions: an
    error that says what 0.4.120 (and mc_jupyter) reads instead."""
    places = [(path, raw)]
    if isinstance(raw.get("action"), dict):
        places.append((path + ("action",), raw["action"]))
    if isinstance(raw.get("actions"), list):
        places += [(path + ("actions", i), a) for i, a in enumerate(raw["actions"]) if isinstance(a, dict)]
    for where, fields in places:
        for key, fix in OLDER_KEYS.items():
            if key in fields:
                raise ConfigError(f"`{key}:` is a key of an older model-compose; 0.4.120 no longer reads it",
                                  **positions.where(where + (key,)), hint=fix[0].upper() + fix[1:] + ".")


def from_model_compose(raw: Dict[str, Any], path: Path, positions: Positions, notes: List[str]) -> Dict[str, Any]:
    """``raw`` (a model component as written) in the shape the schema validates: aliases renamed, noted keys
    taken out (one line added to ``notes``), refused values raised as ConfigError. ``raw`` itself is not changed."""
    out = dict(raw)
    noted: List[str] = []
    task = out.get("task")
    if isinstance(task, str) and task in TASK_ALIASES:
        out["task"] = task = TASK_ALIASES[task]
    if isinstance(task, str) and task in MODEL_COMPOSE_TASKS and task not in TASKS:
        raise ConfigError(f"task `{task}` is model-compose's, and not built here yet", **positions.where(path + ("task",)),
                          hint=f"Tasks here: {choices_text(TASKS)}.")
    for key in list(out):
        if key in NOTED_COMPONENT_KEYS:
            out.pop(key)
            noted.append(key)
    if "peft_adapter" in out:
        if "peft_adapters" in out:
            raise ConfigError("both `peft_adapter:` and `peft_adapters:` are given", **positions.where(path + ("peft_adapter",)),
                              hint="Use one of them (model-compose writes `peft_adapter:`, a mapping or a list).")
        adapters = out.pop("peft_adapter")
        out["peft_adapters"] = [_adapter(a, i) for i, a in enumerate(adapters if isinstance(adapters, list)
                                                                      else [adapters])]
    _family(out, task, path, positions)
    arch = out.get("architecture")
    if arch == "auto":                    # model-compose's default: infer from the model (ours without the key)
        out.pop("architecture")
    elif isinstance(arch, str) and arch in ARCHITECTURE_WORDS.get(task, {}):
        reason = ARCHITECTURE_WORDS[task][arch]
        if reason:
            raise ConfigError(f"`architecture: {arch}` is model-compose's, but not supported here",
                              **positions.where(path + ("architecture",)), hint=reason[0].upper() + reason[1:] + ".")
        out.pop("architecture")
        noted.append(f"architecture: {arch}")
    if out.get("driver") == "llamacpp":  # model-compose's older shape: llama.cpp's engine keys on the component
        lifted = {LLAMACPP_KEYS[k]: out.pop(k) for k in list(out) if k in LLAMACPP_KEYS}
        if lifted:
            out["options"] = {**lifted, **dict(out.get("options") or {})}
    scale = out.pop("scale", None)        # model-compose puts the upscaling factor on the component
    for key in ("precision", "quantization"):
        value = out.get(key)
        kind = value.get("type") if key == "quantization" and isinstance(value, dict) else value
        if isinstance(kind, str) and (key, kind) in REFUSED_VALUES:
            raise ConfigError(f"`{key}: {clip(kind)}` is model-compose's, but not supported here",
                              **positions.where(path + (key,)), hint=REFUSED_VALUES[(key, kind)].capitalize() + ".")
    quant = out.get("quantization")
    if isinstance(quant, dict):
        unknown = [k for k in quant if k not in QUANTIZATION_KEYS]
        if unknown:
            raise ConfigError(f"unknown key `{clip(unknown[0])}` in `quantization:`",
                              **positions.where(path + ("quantization", unknown[0])),
                              hint=f"Valid keys here: {choices_text(QUANTIZATION_KEYS)}.")
        if "type" not in quant:
            raise ConfigError("`quantization:` needs a `type:`", **positions.where(path + ("quantization",)),
                              hint="E.g. `quantization: {type: nf4}` or `quantization: nf4`.")
        out["quantization"] = quant["type"]
        noted += [f"quantization.{k}" for k in quant if k != "type"]
    if out.get("precision") is None and "precision" in out:
        out.pop("precision")
    listed = "action" in out or "actions" in out
    for apath, action, top in _actions(out, path):
        _action(action, task, top, noted)
        if scale is not None and (not top or not listed or "image" in action):
            params = dict(action.get("params") or {})
            params.setdefault("scale", scale)
            action["params"] = params
    if noted:
        notes.append(f"component `{raw.get('id') or 'default'}`: model-compose's "
                     f"{', '.join(f'`{k}`' for k in dict.fromkeys(noted))} "
                     f"{'has' if len(set(noted)) == 1 else 'have'} no effect here (see docs/reference.md, "
                     f"\"model-compose's keys\").")
    return out


def _adapter(adapter: Any, index: int) -> Any:
    """model-compose's adapter entry in ours: ``name`` optional (``adapter_N``), ``model`` may be flat."""
    if isinstance(adapter, str):
        return {"name": f"adapter_{index + 1}", "model": adapter}
    if not isinstance(adapter, dict):
        return adapter
    out = dict(adapter)
    out.setdefault("type", "lora")
    if "model" not in out and any(k in out for k in ("provider", "repository", "path")):
        out["model"] = {k: out.pop(k) for k in ("provider", "repository", "path", "revision") if k in out}
    if not out.get("name"):
        out["name"] = f"adapter_{index + 1}"
    return out


def _family(out: Dict[str, Any], task: Any, path: Path, positions: Positions) -> None:
    if "family" not in out:
        return
    family = out.pop("family")
    known = FAMILIES.get(task, {})
    if not isinstance(family, str) or family not in known:
        where = positions.where(path + ("family",))
        if known:
            raise ConfigError(f"unknown family `{clip(family)}` for task `{task}`", **where,
                              hint=f"Families here: {choices_text(known)}.")
        instead = FAMILY_INSTEAD.get(family) if isinstance(family, str) else None
        raise ConfigError(f"`family: {clip(family)}` names one of model-compose's built-in custom models; "
                          f"task `{task}` has none here", **where,
                          hint=(instead[0].upper() + instead[1:] + "." if instead else
                                "Use `driver: huggingface` with the model's weights, or `driver: custom` with "
                                "`class:` (your own Python class)."))
    if out.get("architecture") not in (None, known[family]) and known[family]:
        raise ConfigError(f"`family: {family}` and `architecture: {clip(out['architecture'])}` disagree",
                          **positions.where(path + ("family",)), hint="Give one of them.")
    if known[family]:
        out["architecture"] = known[family]
    if out.get("driver") in (None, "custom") and "class" not in out:
        out["driver"] = "huggingface"     # model-compose's built-in family is our built-in implementation


def _actions(out: Dict[str, Any], path: Path):
    """(path, mapping, is the component's top level) of every place action fields are written."""
    yield path, out, True
    if isinstance(out.get("action"), dict):
        out["action"] = dict(out["action"])
        yield path + ("action",), out["action"], False
    if isinstance(out.get("actions"), list):
        out["actions"] = [dict(a) if isinstance(a, dict) else a for a in out["actions"]]
        for i, a in enumerate(out["actions"]):
            if isinstance(a, dict):
                yield path + ("actions", i), a, False


def _action(action: Dict[str, Any], task: Any, top: bool, noted: List[str]) -> None:
    """One action's (or the component's top-level) model-compose keys, in place."""
    for key in list(action):
        if key in NOTED_ACTION_KEYS and not (top and key in NOTED_COMPONENT_KEYS):
            action.pop(key)
            noted.append(key)
    aliases = PARAM_ALIASES.get(task, {})
    params = action.get("params")
    if isinstance(params, dict):
        params = dict(params)
        for key in list(params):
            if key in NOTED_PARAMS.get(task, ()):
                params.pop(key)
                noted.append(f"params.{key}")
            elif key in aliases:
                params[aliases[key]] = params.pop(key)
        action["params"] = params
    for key in list(action):
        if top and key == "task":         # the component's own `task:`, not SwinIR's `params.task`
            continue
        if key in aliases:
            action[aliases[key]] = action.pop(key)
        elif key in NOTED_PARAMS.get(task, ()):
            action.pop(key)
            noted.append(key)


def reference_rows() -> List[Tuple[str, str, str]]:
    """(where, key, what it does here) for docs/reference.md."""
    rows = [("task", f"`{a}`", f"the same as `{t}`") for a, t in TASK_ALIASES.items()]
    rows += [("component", "`family:`", "for " + "; ".join(
        f"{task}: {', '.join(f'`{f}`' for f in fams)}" for task, fams in FAMILIES.items())
        + ": our built-in implementation (upscaling: the `architecture:`); other families are refused")]
    rows += [("component", "`peft_adapter:`", "the same as `peft_adapters:` (a mapping or a list; `name` optional)"),
             ("component (llamacpp)", ", ".join(f"`{k}:`" for k in LLAMACPP_KEYS),
              "llama.cpp's engine settings (`context_length` is `options.n_ctx`; the others their own `options` key)"),
             ("component", "`scale:`", "the upscaling factor every action uses unless its `params.scale` says otherwise"),
             ("component", "`quantization: {type, compute_dtype, double_quant}`",
              "`type` is the quantization; the other two are noted (bitsandbytes' defaults here)")]
    rows += [("component", f"`{k}:`", f"noted: {why}") for k, why in NOTED_COMPONENT_KEYS.items()]
    rows += [("action", f"`{k}:`", f"noted: {why}") for k, why in NOTED_ACTION_KEYS.items()]
    rows += [(f"params ({task})", ", ".join(f"`{p}`" for p in ps), "noted: not built here yet")
             for task, ps in NOTED_PARAMS.items()]
    rows += [(f"params ({task})", f"`{a}`", f"the same as `{b}`") for task, m in PARAM_ALIASES.items()
             for a, b in m.items()]
    rows += [("component or action", f"`{k}:`", f"refused (an older model-compose's key): {why}")
             for k, why in OLDER_KEYS.items()]
    rows += [("component", "`architecture: auto`", "the same as leaving it out (inferred from the model)")]
    rows += [(f"component ({task})", f"`architecture: {a}`", f"refused: {why}" if why else
              "noted: transformers reads the architecture from the model's config")
             for task, words in ARCHITECTURE_WORDS.items() for a, why in words.items()]
    rows += [("component", f"`{k}: {v}`", f"refused: {why}") for (k, v), why in REFUSED_VALUES.items()]
    return rows

