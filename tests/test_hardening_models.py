"""Issue #15, "Hardening II": where a model load or run showed a traceback, a clear message; a hub id not in
the cache fails at once offline; a dry run says every refusal the compose would make; GPU memory read
through NVML without making a CUDA context.

Every case runs the real code path on tiny random models (tests/tiny_models.py): a GPT-2 with 32 learned
positions (whose position table raises an IndexError when a generation runs past it), truncated copies of
the tiny Llama's safetensors file, the hub cache tests/conftest.py lays out, a hub endpoint on a closed
port.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import mc_jupyter as mc
from mc_jupyter.errors import DeviceError, InputError, MissingPackageError, ModelLoadError, UserError
from tests import tiny_models

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]        # closed again: nothing listens there


def writer(model, extra: str = "", params: str = "{max_output_length: 3, temperature: 0}", cid: str = "writer",
           task: str = "text-generation") -> str:
    field = "messages:\n    - {role: user, content: '${input.p}'}" if task == "chat-completion" else "text: ${input.p}"
    return (f"component:\n  id: {cid}\n  type: model\n  task: {task}\n  model: {model}\n  {field}\n"
            f"  params: {params}\n{extra}")


# ------------------------------------------------------------------------------------------------
# A truncated or corrupt safetensors file


def broken_copy(source: Path, folder: Path, how: str) -> Path:
    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"half": data[:len(data) // 2], "garbage": b"x" * 100, "empty": b""}[how])
    return weights


@pytest.mark.slow
@pytest.mark.parametrize("how,problem", [("half", "cut short"), ("garbage", "its header alone claims"),
                                         ("empty", "shorter than a safetensors header")])
def test_a_recompose_onto_a_truncated_safetensors_file_names_it_and_keeps_the_old_model(registry, models, tmp_path,
                                                                                         how, problem):
    mc.compose(writer(models["causal"]), registry=registry)
    before, said = registry.snapshot(), mc.run(inputs={"p": "Hi"}, registry=registry).output
    weights = broken_copy(models["causal"], tmp_path / "broken", how)
    with pytest.raises(ModelLoadError) as info:
        mc.compose(writer(tmp_path / "broken"), registry=registry)
    text = str(info.value)
    assert f"the weights file `{weights}` is truncated or corrupt (" in text and problem in text, text
    assert "SafetensorError" in text and "save_pretrained" in text
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert registry.snapshot() == before
    assert mc.run(inputs={"p": "Hi"}, registry=registry).output == said


def test_a_truncated_file_in_the_hub_cache_says_how_to_download_it_again(registry, models, hub_cache, tmp_path):
    broken_copy(models["causal"], tmp_path / "broken", "half")
    tiny_models.place_in_hub_cache(hub_cache, "tiny-corrupt/llama", tmp_path / "broken")
    with pytest.raises(ModelLoadError) as info:
        mc.compose(writer("tiny-corrupt/llama"), registry=registry)
    text = str(info.value)
    assert "models--tiny-corrupt--llama/snapshots/" in text and "model.safetensors` is truncated or corrupt" in text
    assert "huggingface-cli download tiny-corrupt/llama model.safetensors --force-download" in text
    assert str(hub_cache / "models--tiny-corrupt--llama" / "blobs") in text     # the file to delete
    assert registry.snapshot() == []


def test_a_truncated_onnx_file_of_a_face_pack_is_named_with_how_to_replace_it(registry, tmp_path):
    from tests import tiny_faces
    pack = tiny_faces.build_pack(tmp_path / "pack")
    detector = pack / "det_10g.onnx"
    detector.write_bytes(detector.read_bytes()[:300])
    with pytest.raises(ModelLoadError) as info:
        mc.compose(f"component:\n  task: face-embedding\n  model: {{provider: local, path: {pack}}}\n"
                   f"  image: ${{input.image as image}}\n", registry=registry)
    text = str(info.value)
    assert f"`{detector}` is not a readable ONNX model: truncated or corrupt (300 bytes;" in text
    assert "Download the pack again" in text and "insightface/releases" in text
    assert registry.snapshot() == []


# ------------------------------------------------------------------------------------------------
# Prompts and max_output_length past the model's positions

POSITIONS = 32


@pytest.fixture(scope="module")
def short_gpt2(tmp_path_factory) -> Path:
    """A GPT-2 with 32 learned positions (``n_positions``) and the tiny tokenizer with its chat template."""
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2-32")
    tokenizer = tiny_models.build_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=POSITIONS, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, pad_token_id=config.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tokens(folder: Path, text: str) -> int:
    from transformers import AutoTokenizer
    return len(AutoTokenizer.from_pretrained(folder)(text)["input_ids"])


LONG = "The quick brown fox jumps over the lazy dog. " * 6


def test_a_prompt_and_max_output_length_past_the_positions_is_an_input_error_naming_both(registry, short_gpt2):
    prompt = "Once upon a time there was a small robot"
    n = tokens(short_gpt2, prompt)
    mc.compose(writer(short_gpt2, params="{max_output_length: 30, temperature: 0}"), registry=registry)
    before = registry.snapshot()
    with pytest.raises(InputError) as info:
        mc.run(inputs={"p": prompt}, registry=registry)
    text = str(info.value)
    assert f"the prompt has {n} tokens, and with `max_output_length` 30 that makes {n + 30} positions" in text
    assert f"more than the {POSITIONS} this model takes (`n_positions` in its config)" in text
    assert f"lower `max_output_length` to {POSITIONS - n} or less" in text
    assert registry.snapshot() == before
    mc.compose(writer(short_gpt2, params=f"{{max_output_length: {POSITIONS - n}, temperature: 0}}"), registry=registry)
    assert isinstance(mc.run(inputs={"p": prompt}, registry=registry).output, str)   # exactly at the limit: runs


def test_a_prompt_longer_than_the_positions_alone_says_to_shorten_it(registry, short_gpt2):
    n = tokens(short_gpt2, LONG)
    assert n > POSITIONS
    mc.compose(writer(short_gpt2), registry=registry)
    with pytest.raises(InputError, match=f"(?s)the prompt has {n} tokens.*shorten the prompt to fewer than "
                                         f"{POSITIONS}"):
        mc.run(inputs={"p": LONG}, registry=registry)


def test_in_a_list_the_prompt_too_long_is_named_before_any_batch_runs(registry, short_gpt2):
    mc.compose(writer(short_gpt2, params="{max_output_length: 3, temperature: 0, batch_size: 1}"), registry=registry)
    with pytest.raises(InputError, match=r"prompt #3 of the list has \d+ tokens"):
        mc.run(inputs={"p": ["Hello", "Hi there", LONG, "Hello"]}, registry=registry)
    assert len(mc.run(inputs={"p": ["Hello", "Hi there"]}, registry=registry).output) == 2


def test_chat_completion_counts_the_conversation_with_its_template(registry, short_gpt2):
    mc.compose(writer(short_gpt2, task="chat-completion"), registry=registry)
    with pytest.raises(InputError, match=f"(?s)the conversation \\(chat template applied\\) has \\d+ tokens.*"
                                         f"more than the {POSITIONS} this model takes"):
        mc.run(inputs={"p": LONG}, registry=registry)


def test_a_streaming_run_is_refused_before_its_generation_thread_starts(registry, short_gpt2, monkeypatch):
    import threading
    mc.compose(writer(short_gpt2, extra="  streaming: true\n", params="{max_output_length: 40}"), registry=registry)
    started, start = [], threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda self: (started.append(self.name), start(self))[1])
    with pytest.raises(InputError, match="with `max_output_length` 40"):
        mc.run(inputs={"p": "Hello"}, registry=registry)
    assert not [name for name in started if name.startswith("mc_jupyter-generate")]


# ------------------------------------------------------------------------------------------------
# Numeric parameters that are not numbers


@pytest.mark.slow
@pytest.mark.parametrize("name,value,kind", [("max_output_length", "lots", "a whole number of at least 1"),
                                             ("max_output_length", 0, "a whole number of at least 1"),
                                             ("temperature", "hot", "a number of at least 0"),
                                             ("top_k", "3.5", "a whole number of at least 0"),
                                             ("seed", True, "a whole number")])
def test_a_numeric_parameter_that_is_not_a_number_names_the_parameter(registry, models, name, value, kind):
    mc.compose(writer(models["causal"], params=f"{{{name}: '${{input.v}}', do_sample: true}}"), registry=registry)
    with pytest.raises(InputError) as info:
        mc.run(inputs={"p": "Hi", "v": value}, registry=registry)
    assert f"`{name}` must be {kind}, not {value!r}" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_a_secret_where_a_number_belongs_is_named_but_never_shown(registry, models, monkeypatch):
    token = f"sk-{secrets.token_hex(8)}"
    monkeypatch.setenv("MC_TEST_HARDENING_NUMBER", token)
    mc.compose(writer(models["causal"], params="{max_output_length: '${env.MC_TEST_HARDENING_NUMBER}'}"),
               registry=registry)
    with pytest.raises(UserError) as info:
        mc.run(inputs={"p": "Hi"}, registry=registry)
    error = info.value
    assert "`max_output_length` must be a whole number of at least 1, not '***' (read from " \
           "`${env.MC_TEST_HARDENING_NUMBER}`: a secret, so not shown)" in str(error)
    assert token not in str(error) and token not in repr(error.args)
    assert error.__cause__ is None and error.__context__ is None


def test_batch_size_and_max_input_length_of_a_classifier(registry, models):
    mc.compose(f"component:\n  task: text-classification\n  model: {models['classifier']}\n  text: ${{input.t}}\n"
               f"  params: {{batch_size: '${{input.b}}', max_input_length: '${{input.m}}'}}\n", registry=registry)
    with pytest.raises(InputError, match="`batch_size` must be a whole number of at least 1, not 'two'"):
        mc.run(inputs={"t": ["good", "bad"], "b": "two", "m": 16}, registry=registry)
    with pytest.raises(InputError, match="`max_input_length` must be a whole number of at least 0, not '1e99x'"):
        mc.run(inputs={"t": "good", "b": 2, "m": "1e99x"}, registry=registry)
    assert len(mc.run(inputs={"t": ["good", "bad"], "b": "2", "m": "16"}, registry=registry).output) == 2


# ------------------------------------------------------------------------------------------------
# A hub id not in the cache, with no network: at once, in one message


@pytest.fixture
def unreachable_hub(monkeypatch):
    """The hub online (HF_HUB_OFFLINE off) at an endpoint nothing listens on."""
    from huggingface_hub import constants
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return endpoint


def test_a_hub_id_not_cached_with_the_hub_unreachable_fails_at_once_saying_how_to_get_it(registry, models,
                                                                                          unreachable_hub):
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        mc.compose(writer("nobody-xyz/not-cached"), registry=registry)
    assert time.perf_counter() - started < 5
    text = str(info.value)
    assert "`nobody-xyz/not-cached`: it is not in the local Hugging Face cache" in text
    assert f"the hub ({unreachable_hub}) cannot be reached (ConnectError" in text
    for fix in ("huggingface-cli download nobody-xyz/not-cached", "hf download nobody-xyz/not-cached",
                "a local folder in `model:`", "HF_HUB_OFFLINE=1"):
        assert fix in text
    assert registry.snapshot() == []


def test_a_cached_model_loads_from_the_cache_alone_when_the_hub_is_unreachable(registry, models, unreachable_hub):
    from tests import reference
    started = time.perf_counter()
    mc.compose(writer("meta-llama/Llama-2-7b-hf"), registry=registry)
    assert time.perf_counter() - started < 10
    assert mc.run(inputs={"p": "Hi"}, registry=registry).output == reference.generate(models["causal"], "Hi", 3)


def test_offline_a_hub_id_not_cached_says_so_and_how_to_get_it(registry, models):
    with pytest.raises(ModelLoadError) as info:
        mc.compose(writer({"repository": "nobody-xyz/not-cached", "revision": "v2"}), registry=registry)
    text = str(info.value)
    assert "it is not in the local Hugging Face cache" in text and "revision v2" in text
    assert "the hub is offline here (HF_HUB_OFFLINE=1" in text
    assert "huggingface-cli download nobody-xyz/not-cached --revision v2" in text


@pytest.mark.slow
def test_in_a_fresh_kernel_with_no_network_the_failure_is_quick_and_prints_no_connection_noise(tmp_path):
    """HF_ENDPOINT on a closed port, HF_HUB_OFFLINE unset: huggingface_hub alone retries for some 25 s and
    prints every attempt."""
    script = textwrap.dedent("""
        import time, mc_jupyter as mc
        started = time.perf_counter()
        try:
            mc.compose("component:\\n  task: text-generation\\n  model: nobody-xyz/not-cached\\n")
        except mc.errors.ModelLoadError as e:
            print("ERROR", str(e).splitlines()[0])
        print("SECONDS", round(time.perf_counter() - started, 2))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "ERROR could not load `nobody-xyz/not-cached`: it is not in the local Hugging Face cache" in done.stdout, \
        done.stdout + done.stderr
    assert float(done.stdout.split("SECONDS")[1]) < 5
    for noise in ("Retrying", "Connection refused", "thrown while requesting"):
        assert noise not in done.stderr, done.stderr


