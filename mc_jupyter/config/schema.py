"""The typed shape of the dialect (``spec/dialect.md``), strict: unknown keys are errors.

The pydantic classes mirror the YAML as written (both shapes of dialect §1), so a validation error's
location is the YAML path itself; :func:`parse_compose` turns them into :class:`ConfigError`s with
the line, the valid keys and a did-you-mean, then normalises both shapes into one
:class:`ComposeConfig`.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, Field, StringConstraints, ValidationError, create_model

from ..catalog import (ARCHITECTURES, COMPONENT_TYPES, DRIVER_NAMES, FORMAT_NAMES, FORMATS, TASKS, Device,
                       DeviceMode, DriverName, Format, Precision, Quantization, Task, drivers_for)
from ..errors import ConfigError, choices_text, did_you_mean
from .base import ActionHeader, Binding, Flag, Named, Number, Strict
from .infer_task import infer_task
from .model_compose import check_older_keys, from_model_compose
from .positions import Path, Positions, clip, format_path

CudaIndex = Annotated[str, StringConstraints(pattern=r"^cuda:\d+$")]


class HubSource(Strict):
    provider: Literal["huggingface"] = "huggingface"
    repository: str
    revision: str = "main"
    filename: Optional[str] = None
    cache_dir: Optional[str] = None
    allow_patterns: Optional[List[str]] = None
    local_files_only: Union[bool, str] = False
    token: Optional[str] = None


class UrlFetch(Strict):
    """Where a local model is fetched from when its ``path`` is missing (model-compose's ``UrlFetchConfig``)."""

    endpoint: str
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"] = "GET"
    headers: Optional[Dict[str, Any]] = None
    body: Optional[Union[str, Dict[str, Any]]] = None
    timeout: Optional[Number] = None


class LocalSource(Strict):
    provider: Literal["local"] = "local"
    path: Optional[str] = None        # with only `url:`, a folder under ~/.cache/models named after the file
    format: Format = Format.PYTORCH
    url: Optional[Union[str, UrlFetch]] = None    # fetched to `path` on first load when `path` is missing
    bundled: bool = False             # the download is an archive (.zip, .tar.gz, .tgz, .tar) unpacked into `path`


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: Any


#: The parameters that are not numbers; every other one is a number (or a binding that gives one).
_PARAM_TYPES: Dict[str, Any] = {"do_sample": Flag, "early_stopping": Flag, "return_probabilities": Flag, "normalize": Flag,
                                "stop_sequences": Union[List[str], str], "pooling": Union[Literal["mean", "cls", "max"], Binding],
                                "negative_prompt": str, "forced_bos_token": str, "document_field": str,
                                "return_documents": Flag, "language": str, "return_timestamps": Flag,
                                "timestamp_level": Union[Literal["segment", "word"], Binding], "time_offset": Any,
                                "span": Any, "task": Union[Literal["transcribe", "translate"], Binding],
                                "add_special_tokens": Flag, "labels": Union[List[str], str], "agnostic_nms": Flag,
                                "box_prompt": Any, "return_mask": Flag, "invert": Flag,
                                "output_format": Union[Literal["rgba", "mask"], Binding]}
#: Every task's input fields (``catalog.TASKS``): values of any shape, read by the task (``tasks/*``).
INPUT_NAMES = tuple(dict.fromkeys(i for spec in TASKS.values() for i in spec.inputs))

#: Every parameter any task takes (the names come from ``catalog.TASKS``, written once there); which task
#: takes which is checked against ``TASKS`` (:func:`_check_action_fields`).
Params = create_model("Params", __base__=Strict, **{
    name: (Optional[_PARAM_TYPES.get(name, Number)], None)
    for name in dict.fromkeys(p for spec in TASKS.values() for p in spec.params)})


_ModelActionInputs = create_model(   # the inputs first, in the catalog's order (the order `%mc inputs` lists them)
    "_ModelActionInputs", __base__=Strict,
    __doc__="The fields of a model action: at a component's top level, under ``action:`` or ``actions:``.",
    **{name: ((Optional[Union[str, List[Union[ChatMessage, str]]]], None) if name == "messages" else (Any, None))
       for name in INPUT_NAMES},
    params=(Optional[Params], None), streaming=(Optional[Union[bool, str]], None), output=(Any, None))


#: model-compose writes a task's parameters on the action too (``max_output_length``, ``return_probabilities``,
#: dialect §1): every parameter name is a field here; which task takes which is checked against ``TASKS``.
ModelActionFields = create_model("ModelActionFields", __base__=_ModelActionInputs, **{
    name: (Optional[_PARAM_TYPES.get(name, Number)], None)
    for name in dict.fromkeys(p for spec in TASKS.values() for p in spec.params) if name not in INPUT_NAMES})


class ModelAction(ModelActionFields, ActionHeader):
    pass


class PeftAdapter(Strict):
    type: Literal["lora"] = "lora"
    name: str
    model: Any
    weight: Number = 1.0


class ModelComponent(ModelActionFields, Named):
    type: Literal["model"] = "model"
    task: Task                    # names checked first (`_check_names`), with a did-you-mean
    driver: DriverName = DriverName.HUGGINGFACE
    model: Any = None             # a hub id, a path or a source mapping: read through `drivers.sources`
    architecture: Optional[str] = None
    device: Optional[Union[Device, CudaIndex]] = None    # model-compose's `cuda:0`, `cuda:1` too
    device_mode: DeviceMode = DeviceMode.SINGLE
    precision: Precision = Precision.AUTO
    quantization: Quantization = Quantization.NONE
    low_cpu_mem_usage: bool = False
    max_memory: Optional[Dict[Union[int, str], str]] = None
    trust_remote_code: bool = False
    fast_decode: bool = False     # text-generation/chat-completion: the fused, CUDA-graph decode step
    chat_template: Optional[str] = None   # chat-completion: a Jinja chat template instead of the tokenizer's
    default: bool = False         # model-compose's: the component a job or `%%run` without one uses
    peft_adapters: Optional[List[PeftAdapter]] = None
    labels: Optional[Union[List[str], Dict[int, str]]] = None
    class_: Optional[str] = Field(None, alias="class")       # driver: custom, `module:Class` or `file.py:Class`
    options: Optional[Dict[str, Any]] = None                 # passed to the driver (llama.cpp, custom)
    action: Optional[ModelAction] = None
    actions: Optional[List[ModelAction]] = None
    # model-compose runtime fields (dialect §1): accepted, noted
    max_concurrent_count: Optional[int] = None
    runtime: Optional[Any] = None
    preload: bool = True


from .http_schema import HttpAction, HttpActionFields, HttpComponent, ManageConfig, normalize_http  # noqa: E402
from .store_schema import (SPLITTER_ACTION_FIELDS, VECTOR_ACTION_FIELDS, VECTOR_LOAD_FIELDS,  # noqa: E402
                           SplitterAction, TextSplitterComponent, VectorAction, VectorStoreComponent,
                           check_vector_action, check_vector_component, implicit_actions)

HTTP_MODELS = (HttpComponent, HttpAction, ManageConfig)


class Job(Named):
    type: Literal["action"] = "action"
    component: Optional[str] = None
    action: Optional[str] = None
    input: Any = None
    output: Any = None
    depends_on: Optional[List[str]] = None


class Workflow(Named):
    default: bool = False
    jobs: Optional[List[Job]] = None
    job: Optional[Job] = None
    # model-compose's one-job shorthand: a workflow with no `job:`/`jobs:` is one job with these keys
    component: Optional[str] = None
    action: Optional[str] = None
    input: Any = None
    output: Any = None
    name: Optional[str] = None         # model-compose's label (`title:` is shown)
    private: bool = False              # model-compose: hidden from its HTTP clients; no effect here


IGNORED_SECTIONS = ("controller", "webui", "listener", "listeners", "gateway", "gateways",
                    "logger", "loggers", "system", "systems", "tracer", "tracers")
TOP_LEVEL = ("component", "components", "workflow", "workflows") + IGNORED_SECTIONS
_NO_FRONT_END = "a notebook has no HTTP front end"
_OUT_OF_SCOPE = ("gateways and tunnels are out of scope here: they give a server a public address, which a notebook "
                 "does not have (`${gateway:...}` and callback completions are refused where they are used)")
_IGNORED_WHY = {"gateway": _OUT_OF_SCOPE, "gateways": _OUT_OF_SCOPE,
                "listener": "a notebook has no HTTP front end to listen for callbacks on",
                "listeners": "a notebook has no HTTP front end to listen for callbacks on",
                "logger": "runs log to the notebook (`%mc logs ID` for a server's)",
                "loggers": "runs log to the notebook (`%mc logs ID` for a server's)",
                "tracer": "tracing is not built here", "tracers": "tracing is not built here",
                "system": "model-compose's external systems are not managed here",
                "systems": "model-compose's external systems are not managed here"}


# ----------------------------------------------------------------------------------------------
# Normalised shape


@dataclass
class ActionSpec:
    """One action of a component, fields as written (bindings not yet evaluated)."""

    id: str
    fields: Dict[str, Any]
    path: Path


@dataclass
class ComponentSpec:
    """One component. ``config`` is the validated, frozen model every backend reads (``config.precision``);
    ``settings`` are the load fields as written, for the reload fingerprint and a custom driver's class."""

    id: str
    type: str
    settings: Dict[str, Any]          # load-relevant fields as written (task, driver, model, device, ...)
    actions: Dict[str, ActionSpec]
    default_action: str
    path: Path
    line: Optional[int] = None
    config: Union["ModelComponent", "HttpComponent", "VectorStoreComponent", "TextSplitterComponent", None] = None

    @property
    def task(self) -> Optional[Task]:
        return getattr(self.config, "task", None)

    def fingerprint(self) -> str:
        """A digest of what needs a reload when it changes: every load setting but the live ones (an
        adapter's ``weight`` is applied to the loaded model)."""
        out = dict(self.settings, type=self.type)
        if out.get("max_memory"):
            out["max_memory"] = {str(k): v for k, v in out["max_memory"].items()}   # 0 and "cpu" side by side
        if out.get("peft_adapters"):
            out["peft_adapters"] = [{k: v for k, v in a.items() if k != "weight"} for a in out["peft_adapters"]]
        text = json.dumps(out, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class JobSpec:
    id: str
    component: str
    action: Optional[str]
    input: Any
    output: Any
    depends_on: Optional[List[str]]
    path: Path


@dataclass
class WorkflowSpec:
    id: str
    jobs: List[JobSpec]
    output: Any
    path: Path
    title: Optional[str] = None
    default: bool = False


@dataclass
class ComposeConfig:
    components: Dict[str, ComponentSpec] = field(default_factory=dict)
    workflows: Dict[str, WorkflowSpec] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    positions: Positions = field(default_factory=Positions)

    @property
    def default_component(self) -> Optional[str]:
        """The component marked ``default: true`` (model-compose's), if one is."""
        return next((cid for cid, c in self.components.items() if (c.config is not None and c.config.default)), None)


LOAD_FIELDS = ("task", "driver", "model", "architecture", "chat_template", "device", "device_mode", "precision",
                "quantization", "low_cpu_mem_usage", "max_memory", "class", "options", "trust_remote_code", "fast_decode",
                "peft_adapters", "labels",
                "preload", "manage", "port", "host")
_MODEL_ACTION_FIELDS = tuple(ModelActionFields.model_fields)
_PARAM_NAMES = frozenset(p for spec in TASKS.values() for p in spec.params)
_ACTION_LEVEL_SHOWN = ("max_output_length", "batch_size", "max_input_length", "stop_sequences")
_HTTP_ACTION_FIELDS = tuple(HttpActionFields.model_fields)


def parse_compose(data: Any, positions: Positions) -> ComposeConfig:
    """Validate the loaded YAML and normalise both shapes of dialect §1."""
    config = ComposeConfig(positions=positions)
    if data is None:
        raise ConfigError("the cell is empty", line=positions.line(()),
                          hint="Write a `component:` (or `components:`) and optionally a `workflow:`.")
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping of sections, not a {type(data).__name__}",
                          line=positions.line(()), hint=f"Valid sections: {choices_text(TOP_LEVEL[:4])}.")
    for key in data:
        if key not in TOP_LEVEL:
            hint = f"Valid sections: {choices_text(TOP_LEVEL)}."
            if key in ModelComponent.model_fields or key in Workflow.model_fields:
                owner = "component" if key in ModelComponent.model_fields else "workflow"
                hint = f"`{clip(key)}:` belongs inside a `{owner}:`; indent it under one. " + hint
            raise ConfigError(f"unknown section `{clip(key)}`{did_you_mean(key, TOP_LEVEL)}",
                              **positions.where((key,)), hint=hint)
    _both_shapes(data, positions, "component", "components")
    _both_shapes(data, positions, "workflow", "workflows")
    data = _keyed_lists(data, positions)
    for key in IGNORED_SECTIONS:
        if key in data:
            config.notes.append(f"`{key}:` is accepted and ignored: {_IGNORED_WHY.get(key, _NO_FRONT_END)}.")

    for path, raw in _items(data, "component", "components", positions):
        spec = _component(raw, path, positions, config.notes)
        if spec.id in config.components:
            raise ConfigError(f"two components share the id `{clip(spec.id)}`", **positions.where(path),
                              hint="Give each component its own `id:`.")
        config.components[spec.id] = spec
    for path, raw in _items(data, "workflow", "workflows", positions):
        flow = _workflow(raw, path, positions, config)
        if flow.id in config.workflows:
            raise ConfigError(f"two workflows share the id `{clip(flow.id)}`", **positions.where(path),
                              hint="Give each workflow its own `id:`.")
        config.workflows[flow.id] = flow
    defaults = [c for c in config.components.values() if (c.config is not None and c.config.default)]
    if len(defaults) > 1:
        raise ConfigError(f"{len(defaults)} components are marked `default: true` "
                          f"({', '.join(f'`{clip(c.id, 40)}`' for c in defaults)})",
                          **positions.where(defaults[1].path + ("default",)),
                          hint="Mark one of them: it is the one a job without `component:` uses.")
    marked = [w for w in config.workflows.values() if w.default]
    if len(marked) > 1:
        raise ConfigError(f"{len(marked)} workflows are marked `default: true` "
                          f"({', '.join(f'`{clip(w.id, 40)}`' for w in marked)})",
                          **positions.where(marked[1].path + ("default",)),
                          hint="Mark one of them `default: true`: it is the one `%%run` without an id runs.")
    return config


#: The keys that say a mapping is one component (or one workflow), not a mapping of them by id.
_OWN_KEYS = frozenset(ModelComponent.model_fields) | frozenset(HttpComponent.model_fields) | {"class"} | \
    frozenset(VectorStoreComponent.model_fields) | frozenset(TextSplitterComponent.model_fields) | \
    frozenset(Workflow.model_fields)


def _keyed(value: Any) -> bool:
    """A mapping of mappings by id (model-compose's older `components: {ID: {...}}`), not one item."""
    return isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values()) and \
        not any(isinstance(k, str) and k in _OWN_KEYS for k in value)


