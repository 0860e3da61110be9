"""The Python API: everything the magics do, for scripts and tests.

    import mc_jupyter as mc
    mc.compose(yaml_text)                 # load into the kernel-resident registry (or a dict of the same shape)
    result = mc.run(inputs={"text": "hi"})  # RunResult; result.output is the plain value
    mc.run(inputs={"text": "$docs"})      # `$name`: the variable `docs` (of the notebook, or namespace=...)
    mc.status(); mc.unload("id"); mc.down()
    mc.inputs("wf")                       # the inputs a run of `wf` reads: type, choices, default, description
    mc.form("wf")                         # a form on them, with a Run button and the output below

Every call checks all its arguments before it acts: one that fails changes nothing.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from .config.loader import load_mapping, load_yaml
from .config.positions import clip
from .config.schema import parse_compose
from .devices import memory_snapshot
from .display.result import PlanView, RunResult, StatusTable, StreamView
from .engine import StreamSink, run as run_engine
from .errors import ConfigError, InputError, UserError
from .install import Say
from .registry import Plan, Registry, not_loaded
from .widgets import embedding_map, images as image_widgets
from .workflows import inputs_of, resolve_target

#: The registry of this kernel (one per Python process).
REGISTRY = Registry()
# Kernel shutdown and restart end the interpreter: stop every managed server with it.
atexit.register(REGISTRY.down)
# The interactive views of a %%run's output (the embedding map, the gallery, the upscaling slider); each
# module imports its widget library only when a view is made.
embedding_map.install(REGISTRY)
image_widgets.install(REGISTRY)

#: The largest compose file read (a bigger one is not a compose file: a model, a log, /dev/zero).
MAX_FILE_BYTES = 10 * 1024 * 1024


def read_config(text: Union[str, Mapping, None] = None, file: Optional[str] = None, first_line: int = 1):
    """Parse YAML text, a mapping of the same shape, or a file into a validated :class:`ComposeConfig`
    (nothing is loaded)."""
    if file is not None:
        if text is not None:
            raise InputError("give either YAML text or `file=`, not both.")
        text, first_line = _read_file(file), 1
    if isinstance(text, Mapping):
        data, positions = load_mapping(text)
    elif text is None or isinstance(text, str):
        data, positions = load_yaml(text or "", first_line=first_line)
    else:
        hint = ("To compose a file, write mc.compose(file=...)." if isinstance(text, os.PathLike) else
                "Decode it first: mc.compose(data.decode('utf-8'))." if isinstance(text, (bytes, bytearray)) else
                "Example: mc.compose(\"component: {task: text-embedding, model: ...}\").")
        raise InputError(f"mc.compose takes YAML text (a str) or a mapping (a dict) of the same shape, "
                         f"not {_a(text)}.\n  {hint}")
    return parse_compose(data, positions)


def _read_file(file: Any) -> str:
    if not isinstance(file, (str, os.PathLike)):
        raise InputError(f"`file=` takes the path of a YAML file (a str), not {_a(file)}.")
    path = os.path.expanduser(os.fspath(file))
    where = os.path.abspath(path)
    if os.path.isdir(path):
        raise InputError(f"the compose file `{file}` is a folder, not a YAML file ({where}).\n"
                         f"  Give the path of a .yaml file, e.g. {os.path.join(str(file), 'compose.yaml')}.")
    if os.path.exists(path) and not os.path.isfile(path):
        raise InputError(f"the compose file `{file}` is not a regular file ({where}).\n"
                         f"  Give the path of a .yaml file.")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"the compose file `{file}` does not exist (looked at {where}).") from None
    except PermissionError:
        raise InputError(f"the compose file `{file}` cannot be read: permission denied ({where}).\n"
                         f"  Check its permissions (`ls -l {where}`), or copy it somewhere you can read.") from None
    except OSError as e:
        raise InputError(f"the compose file `{file}` cannot be read: {e.strerror or e} ({where}).") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"the compose file `{file}` is larger than {MAX_FILE_BYTES // 2**20} MiB: it is not a "
                         f"compose file ({where}).\n  Give the path of the .yaml file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"the compose file `{file}` is not UTF-8 text: the byte 0x{data[e.start]:02x} at offset "
                          f"{e.start} cannot be read", line=line,
                          hint="Save the file as UTF-8 (your editor's \"Save with encoding\"), or convert it, e.g. "
                               "`iconv -f latin1 -t utf-8 old.yaml > new.yaml`.") from None


def compose(text: Union[str, Mapping, None] = None, *, file: Optional[str] = None, dry_run: bool = False,
            auto_install: bool = False, registry: Registry = REGISTRY, first_line: int = 1,
            say: Optional[Say] = None) -> PlanView:
    """Validate YAML (or a mapping of the same shape) and load its components (unchanged ones are
    reused). ``dry_run`` loads nothing."""
    config = read_config(text, file, first_line)
    if dry_run:
        plan: Plan = registry.plan(config, estimate="all")[0]
    else:
        plan = registry.apply(config, auto_install=auto_install, say=say)
    return PlanView(plan, loaded=not dry_run)


def run(target: Optional[str] = None, inputs: Optional[Dict[str, Any]] = None, *,
        namespace: Optional[Mapping[str, Any]] = None, stream: Optional[StreamSink] = None,
        display_stream: bool = False, auto_install: bool = False, registry: Registry = REGISTRY,
        **kw_inputs: Any) -> RunResult:
    """Run a workflow (or a component as a one-job workflow). ``inputs`` and keywords are its input.

    Without ``target``: the workflow of the latest compose (the one marked ``default: true`` when it
    has several), or its single component.

    A string input written ``$name`` (at any depth: in a list, in a mapping) is the value of the
    variable ``name`` in ``namespace``, as in a ``%%run`` cell; ``$$`` is a literal ``$``
    (``"$$name"`` is the text ``$name``), and a ``$`` not followed by a name (``"$5"``) is kept.
    ``namespace`` defaults to the IPython user namespace when IPython is running (a notebook),
    and to none otherwise: a plain script's strings are then taken as written. Pass
    ``namespace=globals()`` (or any mapping) to resolve names in a script. A name that is not in
    the namespace is an :class:`InputError`, and nothing runs."""
    if target is not None and not isinstance(target, str):
        raise InputError(f"mc.run takes the id of a workflow or component (a str) as `target`, "
                         f"not {_a(target)}.\n  Example: mc.run(\"{_any_id(registry)}\", {{...}}).")
    if inputs is not None and not isinstance(inputs, Mapping):
        raise InputError(f"mc.run takes its inputs as a mapping (`{{\"name\": value}}`), not {_a(inputs)}."
                         f"\n  Example: mc.run(inputs={{\"text\": \"hello\"}}).")
    if namespace is not None and not isinstance(namespace, Mapping):
        raise InputError(f"mc.run takes `namespace` as a mapping of variable names to values (e.g. globals()), "
                         f"not {_a(namespace)}.")
    values = resolve_inputs(dict(inputs or {}, **kw_inputs),
                            user_namespace() if namespace is None else namespace)
    sink = stream if stream is not None else (StreamView() if display_stream else None)
    outcome = run_engine(registry, target, values, sink, auto_install)
    last = outcome.last
    shown = bool(isinstance(sink, StreamView) and last is not None and last.streamed
                 and isinstance(outcome.output, str) and outcome.output == sink.text)
    return RunResult(outcome, already_shown=shown, registry=registry)


def user_namespace() -> Optional[Mapping[str, Any]]:
    """The running IPython shell's user namespace (a notebook's variables), or None outside IPython.
    IPython is not imported for this: a script that never imported it has no shell."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "user_ns", None)


