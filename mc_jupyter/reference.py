"""The reference page, generated from the code so it cannot drift: ``python -m mc_jupyter.reference``.

It reads the schema (every key and its type and default), the driver and task tables, the magics'
help and the Python API's docstrings. ``tests/test_reference.py`` checks that ``docs/reference.md``
is what this prints.
"""

from __future__ import annotations

import inspect
import re
import enum
import typing
from typing import Any, List

from pydantic import BaseModel

from .config import http_schema, schema, store_schema
from .catalog import DriverName, Task, ARCHITECTURES, COMPONENT_TYPES, DRIVERS, FORMATS, TASKS, drivers_for

SECTIONS = [
    ("Model component (`type: model`)", schema.ModelComponent),
    ("Model action fields (top level, `action:` or `actions:`)", schema.ModelAction),
    ("`params:`", schema.Params),
    ("Hub source (`model: {provider: huggingface, ...}`)", schema.HubSource),
    ("Local source (`model: {provider: local, ...}`)", schema.LocalSource),
    ("`peft_adapters:` items", schema.PeftAdapter),
    ("HTTP component (`type: http-server` / `http-client`)", schema.HttpComponent),
    ("`manage:` (http-server)", schema.ManageConfig),
    ("`manage.scripts:` (http-server; model-compose's shape)", http_schema.ManageScripts),
    ("`rate_limit:` (http-client; or the shorthand `\"10/1s\"`)", http_schema.RateLimit),
    ("HTTP action fields", schema.HttpAction),
    ("`completion: {type: polling, ...}` (an HTTP action's)", http_schema.PollingCompletion),
    ("Vector store (`type: vector-store`; `driver: faiss`, the default, or `chroma`)", store_schema.VectorStoreComponent),
    ("Vector-store action fields (`method: insert | update | search | delete`)", store_schema.VectorAction),
    ("Text splitter (`type: text-splitter`)", store_schema.TextSplitterComponent),
    ("Workflow (`workflow:` / `workflows:` items)", schema.Workflow),
    ("Job (`job:` / `jobs:` items)", schema.Job),
]


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if annotation in (Task, DriverName):        # long lists: the tables below name them
            return "text"
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if origin is typing.Union:
        # sorted: typing caches `Union[int, str]` and `Union[str, int]` as one object, so the order written
        # depends on which was built first (the import order), not on the schema
        names = [part for a in args if a is not type(None) for part in _type_name(a).split(" or ")]
        return " or ".join(sorted(dict.fromkeys(names)))
    if origin in (list, List):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    if annotation is Any:
        return "any (may use `${...}`)"
    return getattr(annotation, "__name__", str(annotation)).replace("str", "text")


