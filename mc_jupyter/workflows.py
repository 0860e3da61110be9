"""Workflows compiled against the components they use: bindings parsed, jobs checked, an order.

A compose compiles its workflows here (the registry, below the engine, takes them as they come), after
its components' actions: a job must name a component of this compose or one already loaded, and one
of that component's actions; ``depends_on`` must name jobs of the same workflow, without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Dict, List, Mapping

from .binding import compile_value
from .config.positions import Positions, format_path
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