def _keyed_lists(data: dict, positions: Positions) -> dict:
    """model-compose's older shape, items keyed by id (`components:`, `workflows:`, a component's `actions:`,
    a workflow's `jobs:`), as lists with the key as each item's `id:`; the YAML lines follow the items."""
    def listed(container: dict, key: str, path: Path) -> None:
        value = container.get(key)
        if not _keyed(value):
            return
        items = []
        for i, (item_id, item) in enumerate(value.items()):
            positions.copy(path + (key, item_id), path + (key, i))
            items.append({"id": item_id, **item} if "id" not in item else dict(item))
        container[key] = items

    data = dict(data)
    for section, inner in (("components", "actions"), ("workflows", "jobs")):
        listed(data, section, ())
        items = data.get(section)
        if isinstance(items, list):
            data[section] = [dict(i) if isinstance(i, dict) else i for i in items]
            for i, item in enumerate(data[section]):
                if isinstance(item, dict):
                    listed(item, inner, (section, i))
        elif isinstance(items, dict):
            data[section] = dict(items)
            listed(data[section], inner, (section,))
    for one, inner in (("component", "actions"), ("workflow", "jobs")):
        if isinstance(data.get(one), dict):
            data[one] = dict(data[one])
            listed(data[one], inner, (one,))
    return data


