"""LoRA adapters with weights, bitsandbytes quantization on the CPU, and memory planning."""

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

import mc_jupyter as mc
from tests import tiny_models

PROMPT = "The sky is blue because"


@pytest.fixture(scope="module")
def lora(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    base = tiny_models.build_causal_lm(root / "base", hidden=128)
    return {"base": base, "a": tiny_models.build_lora(base, root / "lora-a", seed=1),
            "b": tiny_models.build_lora(base, root / "lora-b", seed=2, r=8)}


def adapters_yaml(lora, weight_a, weight_b=None):
    text = f"""
component:
  id: styled
  type: model
  task: text-generation
  model: {lora['base']}
  text: ${{input.prompt}}
  params: {{max_output_length: 6, temperature: 0}}
  peft_adapters:
    - type: lora
      name: alpaca
      model: {{provider: local, path: {lora['a']}}}
      weight: {weight_a}
"""
    if weight_b is not None:
        text += f"""    - type: lora
      name: assistant
      model: {{provider: local, path: {lora['b']}}}
      weight: {weight_b}
"""
    return text


def logits_of(model, folder):
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        return model(**tok([PROMPT], return_tensors="pt")).logits


def base_model(lora):
    return AutoModelForCausalLM.from_pretrained(lora["base"]).eval()


@pytest.mark.slow
def test_one_adapter_at_weight_one_is_exactly_peft_model(registry, lora):
    mc.compose(adapters_yaml(lora, 1.0), registry=registry)
    ours = logits_of(registry.entries["styled"].driver.model, lora["base"])
    reference = PeftModel.from_pretrained(base_model(lora), lora["a"]).eval()
    assert torch.equal(ours, logits_of(reference, lora["base"]))
    assert not torch.allclose(ours, logits_of(base_model(lora), lora["base"]), atol=1e-4)


def test_weight_zero_disables_the_adapter(registry, lora):
    mc.compose(adapters_yaml(lora, 0.0), registry=registry)
    ours = logits_of(registry.entries["styled"].driver.model, lora["base"])
    assert torch.allclose(ours, logits_of(base_model(lora), lora["base"]), atol=1e-6)


def test_two_weighted_adapters_match_peft_weighted_combination(registry, lora):
    mc.compose(adapters_yaml(lora, 0.7, 0.8), registry=registry)
    ours = logits_of(registry.entries["styled"].driver.model, lora["base"])
    reference = PeftModel.from_pretrained(base_model(lora), lora["a"], adapter_name="a")
    reference.load_adapter(lora["b"], adapter_name="b")
    reference.add_weighted_adapter(["a", "b"], [0.7, 0.8], adapter_name="ab", combination_type="cat")
    reference.set_adapter("ab")
    assert torch.allclose(ours, logits_of(reference.eval(), lora["base"]), atol=1e-5)
    only_a = PeftModel.from_pretrained(base_model(lora), lora["a"]).eval()
    assert not torch.allclose(ours, logits_of(only_a, lora["base"]), atol=1e-4)
    assert not torch.allclose(ours, logits_of(base_model(lora), lora["base"]), atol=1e-4)


def test_changing_only_a_weight_does_not_reload_the_base_model(registry, lora):
    mc.compose(adapters_yaml(lora, 1.0, 0.0), registry=registry)
    entry = registry.entries["styled"]
    model, base_weight = entry.driver.model, entry.driver.model.base_model.model.lm_head.weight
    with_a = logits_of(model, lora["base"])
    plan = mc.compose(adapters_yaml(lora, 0.0, 0.0), registry=registry).plan
    assert plan.reuse == ["styled"] and entry.load_count == 1
    assert registry.entries["styled"].driver.model is model
    assert registry.entries["styled"].driver.model.base_model.model.lm_head.weight is base_weight
    assert torch.allclose(logits_of(model, lora["base"]), logits_of(base_model(lora), lora["base"]), atol=1e-6)
    mc.compose(adapters_yaml(lora, 1.0, 0.0), registry=registry)
    assert torch.equal(logits_of(model, lora["base"]), with_a)
    out = mc.run(inputs={"prompt": PROMPT}, registry=registry).output
    assert isinstance(out, str) and out


def test_a_missing_adapter_folder_is_a_clear_error_and_changes_nothing(registry, lora):
    from mc_jupyter.errors import ModelLoadError
    text = adapters_yaml(lora, 1.0).replace(str(lora["a"]), "/no/such/adapter")
    with pytest.raises(ModelLoadError) as info:
        mc.compose(text, registry=registry)
    assert "the local model path `/no/such/adapter` does not exist" in str(info.value)
    assert registry.snapshot() == []


def quantized_yaml(path, quantization):
    return f"""
component:
  id: q
  type: model
  task: text-generation
  model: {path}
  quantization: {quantization}
  text: ${{input.prompt}}
  params: {{max_output_length: 4, temperature: 0}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("quantization,at_most", [("int8", 0.5), ("int4", 0.4), ("nf4", 0.4)])
def test_bitsandbytes_quantization_loads_on_cpu_runs_and_the_memory_drops(registry, lora, quantization, at_most):
    mc.compose(quantized_yaml(lora["base"], "none"), registry=registry)
    full = registry.snapshot()[0]["memory_bytes"]
    mc.compose(quantized_yaml(lora["base"], quantization), registry=registry)
    row = registry.snapshot()[0]
    assert row["dtype"] == f"float32 · {quantization}" and row["quantization"] == quantization
    assert row["memory_bytes"] <= at_most * full
    model = registry.entries["q"].driver.model
    assert any(type(m).__module__.startswith("bitsandbytes") for m in model.modules())
    assert isinstance(mc.run(inputs={"prompt": PROMPT}, registry=registry).output, str)


@pytest.mark.parametrize("quantization", ["none", "int8", "nf4"])
def test_the_dry_run_estimate_is_within_fifteen_percent_of_the_measured_footprint(registry, lora, quantization):
    plan = mc.compose(quantized_yaml(lora["base"], quantization), registry=registry, dry_run=True).plan
    (estimate,) = plan.estimates
    assert registry.snapshot() == []
    mc.compose(quantized_yaml(lora["base"], quantization), registry=registry)
    measured = registry.entries["q"].driver.model.get_memory_footprint()
    assert abs(estimate.weight_bytes - measured) <= 0.15 * measured
    assert estimate.total_bytes == int(estimate.weight_bytes * 1.2)


def test_a_model_that_cannot_fit_is_warned_about_with_what_would_fit(registry, hub_cache, tmp_path):
    tiny_models.place_config_only(hub_cache, "meta-llama/Llama-2-13b-hf", tiny_models.LLAMA_13B_CONFIG,
                                  tmp_path / "13b")
    view = mc.compose("component:\n  task: text-generation\n  model: meta-llama/Llama-2-13b-hf\n  device: cpu\n",
                      registry=registry, dry_run=True)
    (estimate,) = view.plan.estimates
    assert 13.0e9 < estimate.parameters < 13.1e9
    assert estimate.weight_bytes == pytest.approx(estimate.parameters * 4, rel=1e-6)    # float32 on the CPU
    assert not estimate.fits                                                              # 62 GB on a small host
    fitting = [k for k, v in estimate.alternatives.items() if v <= estimate.free_bytes]
    warning = [line for line in repr(view).splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "`default` will not fit" in warning[0]
    if fitting:
        assert all(f"`{k}`" in warning[0] for k in fitting)
    else:
        assert "No precision or quantization makes it fit" in warning[0]
    assert estimate.alternatives["quantization: nf4"] < estimate.alternatives["quantization: int8"] < \
        estimate.alternatives["precision: float16"] < estimate.total_bytes


@pytest.mark.parametrize("task,auto_class,key", [("text-generation", "AutoModelForCausalLM", "causal"),
                                                  ("text-classification", "AutoModelForSequenceClassification",
                                                   "classifier")])
def test_the_estimate_from_the_weight_files_headers_equals_the_one_from_the_config(models, task, auto_class, key):
    """The headers of the safetensors files (a millisecond) and the model built on the meta device
    (a tenth of a second at 1 B parameters) count the same parameters and the same quantizable ones."""
    from mc_jupyter.drivers.sources import resolve_source
    from mc_jupyter.planning import _tensors_from_config, tensors_from_files
    source = resolve_source(str(models[key]), task)
    from_files, from_config = tensors_from_files(source), _tensors_from_config(source, auto_class)
    assert from_files is not None
    assert sum(n for n, _ in from_files) == sum(n for n, _ in from_config)
    assert sum(n for n, q in from_files if q) == sum(n for n, q in from_config if q) > 0