# ------------------------------------------------------------------------------------------------
# A dry run says every refusal the compose would make, and what `auto` came to


def dry(registry, text: str) -> str:
    return repr(mc.compose(text, dry_run=True, registry=registry))


def test_a_dry_run_of_cuda_without_a_gpu_refuses_as_the_compose_does(registry, models):
    text = writer(models["causal"], extra="  device: cuda\n", cid="gpu")
    plan = dry(registry, text)
    with pytest.raises(DeviceError) as info:
        mc.compose(text, registry=registry)
    assert f"would refuse `gpu`: {info.value}" in plan
    assert "`device: cuda` was asked for, but this kernel sees no CUDA GPU" in plan


def test_a_dry_run_says_what_auto_came_to(registry, models):
    plan = dry(registry, writer(models["causal"]))
    assert "`writer`: device auto → cpu · precision auto → float32" in plan
    plan = dry(registry, writer(models["causal"], extra="  device: cpu\n  precision: bfloat16\n"))
    assert "`writer`: device cpu · precision bfloat16" in plan and "would refuse" not in plan


def test_a_dry_run_names_missing_packages_as_the_compose_does(registry, models):
    import importlib.util
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    text = writer(models["causal"], extra="  driver: vllm\n", cid="fast")
    plan = dry(registry, text)
    with pytest.raises(MissingPackageError) as info:
        mc.compose(text, registry=registry)
    assert f"would refuse `fast`: {info.value}" in plan and "%pip install vllm" in plan