def _both_shapes(data: dict, positions: Positions, one: str, many: str) -> None:
    if one in data and many in data:
        raise ConfigError(f"both `{one}:` and `{many}:` are given", path=many, line=positions.line((many,)),
                          hint=f"Use `{one}:` for a single one or `{many}:` for a list, not both.")


def _items(data: dict, one: str, many: str, positions: Positions):
    if one in data:
        yield (one,), data[one]
    elif many in data:
        items = data[many]
        if isinstance(items, dict):   # a single mapping under the plural key
            yield (many,), items
            return
        if not isinstance(items, list):
            raise ConfigError(f"`{many}:` must be a list", path=many, line=positions.line((many,)))
        for i, item in enumerate(items):
            yield (many, i), item


def _validate(cls: type[BaseModel], raw: Any, path: Path, positions: Positions) -> BaseModel:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping here, found {_describe(raw)}", **positions.where(path))
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise _translate(e, cls, raw, path, positions) from None


def _component(raw: Any, path: Path, positions: Positions, notes: Optional[List[str]] = None) -> ComponentSpec:
    if not isinstance(raw, dict):
        found = _describe(raw) if raw is not None else "nothing"
        hint = "Indent the component's keys under it, starting with `task:` (e.g. `task: text-generation`)."
        if isinstance(raw, list):
            hint += " For several components, use `components:` with a list of mappings."
        raise ConfigError(f"expected a mapping of the component's keys here, found {found}",
                          **positions.where(path), hint=hint)
    valid = {"type": COMPONENT_TYPES, "task": TASKS, "driver": DRIVER_NAMES, "architecture": sum(ARCHITECTURES.values(), ())}
    for key in ("type", "task", "driver", "architecture"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"`{key}:` must be a single word, not {_describe(raw[key])}",
                              **positions.where(path + (key,)),
                              hint=f"Valid {key if key != 'architecture' else 'architecture'}s: "
                                   f"{choices_text(valid[key])}.")
    kind = raw.get("type", "model")
    if kind not in COMPONENT_TYPES:
        raise ConfigError(f"unknown component type `{clip(kind)}`{did_you_mean(kind, COMPONENT_TYPES)}",
                          **positions.where(path + ("type",)), hint=f"Valid types: {choices_text(COMPONENT_TYPES)}.")
    cls = {"model": ModelComponent, "vector-store": VectorStoreComponent,
           "text-splitter": TextSplitterComponent}.get(kind, HttpComponent)
    check_older_keys(raw, path, positions)
    if cls is ModelComponent:
        raw = from_model_compose(raw, path, positions, notes if notes is not None else [])
        if "task" not in raw:       # spec 8.7: the task the model's files say
            task = infer_task(raw, path, positions, notes if notes is not None else [])
            if task is not None:
                raw = dict(raw, task=task)
        _check_names(raw, path, positions)
        if "task" in raw:           # without one, pydantic's "required key `task` is missing" comes first
            _precheck_params(raw, path, positions)
    if cls is HttpComponent:
        raw = normalize_http(raw, path, positions)
    comp = _validate(cls, raw, path, positions)
    cid = comp.id or "default"
    if isinstance(comp, ModelComponent):
        _check_model_component(comp, path, positions)
        action_fields, action_cls = _MODEL_ACTION_FIELDS, ModelAction
    elif isinstance(comp, VectorStoreComponent):
        check_vector_component(comp, raw, path, positions)
        action_fields, action_cls = VECTOR_ACTION_FIELDS, VectorAction
    elif isinstance(comp, TextSplitterComponent):
        action_fields, action_cls = SPLITTER_ACTION_FIELDS, SplitterAction
    else:
        action_fields, action_cls = _HTTP_ACTION_FIELDS, HttpAction
    settings = {k: raw[k] for k in LOAD_FIELDS if k in raw}
    if isinstance(comp, VectorStoreComponent):
        settings.update({k: getattr(comp, k) for k in VECTOR_LOAD_FIELDS})   # defaults too: `driver: faiss` or not
    if isinstance(comp, ModelComponent):
        settings.setdefault("task", comp.task)
        settings.setdefault("driver", comp.driver)
    settings["type"] = comp.type

    actions: Dict[str, ActionSpec] = {}
    # `task:` and `labels:` at a model component's top level are the component's own (an action's `task:` is
    # Whisper's transcribe/translate, an action's `labels:` a detector's classes)
    top = {k: raw[k] for k in action_fields if k in raw and not (cls is ModelComponent and k in ("task", "labels"))}
    default_action = "default"
    if top or (comp.action is None and not comp.actions):
        actions["default"] = ActionSpec("default", top, path)
    if comp.action is not None:
        a = raw["action"]
        aid = comp.action.id
        actions[aid] = ActionSpec(aid, {k: a[k] for k in action_fields if k in a}, path + ("action",))
        if not top:
            default_action = aid
    for i, a in enumerate(raw.get("actions") or []):
        apath = path + ("actions", i)
        parsed = _validate(action_cls, a, apath, positions)
        if parsed.id in actions:
            raise ConfigError(f"two actions share the id `{clip(parsed.id)}`", **positions.where(apath),
                              hint="Give each action its own `id:`.")
        actions[parsed.id] = ActionSpec(parsed.id, {k: a[k] for k in action_fields if k in a}, apath)
        if (i == 0 and not top and comp.action is None) or parsed.default:
            default_action = parsed.id
    if isinstance(comp, ModelComponent):
        for action in actions.values():
            _check_action_fields(comp.task, action, positions)
    if isinstance(comp, VectorStoreComponent):
        for action in actions.values():
            check_vector_action(comp.driver, action.fields, action.path, positions)
        for method, fields in implicit_actions(actions).items():   # the seed's `action: search` in a job
            actions[method] = ActionSpec(method, fields, path)
        if not (top or comp.action is not None or comp.actions):
            actions.pop("default", None)
            default_action = "search"
    return ComponentSpec(cid, comp.type, settings, actions, default_action, path, positions.line(path), comp)


