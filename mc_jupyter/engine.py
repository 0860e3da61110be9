"""Running a workflow: jobs in order, ``${...}`` bindings per scope, streams, errors with context.

Scopes (dialect §4):
- a job's ``input:`` sees ``input`` (the run's input) and ``jobs``; without ``input:`` the job passes
  the run's input on;
- a component's action fields see ``input`` (the job's input);
- a component's ``output:`` sees ``input`` and ``result`` (per chunk: ``result[]``);
- a job's ``output:`` sees ``input``, ``jobs`` and the component's output as ``output`` (and
  ``result``, as model-compose's examples write it);
- the workflow's ``output:`` sees ``input``, ``jobs`` and the last job's output as ``output``
  (model-compose's meaning); without one, the last job's output.

Every scope also sees ``context``: ``run_id`` (a fresh uuid4 hex per run), ``task_id`` (the same id:
a notebook run is one task) and ``workflow_id`` (the workflow, or the component run directly).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from .binding import Scope, guard_secrets, render, streams as has_stream_source
from .errors import McJupyterError, RunError
from .registry import CompiledAction, Entry, Registry, State
from .workflows import resolve_target


class StreamSink:
    """Receives the chunks of a streaming job; the display implements it.

    A sink may carry ``stop_event`` (a :class:`threading.Event`): setting it from any thread ends the
    generation at the next token, and the partial text is kept (the chat widget's Stop)."""

    stop_event: Optional[threading.Event] = None

    def start(self, job_id: str, component_id: str) -> None: ...

    def chunk(self, text: str, tokens: Optional[int] = None) -> None: ...

    def finish(self, interrupted: bool = False) -> None: ...


@dataclass
class JobRecord:
    id: str
    component: str
    task: Optional[str]
    input: Any
    output: Any
    seconds: float
    streamed: bool = False
    chunks: int = 0
    tokens: Optional[int] = None
    texts: Optional[List[str]] = None   # the evaluated list input, to label plots
    images: Optional[List[Any]] = None  # the evaluated PIL image input(s), shown beside the output
    action: Optional[str] = None        # the component's action that ran
    fields: Optional[Dict[str, Any]] = None   # its evaluated fields (what the driver got): see :func:`rerun`
    interrupted: bool = False           # a stream ended early (Stop, or a kernel interrupt)


@dataclass
class RunOutcome:
    workflow: str
    output: Any
    jobs: List[JobRecord] = field(default_factory=list)
    seconds: float = 0.0
    input: Any = None

    @property
    def last(self) -> Optional[JobRecord]:
        return self.jobs[-1] if self.jobs else None


#: Changes a job's evaluated fields before its driver gets them: ``adjust(entry, fields) -> fields``
#: (the chat puts the conversation so far into ``messages`` and its controls into ``params``).
Adjust = Callable[[Entry, Dict[str, Any]], Dict[str, Any]]


def run(registry: Registry, target: Optional[str], inputs: Dict[str, Any], sink: Optional[StreamSink] = None,
        auto_install: bool = False, adjust: Optional[Adjust] = None) -> RunOutcome:
    workflow, component = resolve_target(registry, target)
    started = time.perf_counter()
    run_id = uuid.uuid4().hex
    if workflow is None:
        assert component is not None
        context = new_context(run_id, component.id)
        with registry.use(component.id) as component:
            record = _run_job(registry, component, None, inputs, sink, auto_install, adjust, job_id=component.id,
                              context=context)
        return RunOutcome(component.id, record.output, [record], time.perf_counter() - started, inputs)
    context = new_context(run_id, workflow.spec.id)
    finished: Dict[str, Dict[str, Any]] = {}
    records: List[JobRecord] = []
    for job_id in workflow.order:
        job = next(j for j in workflow.spec.jobs if j.id == job_id)
        scope = Scope({"input": inputs, "jobs": finished, "context": context}, where=f"job `{job_id}`")
        job_input = inputs if workflow.jobs_input[job_id] is None else render(workflow.jobs_input[job_id], scope)
        with registry.use(job.component) as entry:
            record = _run_job(registry, entry, job.action, job_input, sink, auto_install, adjust, job_id=job_id,
                              context=context)
        if workflow.jobs_output[job_id] is not None:
            record.output = render(workflow.jobs_output[job_id],
                                   scope.child(output=record.output, result=record.output))
        finished[job_id] = {"output": record.output, "input": job_input}
        records.append(record)
    output = records[-1].output
    if workflow.output is not None:
        output = render(workflow.output, Scope({"input": inputs, "jobs": finished, "output": output,
                                                "context": context}))
    return RunOutcome(workflow.spec.id, output, records, time.perf_counter() - started, inputs)


@guard_secrets(lambda registry, entry, action_id, *a, job_id, **_: f"job `{job_id}` (component `{entry.id}`)",
               lambda registry, entry, action_id, *a, job_id, **_: [entry.spec.settings,
                                                             entry.actions[action_id or entry.spec.default_action].fields])
def _run_job(registry: Registry, entry: Entry, action_id: Optional[str], job_input: Any,
             sink: Optional[StreamSink], auto_install: bool, adjust: Optional[Adjust], job_id: str,
             fields: Optional[Dict[str, Any]] = None, context: Optional[Dict[str, str]] = None) -> JobRecord:
    if entry.state is not State.READY:
        registry.ensure_loaded(entry, auto_install)
    action = entry.actions[action_id or entry.spec.default_action]
    started = time.perf_counter()
    context = context or new_context(uuid.uuid4().hex, entry.id)
    if fields is None:
        fields = render(action.fields, Scope({"input": job_input, "context": context},
                                             where=f"component `{entry.id}`"))
    if adjust is not None:
        fields = adjust(entry, fields)
    driver = entry.driver
    assert driver is not None
    per_chunk = action.output is not None and has_stream_source(action.output)
    streaming = driver.wants_stream(fields, per_chunk)
    chunks, interrupted = 0, False
    try:
        if streaming:
            result, output, chunks, interrupted = _stream(driver, fields, action, job_input, sink, job_id, entry.id,
                                                          per_chunk, context)
        else:
            result = driver.run(fields)
    except (McJupyterError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise RunError(f"job `{job_id}` (component `{entry.id}`, {entry.task or entry.spec.type}) failed: "
                       f"{type(e).__name__}: {e}") from e
    if not (streaming and per_chunk):
        output = result if action.output is None else render(action.output, _result_scope(job_input, result,
                                                                                          context=context))
    texts = fields.get("text")
    return JobRecord(job_id, entry.id, entry.task, job_input, output, time.perf_counter() - started,
                     streaming, chunks, getattr(driver, "tokens_generated", None) if streaming else None,
                     [str(t) for t in texts] if isinstance(texts, list) else None, _pil_images(fields.get("image")),
                     action.id, fields, interrupted)


def rerun(registry: Registry, record: JobRecord, fields: Dict[str, Any], sink: Optional[StreamSink] = None) -> JobRecord:
    """Run ``record``'s component action again on ``fields`` (evaluated fields, e.g. ``record.fields`` with
    another ``text`` or ``seed``): what a widget does to embed a query or draw the next seed. Its
    component output (``output:``) applies; the workflow around the job does not."""
    with registry.use(record.component) as entry:
        return _run_job(registry, entry, record.action, record.input, sink, False, None, job_id=record.id,
                        fields=fields)


def _pil_images(value: Any) -> Optional[List[Any]]:
    """The ``image`` field as a list when it holds PIL images (``as image`` made them), else None."""
    items = value if isinstance(value, list) else [value]
    if items and all(type(item).__module__.startswith("PIL.") for item in items):
        return items
    return None


def new_context(run_id: str, workflow_id: str) -> Dict[str, str]:
    """``${context.*}`` of one run: model-compose's ``run_id``, ``task_id`` and ``workflow_id``."""
    return {"run_id": run_id, "task_id": run_id, "workflow_id": workflow_id}


def _result_scope(job_input: Any, result: Any, chunk: Any = None, lenient: bool = False,
                  context: Optional[Dict[str, str]] = None) -> Scope:
    """A component's output sees its result as ``result`` (models) and ``response`` (HTTP), per chunk with []."""
    values = {"input": job_input, "result": result, "response": result, "context": context or {}}
    if chunk is not None:
        values.update({"result[]": chunk, "response[]": chunk})
    return Scope(values, lenient=lenient)


def _stream(driver, fields, action: CompiledAction, job_input, sink, job_id, component_id, per_chunk: bool,
            context: Optional[Dict[str, str]] = None):
    """Drive a stream into the sink; a KeyboardInterrupt stops it and keeps what came.

    Returns (result, output, chunks, stopped): a model's text streams give the whole text as the result;
    with a per-chunk output (``${result[]...}``/``${response[]...}``) the output is the chunks' values
    joined; ``stopped`` when the sink's ``stop_event`` ended it early.
    """
    from .servers.http import merge_events

    stop = threading.Event()                  # the driver's: it sets it too, when its stream ends
    asked = getattr(sink, "stop_event", None)  # the sink owner's Stop (another thread sets it)
    if sink:
        sink.start(job_id, component_id)
    raw: List[Any] = []
    shown: List[Any] = []
    interrupted = False
    chunks = driver.stream(fields, stop)
    try:
        for chunk in chunks:
            if asked is not None and asked.is_set():   # Stop: nothing more is taken; closing the stream
                interrupted = True                     # sets the driver's event, which ends its generation
                break
            raw.append(chunk)
            value = render(action.output, _result_scope(job_input, None, chunk, lenient=True,
                                                                    context=context)) if per_chunk else chunk
            if value is None or value == "":
                continue
            shown.append(value)
            if sink:
                sink.chunk(value if isinstance(value, str) else str(value), getattr(driver, "tokens_generated", None))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        stop.set()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        if sink:
            sink.finish(interrupted)
    if getattr(driver, "stream_result", "text") == "list":   # a text splitter's chunks: a list, as its run gives
        return list(raw), list(shown), len(raw), interrupted
    result = "".join(raw) if all(isinstance(c, str) for c in raw) else merge_events(raw)
    output = "".join(shown) if all(isinstance(v, str) for v in shown) else shown
    return result, output, len(raw), interrupted
