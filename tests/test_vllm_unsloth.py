"""vLLM and Unsloth: their setting mappings here; their end-to-end runs where they import (CUDA)."""

import importlib.util

import pytest

import mc_jupyter as mc
from mc_jupyter.drivers.sources import ModelSource, resolve_source
from mc_jupyter.drivers.unsloth_driver import load_kwargs
from mc_jupyter.drivers.vllm_driver import engine_args, sampling_kwargs
from mc_jupyter.errors import DeviceError, MissingPackageError
from mc_jupyter.tasks.text_generation import GenerationParams


def settings_of(text: str):
    return mc.read_config(text).components["default"].config


def source_of(config):
    return resolve_source(config.model, config.task)


def test_vllm_engine_arguments_follow_the_spec_settings():
    s = settings_of("""
component:
  task: text-generation
  driver: vllm
  model: {provider: huggingface, repository: Qwen/Qwen2-7B-Instruct, revision: v2, cache_dir: /data/cache}
  precision: bfloat16
  quantization: nf4
  device_mode: auto
  options: {max_model_len: 2048, gpu_memory_utilization: 0.8}
""")
    assert engine_args(s, source_of(s), gpu_count=2) == {
        "model": "Qwen/Qwen2-7B-Instruct", "revision": "v2", "download_dir": "/data/cache", "dtype": "bfloat16",
        "quantization": "bitsandbytes", "tensor_parallel_size": 2, "max_model_len": 2048,
        "gpu_memory_utilization": 0.8}
    plain = settings_of("component:\n  task: chat-completion\n  driver: vllm\n  model: /models/qwen\n")
    # a local folder that is not here: the source as resolve_source gives it where it is
    local = ModelSource("/models/qwen", is_local=True)
    assert engine_args(plain, local, gpu_count=4) == {"model": "/models/qwen", "dtype": "float16",
                                                      "tensor_parallel_size": 1}
    int8 = settings_of("component:\n  task: text-generation\n  driver: vllm\n  model: m\n  quantization: int8\n")
    assert engine_args(int8, source_of(int8), 1)["quantization"] == "fp8"


def test_vllm_on_the_cpu_is_a_clear_error():
    with pytest.raises(DeviceError, match="runs on CUDA GPUs"):
        cpu = settings_of("component:\n  task: text-generation\n  driver: vllm\n  model: m\n  device: cpu\n")
        engine_args(cpu, source_of(cpu), 1)


def test_vllm_sampling_parameters_map_the_spec_parameters():
    assert sampling_kwargs(GenerationParams.read({"params": {
        "max_output_length": 512, "temperature": 0, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1,
        "stop_sequences": "###", "seed": 3}})) == {
        "max_tokens": 512, "temperature": 0.0, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1,
        "stop": ["###"], "seed": 3}
    assert sampling_kwargs(GenerationParams.read({})) == {"max_tokens": 256}


def test_unsloth_loading_arguments():
    s = settings_of("""
component:
  task: text-generation
  driver: unsloth
  model: unsloth/llama-2-7b-bnb-4bit
  quantization: nf4
  options: {max_seq_length: 4096}
""")
    assert load_kwargs(s, source_of(s), "float16") == {
        "model_name": "unsloth/llama-2-7b-bnb-4bit", "max_seq_length": 4096, "dtype": "float16",
        "load_in_4bit": True, "load_in_8bit": False, "revision": "main"}


@pytest.mark.slow
@pytest.mark.parametrize("driver,package", [("vllm", "vllm"), ("unsloth", "unsloth")])
def test_a_missing_engine_names_its_install_command_and_changes_nothing(registry, driver, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here: the end-to-end test below covers it")
    with pytest.raises(MissingPackageError) as info:
        mc.compose(f"component:\n  task: text-generation\n  driver: {driver}\n  model: gpt2\n", registry=registry)
    assert f"%pip install {package}" in str(info.value)
    assert registry.snapshot() == []


@pytest.mark.parametrize("driver", ["vllm", "unsloth"])
def test_end_to_end_where_the_engine_imports(registry, models, driver):
    pytest.importorskip(driver)   # vLLM and Unsloth need CUDA: these run on a GPU machine, not in CI here
    mc.compose(f"""
component:
  task: text-generation
  driver: {driver}
  model: {models['causal']}
  text: ${{input.prompt}}
  params: {{max_output_length: 8, temperature: 0}}
""", registry=registry)
    assert isinstance(mc.run(inputs={"prompt": "Hello"}, registry=registry).output, str)