def _precheck_params(raw: dict, path: Path, positions: Positions) -> None:
    """Check ``params:`` keys against the task first, so the message lists that task's parameters."""
    places = [(path, raw)]
    if isinstance(raw.get("action"), dict):
        places.append((path + ("action",), raw["action"]))
    for i, a in enumerate(raw.get("actions") if isinstance(raw.get("actions"), list) else []):
        if isinstance(a, dict):
            places.append((path + ("actions", i), a))
    for apath, fields in places:
        if isinstance(fields.get("params"), dict):
            _check_action_fields(raw["task"], ActionSpec("", {"params": fields["params"]}, apath), positions)


def _check_names(raw: dict, path: Path, positions: Positions) -> None:
    """``task:`` and ``driver:`` against the catalog before validation, so an unknown one gets the valid
    names and a did-you-mean (pydantic's enum message would not)."""
    task, driver = raw.get("task"), raw.get("driver", DriverName.HUGGINGFACE)
    if "task" not in raw:
        return      # pydantic's "required key missing"
    if task not in TASKS:
        raise ConfigError(f"unknown task `{clip(task)}`{did_you_mean(task, TASKS)}", **positions.where(path + ("task",)),
                          hint=f"Valid tasks: {choices_text(TASKS)}.")
    if driver not in DRIVER_NAMES:
        raise ConfigError(f"unknown driver `{clip(driver)}`{did_you_mean(driver, DRIVER_NAMES)}",
                          **positions.where(path + ("driver",)), hint=f"Valid drivers: {choices_text(DRIVER_NAMES)}.")