def test_a_dry_run_of_quantization_on_mps_refuses_as_the_compose_does(registry, models, monkeypatch):
    """No Mac here: torch is told mps is present; the refusal comes before anything is moved there."""
    import torch
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "empty_cache", lambda: None)   # what a failed compose calls to free memory
    text = writer(models["causal"], extra="  device: mps\n  quantization: nf4\n", cid="mac")
    plan = dry(registry, text)
    with pytest.raises(DeviceError) as info:
        mc.compose(text, registry=registry)
    assert "does not support Apple's mps device" in str(info.value) and f"would refuse `mac`: {info.value}" in plan
    assert registry.snapshot() == []


def test_a_dry_run_lists_every_refusal_of_every_component(registry, models, tmp_path):
    text = textwrap.dedent(f"""
        components:
          - id: gpu
            type: model
            task: text-generation
            model: {models['causal']}
            device: cuda
            text: ${{input.p}}
          - id: gone
            type: model
            task: text-classification
            model: {tmp_path / 'no-such-model'}
            text: ${{input.p}}
          - id: nowhere
            type: model
            task: image-upscale
            model: NoSuchUpscaler_x4
            image: ${{input.p as image}}
          - id: fine
            type: model
            task: text-generation
            model: gpt2
            text: ${{input.p}}
    """)
    plan = dry(registry, text)
    assert "would refuse `gpu`: `device: cuda` was asked for" in plan
    assert f"would refuse `gone`: the local model path `{tmp_path / 'no-such-model'}` does not exist" in plan
    assert "would refuse `nowhere`: no weights file `NoSuchUpscaler_x4` was found" in plan
    assert "`fine`: device auto → cpu · precision auto → float32" in plan and "would refuse `fine`" not in plan
    assert registry.snapshot() == []


