"""model-compose's own file shape (dialect §1, §3) runs, and gives what plain transformers gives.

The shape: ``controller:`` (accepted, ignored with a note), a ``components:`` list with ids whose
fields sit under ``action:`` (``prompt:``, ``max_output_length`` on the action, ``params:``), and
``workflow:`` with ``job:`` or ``workflows:`` with ids and ``jobs:`` ordered by ``depends_on``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

import mc_jupyter as mc
from mc_jupyter.errors import WorkflowError
from tests import reference

PROMPT = "The sky is blue because"


def writer(models: Dict[str, Path]) -> str:
    """A text-generation component as model-compose writes it: fields under `action:`."""
    return f"""
  - id: writer
    type: model
    task: text-generation
    model: {models['causal']}
    action:
      prompt: ${{input.prompt}}
      max_output_length: 8
      params:
        temperature: 0
"""


def judge(models: Dict[str, Path]) -> str:
    return f"""
  - id: judge
    type: model
    task: text-classification
    model: {models['classifier']}
    action:
      text: ${{input.text}}
"""


def registry_state(registry):
    return (registry.snapshot(), {cid: id(e.driver) for cid, e in registry.entries.items()},
            sorted(registry.workflows), registry.default_target)


def test_a_model_compose_file_with_a_controller_runs_its_single_job_greedily(registry, models):
    text = f"""
controller:
  type: http-server
  port: 8080
components:{writer(models)}
workflow:
  job:
    component: writer
"""
    view = mc.compose(text, registry=registry)
    assert [n for n in view.plan.notes if "controller" in n] == \
        ["`controller:` is accepted and ignored: a notebook has no HTTP front end."]
    assert "note: `controller:` is accepted and ignored" in repr(view)
    assert [r["id"] for r in registry.snapshot()] == ["writer"]

    result = mc.run(inputs={"prompt": PROMPT}, registry=registry)
    expected = reference.generate(models["causal"], PROMPT, 8)
    assert result.output == expected
    assert isinstance(expected, str) and expected and not expected.startswith(PROMPT)
    assert expected != reference.generate(models["causal"], PROMPT, 16)   # so `max_output_length: 8` counted


def two_workflows(models: Dict[str, Path], judge_depends_on: str = "[write]", write_depends_on: str = "") -> str:
    """`workflows:` with ids; the judging workflow lists its jobs out of order, `depends_on` orders them."""
    extra = f"\n        depends_on: {write_depends_on}" if write_depends_on else ""
    return f"""
controller:
  type: http-server
  port: 8080
components:{writer(models)}{judge(models)}
workflows:
  - id: just-write
    job:
      component: writer
  - id: write-and-judge
    jobs:
      - id: judge-it
        component: judge
        depends_on: {judge_depends_on}
        input:
          text: ${{jobs.write.output}}
      - id: write
        component: writer
        input:
          prompt: ${{input.prompt}}{extra}
"""


def test_workflows_with_ids_chain_jobs_by_depends_on_and_jobs_output(registry, models):
    view = mc.compose(two_workflows(models), registry=registry)
    assert view.plan.workflows == ["just-write", "write-and-judge"]
    assert sorted(r["id"] for r in registry.snapshot()) == ["judge", "writer"]
    generated = reference.generate(models["causal"], PROMPT, 8)
    label, score = reference.classify(models["classifier"], generated)

    result = mc.run(target="write-and-judge", inputs={"prompt": PROMPT}, registry=registry)
    assert [j.id for j in result.outcome.jobs] == ["write", "judge-it"]
    assert result.jobs["write"] == generated
    assert result.output["label"] == label and result.output["label"] in {"POSITIVE", "NEGATIVE"}
    assert result.output["score"] == pytest.approx(score, abs=1e-5)

    # two workflows, none marked default: a run without a target names them instead of guessing
    with pytest.raises(WorkflowError, match="marks none `default: true`"):
        mc.run(inputs={"prompt": PROMPT}, registry=registry)
    assert mc.run(target="just-write", inputs={"prompt": PROMPT}, registry=registry).output == generated


def test_a_depends_on_cycle_is_refused_at_compose_time_and_changes_nothing(registry, models):
    mc.compose(two_workflows(models), registry=registry)
    before = registry_state(registry)
    cyclic = two_workflows(models, judge_depends_on="[write]", write_depends_on="[judge-it]")
    for dry_run in (True, False):
        with pytest.raises(WorkflowError, match="cycle") as failure:
            mc.compose(cyclic, registry=registry, dry_run=dry_run)
        assert "judge-it" in str(failure.value) and "write" in str(failure.value)
        assert registry_state(registry) == before