def _check_model_component(comp: ModelComponent, path: Path, positions: Positions) -> None:
    def fail(key: str, message: str, hint: str = "") -> None:
        raise ConfigError(message, **positions.where(path + (key,)), hint=hint)

    if comp.driver not in drivers_for(comp.task):
        fail("driver", f"the `{comp.driver}` driver does not do task `{comp.task}`",
             f"Drivers for {comp.task}: {choices_text(drivers_for(comp.task))}.")
    archs = ARCHITECTURES.get(comp.task, ())
    if comp.architecture is not None and comp.architecture not in archs:
        if archs:
            fail("architecture", f"unknown architecture `{clip(comp.architecture)}` for task `{comp.task}`"
                 f"{did_you_mean(comp.architecture, archs)}", f"Valid architectures: {choices_text(archs)}.")
        fail("architecture", f"task `{comp.task}` takes no `architecture:`",
             f"Remove it; architectures apply to {choices_text(ARCHITECTURES)}.")
    _check_model_source(comp.model, comp.driver, path + ("model",), positions)
    if comp.class_ is not None and comp.driver != "custom":
        fail("class", f"`class:` names a custom model class, but the driver is `{comp.driver}`",
             "Add `driver: custom`, or remove `class:`.")
    if comp.fast_decode and (comp.driver != "huggingface" or comp.task not in ("text-generation", "chat-completion")):
        fail("fast_decode", f"`fast_decode` is for the huggingface driver's text-generation and chat-completion, "
             f"not `{comp.driver}` {comp.task}", "Remove `fast_decode:`.")
    if comp.fast_decode and comp.quantization not in (Quantization.NONE, Quantization.INT8, Quantization.INT4):
        fail("quantization", f"`fast_decode` quantizes the weights itself, to int8 or int4; "
             f"`quantization: {comp.quantization}` is bitsandbytes' format",
             "Write `quantization: int4` (group-wise, the fast step's own) or `int8`, or remove `fast_decode:` "
             "(the model then runs through transformers' generate on bitsandbytes' nf4).")
    if comp.fast_decode and (comp.peft_adapters or comp.device_mode == DeviceMode.AUTO):
        what = "`peft_adapters`" if comp.peft_adapters else "`device_mode: auto`"
        fail("fast_decode", f"`fast_decode` needs plain weights on one device; this component has {what}",
             "Remove `fast_decode:` (the model then runs through transformers' generate), or the other setting.")
    if comp.chat_template is not None and (comp.task not in ("chat-completion", "vision-text-encoding")
                                           or comp.driver not in ("huggingface", "unsloth", "vllm", "custom")):
        fail("chat_template", f"`chat_template` is for chat-completion (huggingface, unsloth or vllm driver) and "
             f"vision-text-encoding, not `{comp.driver}` {comp.task}",
             "llama.cpp applies the GGUF's own template: remove `chat_template:`." if comp.driver == "llamacpp"
             else "Remove `chat_template:`.")
    names = [a.name for a in comp.peft_adapters or []]
    for i, adapter in enumerate(comp.peft_adapters or []):
        apath = path + ("peft_adapters", i)
        if names.count(adapter.name) > 1 or adapter.name == "mc_combined":
            raise ConfigError(f"the adapter name `{clip(adapter.name)}` is used twice or reserved",
                              **positions.where(apath + ("name",)),
                              hint="Give each adapter its own `name:` (`mc_combined` is reserved).")
        _check_model_source(adapter.model, comp.driver, apath + ("model",), positions)