def _fields(model: type[BaseModel]) -> List[str]:
    rows = ["| key | type | default |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else ("—" if field.default in (None, ...) else f"`{field.default}`")
        rows.append(f"| `{field.alias or name}` | {_type_name(field.annotation)} | {default} |")
    return rows


#: Every ``${...}`` form model-compose 0.4.120 writes, and what it does here (mc_jupyter.binding parses them all).
BINDING_FORMS = [
    ("`${input.x}`, `${result.a[0]}`, `${jobs.ID.output}`, `${env.NAME}`, `${result[]}`",
     "dialect §4 (above the table: sources, paths, defaults)"),
    ("`${result[0]}`, `${result[1:5]}`, `${input[-1]}`, `${input.items[1:3].x}`", "index or slice the source or a path"),
    ("`${input.x as text[]}`", "a list, each element converted (`object[]/a,b.c` projects each element)"),
    ("`${input.m as select/a,b,c | a}`", "must be one of the choices at run time (else an error listing them); the "
                                           "default must be a choice (checked at compose time); a form shows a dropdown"),
    ("`${input.x @(description Message to send)}`", "an annotation: `%mc inputs`, `mc.form` and help show the description"),
    ("`${output as stream/text}`, `stream/json`", "the text (chunks joined) / the parsed JSON; live display follows "
                                                  "`streaming:`"),
    ("`${output as text;sse-text}`, `;sse-json`", "an older model-compose's spelling of `stream/text`, `stream/json`"),
    ("`${input.image as image/png}`, `image/png;base64`, `;data-uri`", "a PIL image; on an image, base64 of its PNG bytes "
                                                                       "/ a `data:image/png` URI"),
    ("`${x as audio}`, `audio/wav;base64`, `audio/mp3`", "an `mc_jupyter.media.Audio` (bytes, mime type, sample rate) "
                                                        "from bytes, a path, base64, a data URI or `(array, rate)`; "
                                                        "displays as an audio player"),
    ("`audio/pcm[sample_rate=16000,channels=1]`", "raw PCM samples (attributes may hold `${...}`); plays as WAV"),
    ("`video`, `file`, `model-3d`", "bytes with a mime type: a video player, or a download link"),
    ("`markdown`", "text that displays as Markdown"),
    ("`list`, `object`, `object/a,b.c`", "the shape is checked (JSON text parsed); `object/a,b.c` picks those keys"),
    ("`string`, `any`, `none`", "text / passed through / passed through"),
    ("`;path`, `;url`, `;data-uri`, `;base64`", "how a text value holds the data (`url` of non-images: `data:` only)"),
    ("`${input.q | a \\$ \\{b\\}}`", "escaped characters in a default"),
    ("`${context.run_id}`, `task_id`, `workflow_id`", "a fresh 32-hex id per run; `task_id` the same; the workflow's id"),
    ("`${output}` in a workflow's `output:`", "the last job's output"),
    ("`?: [{input, operator, value, if_true, if_false}]`", "the first condition that holds decides (operators: "
                                                           "eq, neq, gt, gte, lt, lte, in, not-in, starts-with, "
                                                           "ends-with, match)"),
    ("`+: [...]`", "joins lists, merges mappings, concatenates strings"),
    ("`&: {k: list, ...}`", "zips the lists into a list of mappings"),
    ("`*: source` (with `where:`), `key: ${item}`, `${index}`", "maps over a list, optionally filtered"),
    ("`|: source`, `key: ${item.x}`", "splits a list into a mapping of lists"),
    ("`...: ${x}`, `- ...${x}`", "spreads a mapping into a mapping / a list into a list"),
    ("`${error...}`", "parsed; there are no `on_error` outputs here yet"),
    ("`${gateway:...}`", "refused: gateways and tunnels need a public address a notebook does not have"),
]


def _binding_section() -> List[str]:
    from . import binding
    out = ["## Binding forms", "", "Types after `as`: " + ", ".join(f"`{t}`" for t in binding.TYPES) +
           "; formats after `;`: " + ", ".join(f"`{f}`" for f in binding.FORMATS) + "; sources: " +
           ", ".join(f"`{s}`" for s in binding.SOURCES) + ".", "", "| form | here |", "|---|---|"]
    out += [f"| {_cell(form)} | {_cell(what)} |" for form, what in BINDING_FORMS]
    return out + [""]


def _cell(text: str) -> str:
    """A table cell: its pipes escaped (GitHub's tables split on them even inside code)."""
    return text.replace("|", "\\|")


#: model-compose's http-server / http-client keys and what each does here (config/http_schema.py).
HTTP_KEYS = [
    ("`start`, `install`, `build`, `clean` (on the component, under `manage:`, or `manage.scripts:`)",
     "all under `manage:`; giving one in two places is an error"),
    ("`install`", "one command or a list of them; each runs once (a marker remembers it), before the first start"),
    ("`build`", "after install, once per command and working folder"),
    ("`clean`", "after the server's process tree stops (unload, `%mc stop`/`down`, a re-compose that replaces it, "
                "kernel exit); the next start installs and builds again; a failure is logged, never blocks a stop"),
    ("`manage.working_dir`, `manage.env`", "the folder and environment of every command"),
    ("`port`", "8000 when not given (model-compose's default; the plan says so)"),
    ("`base_path`", "prefixes every action's `path` and a polling `path` (http-server)"),
    ("`headers` (component)", "merged under each action's own headers; sent with every request"),
    ("`base_url` (component)", "folded into every action; an action's own value wins"),
    ("`rate_limit`", "`\"10/1s\"`, `\"5/m\"` or `{requests, period, burst, interval}`: one gate across the "
                     "component's actions (polls not counted, as in model-compose)"),
    ("`max_concurrent_count`", "a real limit on runs at once; 0 is no limit"),
    ("`default`", "the component a job or `%%run` without one uses"),
    ("`runtime`", "accepted: the component runs in this kernel (the plan says so)"),
    ("`endpoint` xor `path`", "both is an error; `path` without `base_url` is an error (model-compose's rule)"),
    ("`stream_format: json|text`", "streams when `output` reads `${response[]...}`"),
    ("`stream_fragmented`", "true: events merged, pieces joined; false: `${response}` is the list of events"),
    ("`completion: {type: polling}`", "waits `interval` (5 s), polls `endpoint`/`path` until the `status` value (or "
                                      "the HTTP code) is in `success_when` (that reply is the result) or `fail_when` "
                                      "(an error), up to `timeout` (300 s); durations `300ms`, `5s`, `2m`, `1h`, "
                                      "`1:30` or seconds"),
    ("`completion: {type: callback}`", "refused: the server calling back needs a public address a notebook does "
                                       "not have (gateways and tunnels are out of scope)"),
]


def _model_compose_section() -> List[str]:
    """model-compose 0.4.120's keys that are not this page's own: what each comes to here."""
    from .config import model_compose
    out = ["## model-compose's keys", "",
           "Files written for model-compose 0.4.120 (its `mindor/dsl/schema/`) compose unchanged where they use the "
           "tasks above. Its keys that are spelled otherwise here are aliases; those that have nothing to do in a "
           "notebook kernel are *noted* (accepted; the compose prints one line naming them); a value no backend "
           "here has is *refused* with the reason. A key neither model-compose nor mc_jupyter knows is an error "
           "with a did-you-mean.", "", "| where | model-compose's key | here |", "|---|---|---|"]
    out += [f"| {where} | {key} | {what} |" for where, key, what in model_compose.reference_rows()]
    out += ["", "### http-server and http-client", "", "| model-compose's key | here |", "|---|---|"]
    out += [f"| {_cell(key)} | {_cell(what)} |" for key, what in HTTP_KEYS]
    out += ["", "Tasks of model-compose not built here yet (composing one says so): " +
            ", ".join(f"`{t}`" for t in model_compose.MODEL_COMPOSE_TASKS
                      if t not in TASKS and t not in model_compose.TASK_ALIASES) + ".", ""]
    return out


_VECTOR_NOTE = (
    "A vector store's action reads, by `method`: " + "; ".join(
        f"{m}: " + ", ".join(f"`{k}`" for k in keys) for m, keys in store_schema.METHOD_KEYS.items()) +
    " (each also `id_field`, `vector_field`, `batch_size`; chroma's also `collection`). Filters: "
    "`{field: value}`, `{field: {operator: value}}` or a list of `{field, operator, value}`, with the operators " +
    ", ".join(f"`{o}`" for o in store_schema.FILTER_OPERATORS) + ". A job that names a method the component has "
    "no action for (`action: search`) sends its `input:` as the request (`vector` is a search's `query`). "
    "Drivers built: " + ", ".join(f"`{d}`" for d in store_schema.BUILT_VECTOR_DRIVERS) + "; " +
    ", ".join(f"`{d}`" for d in store_schema.VECTOR_DRIVERS if d not in store_schema.BUILT_VECTOR_DRIVERS) +
    " are refused at compose (they need a server or a service).")


def render() -> str:
    from .magics import McJupyter
    from . import api

    out = ["# Reference", "", "Generated by `python -m mc_jupyter.reference` from the schema, the driver table, "
           "the magics and the API; do not edit by hand.", "", "## Tasks", "",
           "| task | inputs | `params` | drivers | architectures |", "|---|---|---|---|---|"]
    for task, spec in TASKS.items():
        out.append(f"| `{task}` | {', '.join(f'`{i}`' for i in spec.inputs)} | {', '.join(spec.params)} | "
                   f"{', '.join(f'`{d}`' for d in drivers_for(task))} | "
                   f"{', '.join(ARCHITECTURES.get(task, ())) or '—'} |")
    out += ["", "## Drivers", "", "| driver | tasks | formats | needs |", "|---|---|---|---|"]
    for driver in dict.fromkeys(d for d, _ in DRIVERS):
        impls = [(t, i) for (d, t), i in DRIVERS.items() if d == driver]
        needs = sorted({pip for _, i in impls for _, pip in i.requires})
        out.append(f"| `{driver}` | {', '.join(t for t, _ in impls)} | {', '.join(FORMATS.get(driver, ()))} | "
                   f"{', '.join(needs) or '—'} |")
    out += ["", "Component types: " + ", ".join(f"`{t}`" for t in COMPONENT_TYPES) + ".", ""]
    out += [_VECTOR_NOTE, ""]
    out += ["## YAML keys", ""]
    for title, model in SECTIONS:
        out += [f"### {title}", ""] + _fields(model) + [""]
    out += _binding_section()
    out += _model_compose_section()
    out += ["## Magics", ""]
    for name in ("compose", "run_cell", "mc"):
        doc = inspect.getdoc(getattr(McJupyter, name)) or ""
        out += [f"### `{'%%run' if name == 'run_cell' else ('%mc' if name == 'mc' else '%%compose')}`", "", "```",
                doc.strip(), "```", ""]
    out += ["## Python API", ""]
    for name in ("compose", "run", "inputs", "form", "chat", "compare", "status", "unload", "stop", "logs", "down",
                 "read_config"):
        fn = getattr(api, name)
        signature = re.sub(r"<[^>]* object at 0x[0-9a-f]+>", "REGISTRY", str(inspect.signature(fn))).replace("'", "")
        out += [f"### `mc_jupyter.{name}{signature}`", "", inspect.getdoc(fn) or "", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