def test_a_dry_run_with_the_hub_unreachable_says_a_missing_model_at_once(registry, models, unreachable_hub):
    started = time.perf_counter()
    plan = dry(registry, writer("nobody-xyz/not-cached"))
    assert time.perf_counter() - started < 5
    assert "would refuse `writer`: could not load `nobody-xyz/not-cached`: it is not in the local Hugging Face" in plan


# ------------------------------------------------------------------------------------------------
# GPU memory through NVML: no CUDA context, nothing when there is no NVIDIA driver


@pytest.fixture
def fresh_nvml(monkeypatch):
    from mc_jupyter import devices
    monkeypatch.setattr(devices, "_NVML_STATE", {})
    return devices


def test_sampling_never_makes_a_cuda_context_and_without_nvml_reports_no_gpu(fresh_nvml, monkeypatch):
    """torch says CUDA is there (a GPU box whose kernel has not used it yet); asking it for memory would make
    a context on every GPU. NVML's library is absent here (no NVIDIA driver): no GPU, known, no torch call."""
    import pynvml
    import torch

    def would_make_a_context(*args, **kwargs):
        raise AssertionError("memory sampling called into torch.cuda and would create a CUDA context")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name in ("mem_get_info", "get_device_name", "memory_allocated", "init"):
        monkeypatch.setattr(torch.cuda, name, would_make_a_context)
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):   # really absent on this machine
        pynvml.nvmlInit()
    for _ in range(3):
        snapshot = fresh_nvml.memory_snapshot()
    assert snapshot["gpus"] == [] and snapshot["gpus_known"] is True
    assert not torch.cuda.is_initialized()
    assert snapshot["host"]["total"] > 0 and snapshot["process_rss"] > 0