def _check_model_source(model: Any, driver: str, path: Path, positions: Positions) -> None:
    where = positions.where(path)
    if model is None or isinstance(model, str):
        return
    if not isinstance(model, dict):
        raise ConfigError(f"`model:` must be a hub id, a path, or a mapping, not {_describe(model)}", **where)
    provider = model.get("provider") or ("huggingface" if "repository" in model else "named" if "name" in model
                                         else "local")   # model-compose's rule
    if provider == "named":
        raise ConfigError("`provider: named` (a preset name known to one of model-compose's custom model families) "
                          "is not supported here", **positions.where(path),
                          hint="Name the weights instead: a hub id (`repository:`) or a local `path:`.")
    if provider not in ("huggingface", "local"):
        raise ConfigError(f"unknown model provider `{clip(provider)}`"
                          f"{did_you_mean(provider, ['huggingface', 'local'])}",
                          **positions.where(path + ("provider",)),
                          hint="Valid providers: `huggingface` (with `repository:`) and `local` (with `path:`).")
    src = _validate(HubSource if provider == "huggingface" else LocalSource, model, path, positions)
    if isinstance(src, LocalSource) and not src.path and not src.url:
        raise ConfigError("a local model needs `path:` or `url:`", **positions.where(path),
                          hint="Add `path: ./models/NAME`, or `url:` to fetch it on first load (with `bundled: true` "
                               "for an archive that is unpacked in place).")
    fmt = src.format if "format" in src.model_fields_set else None   # model-compose 0.4.120 writes none
    if fmt is not None and fmt not in FORMATS.get(driver, FORMAT_NAMES):
        fit = [d for d, fs in FORMATS.items() if fmt in fs]
        raise ConfigError(f"format `{fmt}` does not fit the `{driver}` driver",
                          **positions.where(path + ("format",)),
                          hint=f"`{driver}` reads {choices_text(FORMATS[driver])}; `{fmt}` is read by "
                               f"{choices_text(fit)} (set `driver:` accordingly).")