def resolve_inputs(values: Mapping[str, Any], namespace: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """``values`` with every string ``$name`` (at any depth) replaced by ``namespace[name]`` and every
    ``$$...`` by ``$...``; ``namespace=None`` leaves them as written. An undefined name is an
    :class:`InputError` naming the input."""
    if namespace is None:
        return dict(values)
    return {k: _resolved(v, k, namespace) for k, v in values.items()}


def _resolved(value: Any, key: Any, namespace: Mapping[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        if value.startswith("$$"):
            return value[1:]
        name = value[1:]
        if name.isidentifier():
            if name not in namespace:
                raise InputError(f"input `{clip(key, 40)}`: the Python variable `{clip(name, 40)}` is not defined."
                                 f"\n  Define it in an earlier cell, or write `$${clip(name, 40)}` for the "
                                 f"literal text.")
            return namespace[name]
    if isinstance(value, dict):
        return {k: _resolved(v, k, namespace) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v, key, namespace) for v in value]
    return value


def _any_id(registry: Registry) -> str:
    with registry.lock:
        return clip(next(iter(registry.workflows), None) or next(iter(registry.entries), "ID"), 40)


def _a(value: Any) -> str:
    name = type(value).__name__
    return ("an " if name[0] in "aeiou" else "a ") + name


def _a_type(component_type: str) -> str:
    """'a model', 'an http-client'."""
    return ("an " if component_type[:1] in tuple("aeiouh") else "a ") + component_type


def status(registry: Registry = REGISTRY) -> StatusTable:
    """The loaded components and the device memory."""
    return StatusTable(registry.snapshot(), memory_snapshot())


def _loaded(ids: Union[str, Sequence[str]], registry: Registry, call: str, servers: bool = False,
            acting: bool = True) -> List[str]:
    """The distinct ids of ``ids`` (one or a list), each checked before anything acts on any."""
    many = [ids] if isinstance(ids, str) else ids
    if not isinstance(many, (list, tuple)) or not all(isinstance(c, str) for c in many) or not many:
        bad = ids if not isinstance(ids, (list, tuple)) else next((c for c in ids if not isinstance(c, str)), ids)
        raise InputError(f"{call} takes a component id (a str) or a list of them, not "
                         f"{'an empty list' if bad == [] or bad == () else _a(bad)}.\n"
                         f"  Example: {call}(\"{_any_id(registry)}\").")
    many = list(dict.fromkeys(many))
    with registry.lock:
        for cid in many:
            entry = registry.entries.get(cid)
            if entry is None:
                raise not_loaded(cid, registry.entries,
                                 then="Compose it first." + (" Nothing was unloaded." if len(many) > 1 else ""))
            if servers and entry.spec.type != "http-server":
                raise InputError(f"component `{cid}` is {_a_type(entry.spec.type)}, not a managed server: there "
                                 f"is no server to stop.\n  To free it, use %mc unload {cid} (mc.unload(\"{cid}\")).")
            if acting and entry.runs:
                raise UserError(f"component `{cid}` is running a job right now, so it is not unloaded.\n  Wait for "
                                f"the run to finish (or interrupt the kernel), then unload it.")
    return many


def unload(component_id: Union[str, Sequence[str]], registry: Registry = REGISTRY) -> None:
    """Free one component's model (and its device memory), or several: all are checked first, so an
    unknown id frees none."""
    for cid in _loaded(component_id, registry, "mc.unload"):
        registry.unload(cid)


def stop(component_id: Union[str, Sequence[str]], registry: Registry = REGISTRY) -> None:
    """Stop one managed server (``type: http-server``), or several; all are checked first."""
    for cid in _loaded(component_id, registry, "mc.stop", servers=True):
        registry.unload(cid)


def logs(component_id: str, lines: int = 50, registry: Registry = REGISTRY) -> List[str]:
    """The last lines a managed server printed."""
    if not isinstance(component_id, str):
        raise InputError(f"mc.logs takes a component id (a str), not {_a(component_id)}.\n"
                         f"  Example: mc.logs(\"{_any_id(registry)}\").")
    if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
        raise InputError(f"mc.logs: `lines` is a number of lines (0 or more), not {clip(repr(lines), 40)}.\n"
                         f"  Example: mc.logs(\"{clip(component_id, 40)}\", 20).")
    entry = registry.get(_loaded(component_id, registry, "mc.logs", acting=False)[0])
    if not hasattr(entry.driver, "logs"):
        raise InputError(f"component `{component_id}` is {_a_type(entry.spec.type)}, not a managed server: it has "
                         f"no log (only `type: http-server` components have one).")
    return entry.driver.logs(lines) if lines else []


def down(registry: Registry = REGISTRY) -> list:
    """Free everything the registry holds."""
    return registry.down()


def chat(component: Union[str, Sequence[str]], *, messages: Any = None, system: Optional[str] = None,
         inputs: Optional[Dict[str, Any]] = None, max_turns: Optional[int] = None,
         max_history_tokens: Optional[int] = None, action: Optional[str] = None, registry: Registry = REGISTRY):
    """A chat widget on a composed chat-completion component (or an http component whose body carries
    ``messages``): multi-turn, streaming, with Stop. Several ids give a pane each, one question for all.

    ``messages`` resumes a conversation (a list of ``{role, content}``, or a file ``w.save(path)`` wrote);
    ``system`` sets the system prompt; ``inputs`` fills the template's other variables; ``max_turns`` and
    ``max_history_tokens`` cap what is sent (by default, what fits the model's positions). From Python:
    ``w.send(text)`` returns the reply, ``w.stop()``, ``w.clear()``, ``w.messages``, ``w.to_markdown()``,
    ``w.save(path)``. See :mod:`mc_jupyter.widgets.chat` for the conversation rule."""
    from .widgets.chat import chat as make_chat
    ids = _loaded(component, registry, "mc.chat", acting=False)
    return make_chat(ids if not isinstance(component, str) else ids[0], registry, messages=messages, system=system,
                     inputs=inputs, max_turns=max_turns, max_history_tokens=max_history_tokens, action=action)


def compare(components: Sequence[str], prompt: Optional[str] = None, *, messages: Any = None,
            system: Optional[str] = None, inputs: Optional[Dict[str, Any]] = None, wait: bool = False,
            registry: Registry = REGISTRY):
    """The same prompt (after the same conversation, ``messages``) sent to several composed components, their
    replies streaming side by side with tokens/s and memory under each: what an adapter, a quantization or a
    precision changes. Components on one device run one after the other; on different devices, at once.

    Returns the chat widget (a pane per component; more questions go to all). The turn starts at once and the
    cell ends (so the replies stream in place); ``wait=True``, or ``w.wait()`` later, gives the replies as a
    dict by component id."""
    if isinstance(components, str) or not isinstance(components, (list, tuple)) or len(components) < 2:
        raise InputError("mc.compare takes a list of at least two component ids, e.g. "
                         "mc.compare([\"base\", \"lora\"], prompt=\"Hello\").")
    widget = chat(list(components), messages=messages, system=system, inputs=inputs, registry=registry)
    if prompt is not None:
        widget.send(prompt, wait=False)
        if wait:
            widget.wait()
    return widget


def _target_id(target: Optional[str], registry: Registry, call: str) -> str:
    """The id a run of ``target`` runs (checked: an unknown one is the run's error, listing what there is)."""
    if target is not None and not isinstance(target, str):
        raise InputError(f"{call} takes the id of a workflow or component (a str), not {_a(target)}.\n"
                         f"  Example: {call}(\"{_any_id(registry)}\").")
    workflow, entry = resolve_target(registry, target)
    return workflow.spec.id if workflow is not None else entry.id


def inputs(target: Optional[str] = None, registry: Registry = REGISTRY):
    """The inputs a run of ``target`` reads (a workflow or component id; the default one without): a table
    of name, type, choices, default, description and whether it is required (no default), from the
    ``${input.*}`` bindings and their ``as type``, ``| default`` and ``@(description ...)``. ``.rows`` holds
    them as dicts. ``%mc inputs [TARGET]`` shows the same."""
    from .widgets.form import InputsTable
    tid = _target_id(target, registry, "mc.inputs")
    return InputsTable(tid, inputs_of(registry, tid if target is not None else None))


def form(target: Optional[str] = None, values: Optional[Mapping[str, Any]] = None, registry: Registry = REGISTRY):
    """A form on the inputs of ``target`` (as :func:`inputs` lists them): a widget per input by its type
    (a dropdown for ``select/...``, an upload for ``image`` and ``audio``, ...), defaults filled, the
    descriptions as help; a Run button that runs it as :func:`run` does, the output rendered below.
    ``values`` fills fields first (``{"name": value}``). From Python: ``f.values``, ``f.set(name, value)``,
    ``f.run()`` (the RunResult), ``f.as_run_body()`` (a ``%%run`` body). See :mod:`mc_jupyter.widgets.form`."""
    from .widgets.form import form as make_form
    if values is not None and not isinstance(values, Mapping):
        raise InputError(f"mc.form takes `values` as a mapping (`{{\"name\": value}}`), not {_a(values)}.")
    tid = _target_id(target, registry, "mc.form")
    fields = inputs_of(registry, tid if target is not None else None)

    def runner(run_values: Dict[str, Any], sink: Optional[StreamSink]) -> RunResult:
        return run(tid, run_values, stream=sink, registry=registry)

    workflow, _ = resolve_target(registry, tid if target is not None else None)
    return make_form(tid, fields, runner, dict(values or {}),
                     title=workflow.spec.title if workflow is not None else None)
