"""The kernel-resident registry: reuse, reload, all-or-nothing composes, freeing, threads."""

import gc
import threading
import weakref

import pytest

import mc_jupyter as mc
from mc_jupyter.errors import DeviceError, ModelLoadError, UserError
from mc_jupyter.registry import State

GEN = """
component:
  id: writer
  type: model
  task: text-generation
  model: {path}
  text: ${{input.prompt}}
  params:
    max_output_length: {n}
    temperature: 0
"""


def compose_writer(registry, models, n=4, **changes):
    text = GEN.format(path=models["causal"], n=n)
    for key, val in changes.items():
        text += f"  {key}: {val}\n"
    return mc.compose(text, registry=registry)


def test_rerunning_an_unchanged_cell_reuses_the_same_model_object(registry, models):
    compose_writer(registry, models)
    first = registry.entries["writer"]
    model = first.driver.model
    plan = compose_writer(registry, models)
    assert plan.plan.reuse == ["writer"] and plan.plan.load == []
    assert registry.entries["writer"].driver.model is model
    assert registry.entries["writer"].load_count == 1


def test_changing_only_an_action_parameter_keeps_the_model_and_uses_the_new_value(registry, models):
    compose_writer(registry, models, n=2)
    model = registry.entries["writer"].driver.model
    compose_writer(registry, models, n=6)
    assert registry.entries["writer"].driver.model is model
    out = mc.run(inputs={"prompt": "The sky"}, registry=registry).output
    tokens = registry.entries["writer"].driver.tokenizer(out, add_special_tokens=False)["input_ids"]
    assert 3 <= len(tokens) <= 6 + 2   # re-tokenising decoded text may merge or split a little


def test_a_changed_component_is_loaded_anew_and_the_old_model_is_freed(registry, models):
    compose_writer(registry, models)
    old = weakref.ref(registry.entries["writer"].driver.model)
    plan = compose_writer(registry, models, precision="bfloat16")
    assert plan.plan.reload == ["writer"]
    assert registry.entries["writer"].driver.dtype == "bfloat16"
    gc.collect()
    assert old() is None


def test_a_failed_compose_leaves_the_registry_exactly_as_it_was_and_frees_what_it_loaded(registry, models):
    compose_writer(registry, models)
    before = registry.snapshot()
    kept = registry.entries["writer"].driver.model
    loaded_during_failure = []
    registry.subscribe(lambda kind, data: loaded_during_failure.append(data.get("id")) if kind == "loading" else None)
    text = f"""
components:
  - id: fresh
    type: model
    task: text-classification
    model: {models['classifier']}
    text: ${{input.text}}
  - id: broken
    type: model
    task: text-generation
    model: ./no/such/folder
"""
    with pytest.raises(ModelLoadError) as info:
        mc.compose(text, registry=registry)
    assert "the local model path `./no/such/folder` does not exist" in str(info.value)
    assert loaded_during_failure == ["fresh", "broken"]
    assert registry.snapshot() == before
    assert registry.entries["writer"].driver.model is kept
    assert "fresh" not in registry.entries


def test_a_device_that_is_not_there_fails_cleanly(registry, models):
    with pytest.raises(DeviceError) as info:
        compose_writer(registry, models, device="cuda")
    assert "`device: cuda` was asked for, but this kernel sees no CUDA GPU" in str(info.value)
    assert registry.snapshot() == []


def test_unload_frees_the_model_and_down_frees_everything(registry, models):
    compose_writer(registry, models)
    ref = weakref.ref(registry.entries["writer"].driver.model)
    registry.unload("writer")
    gc.collect()
    assert ref() is None and registry.snapshot() == []
    with pytest.raises(UserError) as info:
        registry.unload("writer")
    assert "no component `writer` is loaded" in str(info.value)


def test_states_and_the_status_row(registry, models):
    compose_writer(registry, models)
    row = registry.snapshot()[0]
    assert row["state"] == State.READY.value and row["device"] == "cpu" and row["dtype"] == "float32"
    assert row["parameters"] > 0 and row["memory_bytes"] >= row["parameters"] * 4
    status = mc.status(registry)
    assert "writer" in repr(status) and "<table>" in status._repr_html_()


def test_preload_false_loads_on_first_run(registry, models):
    compose_writer(registry, models, preload="false")
    assert registry.entries["writer"].state is State.UNLOADED
    assert isinstance(mc.run(inputs={"prompt": "hi"}, registry=registry).output, str)
    assert registry.entries["writer"].state is State.READY


@pytest.mark.slow
def test_snapshots_from_another_thread_during_composes_and_unloads_never_fail(registry, models):
    errors, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                for row in registry.snapshot():
                    assert row["state"] in {"loading", "ready", "failed", "unloaded"}
            except Exception as e:  # collected and asserted below
                errors.append(e)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(6):
            compose_writer(registry, models, n=2 + i % 2, precision="bfloat16" if i % 2 else "float32")
            if i % 3 == 2:
                registry.unload("writer")
    finally:
        stop.set()
        thread.join()
    assert errors == []


def test_a_component_running_a_job_is_not_unloaded_from_another_thread(registry, models):
    from mc_jupyter.engine import StreamSink
    text = GEN.format(path=models["causal"], n=1000).replace("  text:", "  streaming: true\n  text:")
    mc.compose(text, registry=registry)
    started, outcome = threading.Event(), {}

    class Sink(StreamSink):
        def chunk(self, text, tokens=None):
            started.set()
            if "error" in outcome:
                raise KeyboardInterrupt   # stop the long generation once the other thread has tried

    def unload_while_running():
        started.wait(30)
        try:
            registry.unload("writer")
        except UserError as e:
            outcome["error"] = str(e)

    thread = threading.Thread(target=unload_while_running)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        mc.run(inputs={"prompt": "hi"}, stream=Sink(), registry=registry)
    thread.join()
    assert "component `writer` is running a job right now, so it is not unloaded" in outcome["error"]
    registry.unload("writer")      # free once the run is over
    assert registry.snapshot() == []


def test_trust_remote_code_is_off_unless_asked_and_then_the_plan_says_so(registry, models):
    plan = compose_writer(registry, models)
    assert "trust_remote_code" not in repr(plan)
    assert registry.entries["writer"].spec.settings.get("trust_remote_code") is None
    plan = mc.compose(GEN.format(path=models["causal"], n=4) + "  trust_remote_code: true\n", registry=registry,
                      dry_run=True)
    assert "note: `trust_remote_code: true` for `writer`: the model repository's own Python code runs" in repr(plan)