def _check_action_fields(task: str, action: ActionSpec, positions: Positions) -> None:
    spec = TASKS.get(task)
    if spec is None:
        return
    allowed_inputs = set(spec.inputs)
    for key in INPUT_NAMES:
        if key in action.fields and key not in allowed_inputs:
            p = action.path + (key,)
            raise ConfigError(f"task `{task}` takes no `{key}:`", **positions.where(p),
                              hint=f"Its inputs are {choices_text(spec.inputs)}.")
    for key in action.fields:
        if key in _PARAM_NAMES and key not in spec.params and key not in spec.inputs:
            p = action.path + (key,)
            raise ConfigError(f"task `{task}` takes no parameter `{positions.written.get(p, clip(key))}`"
                              f"{did_you_mean(key, spec.params)}", **positions.where(p),
                              hint=f"Its parameters are {choices_text(spec.params)} (under `params:` or on the action).")
    if "streaming" in action.fields and not spec.streams and action.fields["streaming"] is not False:
        p = action.path + ("streaming",)
        raise ConfigError(f"task `{task}` does not stream", **positions.where(p),
                          hint=f"Streaming is for {choices_text([t for t, s in TASKS.items() if s.streams])}.")
    for key in action.fields.get("params") or {}:
        if key not in spec.params:
            p = action.path + ("params", key)
            raise ConfigError(f"task `{task}` takes no parameter `{positions.written.get(p, clip(key))}`"
                              f"{did_you_mean(key, spec.params)}", **positions.where(p),
                              hint=f"Its parameters are {choices_text(spec.params)}.")


def _workflow(raw: Any, path: Path, positions: Positions, config: ComposeConfig) -> WorkflowSpec:
    flow = _validate(Workflow, raw, path, positions)
    if flow.jobs is not None and flow.job is not None:
        raise ConfigError("both `job:` and `jobs:` are given", **positions.where(path + ("jobs",)),
                          hint="Use `job:` for one job or `jobs:` for a list.")
    raw_jobs = [(path + ("job",), raw["job"])] if flow.job is not None else \
        [(path + ("jobs", i), j) for i, j in enumerate(raw.get("jobs") or [])]
    single = not raw_jobs and (flow.component is not None or "input" in raw or len(config.components) == 1)
    if single:       # model-compose's one-job workflow: its own component/action/input/output are the job's
        raw_jobs = [(path, {k: raw[k] for k in ("component", "action", "input", "output") if k in raw})]
    elif flow.component is not None or flow.action is not None:
        key = "component" if flow.component is not None else "action"
        raise ConfigError(f"`{key}:` on a workflow with `job:`/`jobs:` belongs to a job",
                          **positions.where(path + (key,)), hint=f"Move `{key}:` into the job that uses it.")
    if not raw_jobs:
        raise ConfigError("the workflow has no jobs", **positions.where(path),
                          hint="Add `jobs:` with at least one `- component: ID`.")
    jobs: List[JobSpec] = []
    for i, (jpath, jraw) in enumerate(raw_jobs):
        job = _validate(Job, jraw, jpath, positions)
        jid = job.id or (f"job-{i + 1}" if len(raw_jobs) > 1 else "job")
        if any(j.id == jid for j in jobs):
            raise ConfigError(f"two jobs share the id `{clip(jid)}`", **positions.where(jpath),
                              hint="Give each job its own `id:`.")
        component = job.component or config.default_component or \
            (next(iter(config.components)) if len(config.components) == 1 else None)
        if component is None:
            raise ConfigError("the job names no `component:`", **positions.where(jpath),
                              hint="Add `component: ID` naming a component of this or an earlier %%compose cell.")
        jobs.append(JobSpec(jid, component, job.action, jraw.get("input"), jraw.get("output"), job.depends_on, jpath))
    return WorkflowSpec(flow.id or "default", jobs, None if single else raw.get("output"), path, flow.title,
                        flow.default)