def test_sampling_without_torch_imported_does_not_import_it():
    script = ("import sys; from mc_jupyter.devices import memory_snapshot; m = memory_snapshot(); "
              "print('torch' in sys.modules, m['gpus'], m['gpus_known'])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.split() == ["False", "[]", "True"], done.stdout + done.stderr


class FakeNvml:
    """The part of pynvml's API the probe reads, over three GPUs (a stand-in: no NVIDIA driver here)."""

    class NVMLError(Exception):
        pass

    nvmlMemory_v2 = 2 << 24

    def __init__(self, pids):
        self.pids = pids

    def nvmlDeviceGetCount(self):
        return 3

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h}aaa-{h}"

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        assert version == self.nvmlMemory_v2
        return type("Memory", (), {"total": 80 << 30, "used": (h + 1) << 30})()

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [type("P", (), {"pid": pid, "usedGpuMemory": used})() for pid, used in self.pids.get(h, [])]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        raise self.NVMLError("Not Supported")


def test_nvml_figures_follow_cuda_visible_devices_and_name_each_process(fresh_nvml, monkeypatch):
    me, server = os.getpid(), 424242
    fake = FakeNvml({2: [(me, 600 << 20), (server, 5 << 30)], 0: [(server, 1 << 30)]})
    monkeypatch.setitem(fresh_nvml._NVML_STATE, "module", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-0aaa,7")
    gpus = fresh_nvml.memory_snapshot()["gpus"]
    assert [(g["index"], g["used"]) for g in gpus] == [(0, 3 << 30), (1, 1 << 30)]   # physical 2 and 0, in that order
    assert gpus[0]["name"] == "NVIDIA H200" and gpus[0]["total"] == 80 << 30
    assert gpus[0]["allocated_by_kernel"] == 600 << 20
    assert gpus[0]["processes"] == [{"pid": me, "used": 600 << 20}, {"pid": server, "used": 5 << 30}]
    assert gpus[1]["allocated_by_kernel"] == 0 and gpus[1]["processes"] == [{"pid": server, "used": 1 << 30}]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert fresh_nvml.memory_snapshot()["gpus"] == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert len(fresh_nvml.memory_snapshot()["gpus"]) == 3
