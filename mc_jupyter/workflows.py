"""Workflows compiled against the components they use: bindings parsed, jobs checked, an order.

A compose compiles its workflows here (the registry, below the engine, takes them as they come), after
its components' actions: a job must name a component of this compose or one already loaded, and one
of that component's actions; ``depends_on`` must name jobs of the same workflow, without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Dict, List, Mapping, Optional, Tuple

from .binding import InputField, compile_value, input_fields
from .config.positions import Positions, clip, format_path
from .config.schema import ComposeConfig, WorkflowSpec
from .errors import WorkflowError, choices_text, did_you_mean


@dataclass
class CompiledWorkflow:
    spec: WorkflowSpec
    jobs_input: Dict[str, Any]
    jobs_output: Dict[str, Any]
    output: Any
    order: List[str]


def compile_workflows(config: ComposeConfig, actions: Mapping[str, Collection[str]]) -> Dict[str, CompiledWorkflow]:
    """Every workflow of ``config``; ``actions``: the action ids of each component a job may use (those
    of this compose and those already loaded). The registry's ``plan`` calls it."""
    return {wid: compile_workflow(w, actions, config.positions) for wid, w in config.workflows.items()}


def compile_workflow(spec: WorkflowSpec, actions: Mapping[str, Collection[str]],
                     positions: Positions) -> CompiledWorkflow:
    ids = [j.id for j in spec.jobs]
    jobs_input, jobs_output = {}, {}
    for job in spec.jobs:
        where = dict(path=format_path(job.path + ("component",)), line=positions.line(job.path + ("component",)))
        own = actions.get(job.component)
        if own is None:
            raise WorkflowError(f"job `{job.id}` uses component `{job.component}`, which is not defined"
                                f"{did_you_mean(job.component, actions)}",
                                hint=f"Defined components: {choices_text(actions) or 'none'}. Define it in this "
                                     f"cell or compose it in an earlier one.", **where)
        if job.action is not None and job.action not in own:
            p = job.path + ("action",)
            raise WorkflowError(f"component `{job.component}` has no action `{job.action}`"
                                f"{did_you_mean(job.action, own)}", path=format_path(p),
                                line=positions.line(p), hint=f"Its actions: {choices_text(own)}.")
        for dep in job.depends_on or []:
            if dep not in ids:
                p = job.path + ("depends_on",)
                raise WorkflowError(f"job `{job.id}` depends on `{dep}`, which is not a job of this workflow"
                                    f"{did_you_mean(dep, ids)}", path=format_path(p), line=positions.line(p),
                                    hint=f"Jobs here: {choices_text(ids)}.")
        jobs_input[job.id] = compile_value(job.input, job.path + ("input",), positions)
        jobs_output[job.id] = compile_value(job.output, job.path + ("output",), positions)
    output = compile_value(spec.output, spec.path + ("output",), positions)
    return CompiledWorkflow(spec, jobs_input, jobs_output, output, order(spec, positions))


def order(spec: WorkflowSpec, positions: Positions) -> List[str]:
    """Written order without ``depends_on``; a checked topological order with it (dialect §3)."""
    if not any(j.depends_on for j in spec.jobs):
        return [j.id for j in spec.jobs]
    deps = {j.id: list(j.depends_on or []) for j in spec.jobs}
    out: List[str] = []
    state: Dict[str, int] = {}      # 1: being visited, 2: done

    def visit(jid: str, chain: List[str]) -> None:
        if state.get(jid) == 2:
            return
        if state.get(jid) == 1:
            cycle = chain[chain.index(jid):] + [jid]
            job = next(j for j in spec.jobs if j.id == jid)
            p = job.path + ("depends_on",)
            raise WorkflowError(f"the jobs depend on each other in a cycle: {' -> '.join(cycle)}",
                                path=format_path(p), line=positions.line(p),
                                hint="Remove one of the `depends_on` entries so the jobs can run in an order.")
        state[jid] = 1
        for dep in deps[jid]:
            visit(dep, chain + [jid])
        state[jid] = 2
        out.append(jid)

    for j in spec.jobs:
        visit(j.id, [])
    return out


# ------------------------------------------------------------------------------------------------
# What a run reads: the inputs of a target (the form's fields, ``%mc inputs``'s table)


def resolve_target(registry: Any, target: Optional[str]) -> Tuple[Optional[CompiledWorkflow], Any]:
    """``(workflow, None)`` or ``(None, entry)``: what a run of ``target`` runs (a workflow id, a component
    id, ``component:ID``, or None for the latest compose's default), with the run's errors for an unknown
    or undecided target. ``registry`` is the kernel's :class:`~mc_jupyter.registry.Registry` (duck-typed:
    this layer sits below it); the engine's runs and the forms resolve through it."""
    with registry.lock:
        if target is None and registry.undecided:
            flows, first = registry.undecided, clip(registry.undecided[0], 40)
            raise WorkflowError(f"the latest %%compose defines {len(flows)} workflows "
                                f"({choices_text(map(clip, flows))}) and marks none `default: true`, so a run "
                                f"without an id does not know which to run",
                                hint=f"Name one: `%%run {first}` (in Python: mc.run(\"{first}\", ...)), or mark one "
                                     f"`default: true` in the YAML.")
        target = target or registry.default_target
        if target is None:
            raise WorkflowError("there is nothing to run yet",
                                hint="Run a %%compose cell first, or name a workflow or component: %%run ID.")
        if target.startswith("component:"):
            return None, registry.get(target.split(":", 1)[1])
        if target in registry.workflows:
            return registry.workflows[target], None
        if target in registry.entries:
            return None, registry.entries[target]
        choices = list(registry.workflows) + list(registry.entries)
        raise WorkflowError(f"no workflow or component `{clip(target, 40)}`{did_you_mean(target, choices)}",
                            hint=f"Workflows: {choices_text(registry.workflows) or 'none'}; "
                                 f"components: {choices_text(registry.entries) or 'none'}.")


def inputs_of(registry: Any, target: Optional[str] = None) -> List[InputField]:
    """The ``${input.*}`` a run of ``target`` reads (resolved as :func:`resolve_target` does), each once,
    in the order written: each job's ``input:`` (and its ``output:``, which sees the run's input too),
    and for a job without ``input:`` (it passes the run's whole input on), or a component run directly,
    the component action's fields and ``output:`` (the job's ``action:``, else the default action); then
    the workflow's ``output:``. Merged by name (:func:`~mc_jupyter.binding.input_fields`): the first
    mention wins, a later one fills in what it left out (a description, a default, the choices)."""
    workflow, component = resolve_target(registry, target)
    values: List[Any] = []
    if workflow is None:
        values += _action_values(component, None)
    else:
        for job in workflow.spec.jobs:
            if workflow.jobs_input[job.id] is None or _whole_input(workflow.jobs_input[job.id]):
                entry = registry.entries.get(job.component)   # `input: ${input}` passes it on too (model-compose)
                if entry is not None:
                    values += _action_values(entry, job.action)
            else:
                values.append(workflow.jobs_input[job.id])
            values.append(workflow.jobs_output[job.id])
        values.append(workflow.output)
    return input_fields(*[v for v in values if v is not None])


def _whole_input(value: Any) -> bool:
    """``${input}`` exactly: the job hands the run's whole input to its component."""
    single = getattr(value, "single", None)
    return single is not None and single.source == "input" and not single.path and single.type is None


def _action_values(entry: Any, action_id: Optional[str]) -> List[Any]:
    action = entry.actions.get(action_id or entry.spec.default_action)
    return [] if action is None else [action.fields, action.output]