# ----------------------------------------------------------------------------------------------
# pydantic errors -> ConfigError


def _translate(error: ValidationError, cls: type[BaseModel], raw: Any, path: Path, positions: Positions) -> ConfigError:
    first = _most_specific(error.errors())
    loc = _keys_of(raw, tuple(x for x in first["loc"] if not (isinstance(x, str) and ("[" in x or x in _UNION_TAGS
                                                                                    or x in _MODEL_NAMES))))
    full = path + loc
    where = positions.where(full)
    kind = first["type"]
    # the key itself, even when it looks like one of pydantic's own location markers (a key `[`)
    key = loc[-1] if loc else (first["loc"][-1] if first["loc"] else "")
    if kind in ("extra_forbidden", "invalid_key"):
        owner = _model_at(cls, loc[:-1])
        valid = sorted(f.alias or name for name, f in owner.model_fields.items()) if owner else []
        written = positions.written.get(full, clip(key))
        shown = [k for k in valid if k not in _PARAM_NAMES or k in _ACTION_LEVEL_SHOWN]
        task = raw.get("task") if isinstance(raw, dict) else None
        if isinstance(task, str) and task in TASKS:    # the inputs of this task, not of every task
            shown = [k for k in shown if k not in INPUT_NAMES or k in TASKS[task].inputs]
        more = " and the task's parameters (also accepted under `params:`)" if len(shown) < len(valid) else ""
        return ConfigError(f"unknown key `{written}`{did_you_mean(key, valid)}"
                           f"{' (a number, not a word)' if kind == 'invalid_key' else ''}", **where,
                           hint=f"Valid keys here: {choices_text(shown)}{more}." if valid else "")
    if "[key]" in first["loc"] and kind == "string_type":      # a mapping whose keys are text: `options: {1: x}`
        written = positions.written.get(full, clip(key))
        return ConfigError(f"the key `{written}` must be text here, not a number", **where,
                           hint=f"Quote it: `\"{written}\":`.")
    if kind == "missing":
        return ConfigError(f"the required key `{loc[-1]}` is missing", **positions.where(full[:-1]),
                           hint=f"Add `{loc[-1]}:`.")
    value = first.get("input")
    if kind in ("literal_error", "enum"):
        expected = first.get("ctx", {}).get("expected", "")
        return ConfigError(f"`{clip(value)}` is not a valid value for `{loc[-1]}`"
                           f"{did_you_mean(value, _quoted(expected))}", **where, hint=f"Valid values: {expected}.")
    name = next((x for x in reversed(full) if isinstance(x, str)), "")
    return ConfigError(f"{_describe(value)} does not fit `{format_path(full[full.index(name):]) if name else ''}`: "
                       f"{clip(first['msg'], 200)}", **where)


def _keys_of(raw: Any, loc: Path) -> Path:
    """pydantic writes a number key as text (`'1.5'`): the YAML's own keys, to find their lines."""
    out, current = [], raw
    for part in loc:
        if isinstance(current, dict) and part not in current:
            part = next((k for k in current if not isinstance(k, str) and str(k) == part), part)
        out.append(part)
        if isinstance(current, list) and isinstance(part, int) and -len(current) <= part < len(current):
            current = current[part]
        else:
            current = current.get(part) if isinstance(current, dict) else None
    return tuple(out)


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "function-after", "none", "literal", "constrained-int",
               "enum"}
_MODEL_NAMES = {name for name, obj in list(globals().items()) if isinstance(obj, type) and issubclass(obj, BaseModel)}


def _most_specific(errors: List[dict]) -> dict:
    order = {"extra_forbidden": 0, "literal_error": 1, "value_error": 2, "missing": 3}
    return sorted(errors, key=lambda e: (order.get(e["type"], 3), -len(e["loc"])))[0]


def _quoted(expected: str) -> List[str]:
    return [p.strip().strip("'\"") for p in expected.replace(" or ", ",").split(",") if p.strip()]


def _model_at(cls: Any, loc: Path) -> Optional[type[BaseModel]]:
    current = cls
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _unwrap(current.model_fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    for arg in (typing.get_args(annotation) or (annotation,)):
        inner = _unwrap(arg) if typing.get_args(arg) else arg
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _describe(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__}"
    return f"`{clip(value if isinstance(value, str) else repr(value))}`"
