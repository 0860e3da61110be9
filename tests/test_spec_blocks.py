"""Every YAML block of sections 8.1 to 8.5 and 8.7 of the contract does what its text says.

The blocks are read verbatim from ``tests/data/local-models.md`` (a byte-exact copy of
``spec/local-models.md``), named by section and position (``8.3.1#1`` is the first block of 8.3.1),
and checked against the table :data:`CASES`: one entry per block, so a block added to the chapter
fails :func:`test_every_block_of_8_1_to_8_5_has_a_case` until it gets an expectation. The only
edits allowed are the ones a case records in ``replace`` (a huge ``max_output_length`` lowered for a
CPU test). Section 8.6 (serving frameworks) is out of scope here.

The 8.7 tips name models by ids no test builds otherwise (``large-model``, ``small-model``, a 13B Llama):
:func:`stand_ins` lays the tiny Llama out in the offline hub cache under the first two and the real
published 13B config (no weights) under the third, so the blocks without ``task:`` infer it from
``config.json`` (:mod:`mc_jupyter.config.infer_task`) the way they would from the real repositories.

Every failing case also checks that the registry is exactly as before: the registry is first given
a ready ``default`` component, which the failing block would replace, and it must survive intact.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import pytest
import torch

import mc_jupyter as mc
from mc_jupyter.errors import (BindingError, ConfigError, DeviceError, MissingPackageError, ModelLoadError,
                               UserError, WorkflowError)
from tests import reference

SPEC = Path(__file__).parent / "data" / "local-models.md"
SHARED_SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "local-models.md"
IN_SCOPE = ("8.1", "8.2", "8.3", "8.4", "8.5", "8.7")
SECRET = "hf_SECRET_marker_123"


# ------------------------------------------------------------------------------------------------
# Reading the chapter


def yaml_blocks(text: str) -> Dict[str, str]:
    """``{"8.3.1#1": yaml_text, ...}``: every ```yaml block, named by its numbered section.

    A numbered heading (``## 8.1 ...``, ``### 8.3.1 ...``) opens a section; unnumbered headings
    (``### Device Configuration``) stay inside it. Lines inside any fence are never headings.
    """
    blocks: Dict[str, str] = {}
    counts: Dict[str, int] = {}
    section, fence, body = "", None, []
    for line in text.splitlines(keepends=True):
        if fence is None:
            if line.startswith("```"):
                fence, body = line[3:].strip(), []
                continue
            heading = re.match(r"#{1,6}\s+(\d+(?:\.\d+)+)\s", line)
            if heading:
                section = heading.group(1)
        elif line.startswith("```"):
            if fence == "yaml":
                counts[section] = counts.get(section, 0) + 1
                blocks[f"{section}#{counts[section]}"] = "".join(body)
            fence = None
        else:
            body.append(line)
    return blocks


BLOCKS = yaml_blocks(SPEC.read_text(encoding="utf-8"))


def in_scope(block_id: str) -> bool:
    return block_id.split("#")[0].split(".")[:2] in [s.split(".") for s in IN_SCOPE]


# ------------------------------------------------------------------------------------------------
# Value checks of the blocks that run (each takes the run's output and the tiny models' folders),
# against what plain transformers gives on the same models (tests/reference.py)

SEED = 1234


def check_sampled_generation(out: Any, models: Dict[str, Path]) -> None:
    # 8.3.1 samples (temperature 0.7, top_p 0.9): with the same seed, generate gives the same text
    assert isinstance(out, str) and out.strip()
    assert out == reference.generate(models["causal"], "Once upon a time", 16, seed=SEED,
                                     do_sample=True, temperature=0.7, top_p=0.9)


CHAT_INPUTS = {"system_prompt": "answer briefly and politely.", "user_prompt": "Hello world! How are you today?"}


def check_chat(out: Any, models: Dict[str, Path]) -> None:
    assert isinstance(out, str) and out.strip()
    messages = [{"role": "system", "content": CHAT_INPUTS["system_prompt"]},
                {"role": "user", "content": CHAT_INPUTS["user_prompt"]}]
    assert out == reference.chat(models["causal"], messages, 16, seed=SEED, do_sample=True, temperature=0.7)


def check_positive(out: Any, models: Dict[str, Path]) -> None:
    # the block's `output:` keeps exactly label and score
    assert set(out) == {"label", "score"}
    assert out["label"] == "POSITIVE"
    label, score = reference.classify(models["classifier"], "I love this movie, it is wonderful")
    assert out["label"] == label and 0.5 < out["score"] <= 1.0
    assert out["score"] == pytest.approx(score, abs=1e-5)


def check_embedding(out: Any, models: Dict[str, Path]) -> None:
    assert set(out) == {"embedding"}
    vector = out["embedding"]
    assert len(vector) == 384 and all(isinstance(x, float) for x in vector)
    assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-4)
    assert vector == pytest.approx(reference.minilm_embedding("Local models run on your own machine."), abs=1e-5)


# ------------------------------------------------------------------------------------------------
# The table


@dataclass
class Case:
    """What one block must do.

    kind:
      ``run``   composes for real, then runs ``inputs`` and ``check``s the output;
      ``load``  composes for real (the block names no input field, so it only loads): the registry
                row must hold ``row``; a run then fails with a clear InputError naming ``needs``;
      ``error`` compose raises ``error`` (its message holding every string of ``message``), the
                registry is unchanged, and ``compose(dry_run=True)`` succeeds iff ``dry_run_ok``;
      ``elsewhere`` a test in another module runs the block verbatim (it needs that module's models).
    """

    kind: str
    row: Dict[str, Any] = field(default_factory=dict)
    inputs: Dict[str, Any] = field(default_factory=dict)
    check: Optional[Callable[[Any, Dict[str, Path]], None]] = None
    needs: str = ""
    error: Optional[Type[Exception]] = None
    message: Sequence[str] = ()
    dry_run_ok: bool = True
    replace: Optional[Tuple[str, str]] = None   # the one edit allowed: a huge max_output_length lowered
    env: Dict[str, Optional[str]] = field(default_factory=dict)   # None: unset
    cuda: bool = False                          # an error only on a machine without a CUDA GPU
    elsewhere: Tuple[str, str] = ("", "")       # kind ``elsewhere``: (test module, test) that runs the block


def check_adapters(output: Any, models: Dict[str, Path], adapters: List[Tuple[str, float]]) -> None:
    """The block's output equals peft's own: one adapter as PeftModel runs it, several combined by weight."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(models["causal"]),
                                      models[adapters[0][0]], adapter_name=adapters[0][0])
    for key, _ in adapters[1:]:
        model.load_adapter(models[key], adapter_name=key)
    if len(adapters) > 1:
        model.add_weighted_adapter([k for k, _ in adapters], [w for _, w in adapters], adapter_name="mix",
                                   combination_type="cat")
        model.set_adapter("mix")
    expected = reference.generate_with(model.eval(), models["causal"], "Hello", max_new_tokens=256)
    assert output == expected and output != reference.generate(models["causal"], "Hello", 256)


def cpu_row(task: str, model: str, dtype: str = "float32") -> Dict[str, Any]:
    return {"task": task, "model": model, "driver": "huggingface", "device": "cpu", "dtype": dtype,
            "state": "ready", "quantization": "none"}


NO_SUCH_PATH = ("/path/to/model", "does not exist")
CUDA = ("`device: cuda`", "no CUDA GPU", "device: cpu")
PEFT = ("`peft_adapters:`", "not available yet")
# a fragment composed alone: the message says it is part of a component, and where it goes
BARE_PEFT = ("unknown section `peft_adapters`", "`peft_adapters:` belongs inside a `component:`")
CACHE_87 = "/data/model-cache"

CASES: Dict[str, Case] = {
    # 8.1 Basic usage
    "8.1#1": Case("load", row=cpu_row("text-generation", "meta-llama/Llama-2-7b-hf"), needs="`text:`"),
    "8.1#2": Case("error", error=MissingPackageError, message=("`unsloth` driver", "%pip install unsloth")),
    "8.1#3": Case("error", error=ModelLoadError, message=NO_SUCH_PATH),
    "8.1#4": Case("error", error=ModelLoadError, message=("/models/llama-2-7b-chat.Q4_K_M.gguf", "does not exist")),
    # 8.2 Model sources
    "8.2#1": Case("load", row=cpu_row("text-generation", "meta-llama/Llama-2-7b-hf"), needs="`text:`"),
    # the detailed hub mapping: its token is unset here; test_the_detailed_hub_block_* sets it
    "8.2#2": Case("error", error=BindingError, message=("HUGGINGFACE_TOKEN", "is not set"),
                  env={"HUGGINGFACE_TOKEN": None}),
    "8.2#3": Case("error", error=ModelLoadError, message=NO_SUCH_PATH),
    "8.2#4": Case("error", error=ModelLoadError, message=NO_SUCH_PATH),
    "8.2#5": Case("load", row=cpu_row("chat-completion", "meta-llama/Llama-2-7b-chat-hf"), needs="`messages:`"),
    "8.2#6": Case("load", row=cpu_row("text-generation", "meta-llama/Llama-2-7b-hf"), needs="`text:`",
                  env={"HUGGINGFACE_TOKEN": SECRET}),
    "8.2#7": Case("load", row=cpu_row("text-generation", "meta-llama/Llama-2-7b-hf"), needs="`text:`"),
    "8.2#8": Case("load", row=cpu_row("text-generation", "gpt2"), needs="`text:`"),
    # 8.3 Tasks
    "8.3.1#1": Case("run", row=cpu_row("text-generation", "HuggingFaceTB/SmolLM3-3B"),
                    inputs={"prompt": "Once upon a time"}, check=check_sampled_generation,
                    replace=("max_output_length: 32768", "max_output_length: 16")),
    "8.3.2#1": Case("run", row=cpu_row("chat-completion", "HuggingFaceTB/SmolLM3-3B"),
                    inputs=CHAT_INPUTS, check=check_chat,
                    replace=("max_output_length: 2048", "max_output_length: 16")),
    "8.3.3#1": Case("run", row=cpu_row("text-classification", "distilbert-base-uncased-finetuned-sst-2-english"),
                    inputs={"text": "I love this movie, it is wonderful"}, check=check_positive),
    "8.3.4#1": Case("run", row=cpu_row("text-embedding", "sentence-transformers/all-MiniLM-L6-v2"),
                    inputs={"text": "Local models run on your own machine."}, check=check_embedding),
    # the RAG workflow names components this block does not define (test_the_rag_workflow_*)
    "8.3.4#2": Case("error", error=WorkflowError, message=("`embed-query`", "`embedder`", "not defined"),
                    dry_run_ok=False),
    "8.3.5#1": Case("elsewhere", elsewhere=('test_image_to_text', 'test_the_spec_block_runs_with_a_pil_image_and_with_a_file_path')),
    # the image blocks run for real, verbatim, against tiny stand-ins in their own test modules
    "8.3.6#1": Case("elsewhere", elsewhere=('test_image_generation', 'test_the_spec_block_runs_with_a_smaller_size_and_fewer_steps')),
    "8.3.7#1": Case("elsewhere", elsewhere=('test_image_upscale', 'test_the_spec_block_finds_realesrgan_x4plus_by_name_and_upscales_4x')),
    "8.3.8#1": Case("elsewhere", elsewhere=('test_face_embedding', 'test_the_spec_block_runs_on_the_pack_found_through_insightface_home')),
    # 8.4 Device, precision, batch size
    "8.4#1": Case("error", error=DeviceError, message=CUDA, cuda=True),
    "8.4#2": Case("error", error=DeviceError, message=CUDA, cuda=True),
    "8.4#3": Case("load", row=cpu_row("text-generation", "meta-llama/Llama-2-7b-hf", dtype="float16"),
                  needs="`text:`"),
    "8.4#4": Case("load", row=dict(cpu_row("text-generation", "meta-llama/Llama-2-7b-hf", dtype="float32 · int8"),
                                   quantization="int8"), needs="`text:`"),
    "8.4#5": Case("load", row=cpu_row("text-classification", "distilbert-base-uncased"), needs="`text:`"),
    "8.4#6": Case("error", error=DeviceError, message=CUDA, cuda=True),
    # 8.5 LoRA/PEFT: full components are not available yet; bare `peft_adapters:` lists are fragments
    "8.5#1": Case("run", row=cpu_row("text-generation", "meta-llama/Llama-2-7b-hf"), inputs={"prompt": "Hello"},
                  check=lambda out, models: check_adapters(out, models, [("lora_alpaca", 1.0)])),
    "8.5#2": Case("run", row=cpu_row("text-generation", "meta-llama/Llama-2-7b-hf"), inputs={"prompt": "Hello"},
                  check=lambda out, models: check_adapters(out, models, [("lora_alpaca", 0.7), ("lora_guanaco", 0.8)]),
                  env={"HUGGINGFACE_TOKEN": SECRET}),
    "8.5#3": Case("error", error=ConfigError, message=BARE_PEFT, dry_run_ok=False),
    "8.5#4": Case("error", error=ConfigError, message=BARE_PEFT, dry_run_ok=False),
    "8.5#5": Case("error", error=ConfigError, message=BARE_PEFT, dry_run_ok=False),
    "8.5#6": Case("error", error=ConfigError, message=BARE_PEFT, dry_run_ok=False),
    "8.5#7": Case("error", error=ConfigError, message=BARE_PEFT, dry_run_ok=False),
    # 8.7 Performance tips (no `task:` in most: inferred from the stand-ins' config.json)
    # two alternatives under one `component:` key: YAML keeps only the last, so the loader refuses it;
    # test_the_two_precision_alternatives_compose_each_alone composes each half
    "8.7#1": Case("error", error=ConfigError, message=("the key `component` appears twice", "line 9"),
                  dry_run_ok=False),
    "8.7#2": Case("error", error=DeviceError, message=CUDA, cuda=True),
    "8.7#3": Case("load", row=cpu_row("text-classification", "bert-base"), needs="`text:`"),
    # gpt2 is not in /data/model-cache and composing never downloads: the task cannot be read
    "8.7#4": Case("error", error=ConfigError,
                  message=("the required key `task` is missing", "the files of `gpt2` could not be read offline",
                           f"not in the local Hugging Face cache ({CACHE_87}, revision main)",
                           f"huggingface-cli download gpt2 --cache-dir {CACHE_87}", "`text-generation`"),
                  dry_run_ok=False),
    "8.7#5": Case("error", error=DeviceError, message=CUDA, cuda=True),
}


def block_text(block_id: str) -> str:
    text, case = BLOCKS[block_id], CASES[block_id]
    if case.replace:
        old, new = case.replace
        assert text.count(old) == 1, f"{block_id}: the recorded edit `{old}` no longer fits the block"
        text = text.replace(old, new)
    return text


def registry_state(registry) -> Tuple[Any, ...]:
    """Everything a compose may change: the rows, each entry's live driver, the workflows, the target."""
    return (registry.snapshot(), {cid: id(e.driver) for cid, e in registry.entries.items()},
            sorted(registry.workflows), registry.default_target, dict(registry.loading))


def preload_default(registry, models) -> None:
    """A ready `default` component, which a failing block (id `default` too) would replace."""
    mc.compose(f"component:\n  task: text-classification\n  model: {models['classifier']}\n", registry=registry)


@pytest.fixture(scope="module", autouse=True)
def stand_ins(models, hub_cache, tmp_path_factory) -> None:
    """The 8.7 blocks' models in the offline hub cache: the tiny Llama as ``large-model`` and
    ``small-model``, the published 13B Llama config (no weights) as ``meta-llama/Llama-2-13b-hf``
    (``bert-base``, ``gpt2`` and the 70B id are tiny_models' own)."""
    from tests import tiny_models
    for repo in ("large-model", "small-model"):
        tiny_models.place_in_hub_cache(hub_cache, repo, models["causal"])
    tiny_models.place_config_only(hub_cache, "meta-llama/Llama-2-13b-hf", tiny_models.LLAMA_13B_CONFIG,
                                  tmp_path_factory.mktemp("llama-13b"))


@pytest.fixture
def case_env(request, monkeypatch):
    case: Case = CASES[request.param]
    if CACHE_87 in BLOCKS[request.param] and Path(CACHE_87).exists():
        pytest.skip(f"{CACHE_87} exists on this machine: the block may find its model there")
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if case.cuda and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the block loads instead of failing")
    return request.param


def ids_of(kind: str) -> List[str]:
    return [b for b, c in CASES.items() if c.kind == kind]


# ------------------------------------------------------------------------------------------------
# The chapter and the table agree


def test_the_copy_of_the_chapter_is_byte_exact():
    if not SHARED_SPEC.exists():
        pytest.skip("spec/local-models.md is not beside this checkout")
    assert SPEC.read_bytes() == SHARED_SPEC.read_bytes()


def test_blocks_are_named_by_section_and_position():
    assert BLOCKS["8.3.1#1"].startswith("component:\n  type: model\n  task: text-generation\n")
    assert BLOCKS["8.3.4#2"].startswith("workflow:\n  title: Document Search\n")
    assert BLOCKS["8.5#5"].startswith("# Medical domain specialized model\npeft_adapters:")
    assert [b for b in BLOCKS if b.startswith("8.2#")] == [f"8.2#{i}" for i in range(1, 9)]
    assert any(b.startswith("8.6#") for b in BLOCKS) and any(b.startswith("8.7#") for b in BLOCKS)


def test_every_block_in_scope_has_a_case():
    assert sorted(b for b in BLOCKS if in_scope(b)) == sorted(CASES)


# ------------------------------------------------------------------------------------------------
# The three kinds of case


@pytest.mark.slow
@pytest.mark.parametrize("case_env", ids_of("run"), indirect=True)
def test_block_runs_and_gives_the_right_value(case_env, registry, models):
    case = CASES[case_env]
    plan = mc.compose(block_text(case_env), registry=registry)
    assert plan.plan.load == ["default"]
    [row] = registry.snapshot()
    assert {k: row[k] for k in case.row} == case.row
    torch.manual_seed(SEED)   # the sampling blocks are compared with generate under the same seed
    case.check(mc.run(inputs=case.inputs, registry=registry).output, models)


@pytest.mark.slow
@pytest.mark.parametrize("case_env", ids_of("load"), indirect=True)
def test_block_loads_and_a_run_without_an_input_field_says_which_is_missing(case_env, registry, models):
    case = CASES[case_env]
    dry = mc.compose(block_text(case_env), registry=registry, dry_run=True)
    assert registry.snapshot() == [] and "would load `default`" in repr(dry)
    mc.compose(block_text(case_env), registry=registry)
    [row] = registry.snapshot()
    assert {k: row[k] for k in case.row} == case.row
    before = registry_state(registry)
    with pytest.raises(UserError, match=re.escape(case.needs)):
        mc.run(inputs={"text": "Hello", "prompt": "Hello"}, registry=registry)
    assert registry_state(registry) == before


@pytest.mark.slow
@pytest.mark.parametrize("case_env", ids_of("error"), indirect=True)
def test_block_fails_with_a_clear_error_and_leaves_the_registry_as_it_was(case_env, registry, models):
    case = CASES[case_env]
    text = block_text(case_env)
    preload_default(registry, models)
    kept = registry.entries["default"]
    before = registry_state(registry)

    with pytest.raises(case.error) as failure:
        mc.compose(text, registry=registry)
    assert isinstance(failure.value, UserError)
    for part in case.message:
        assert part in str(failure.value), f"{part!r} not in {str(failure.value)!r}"
    assert registry_state(registry) == before
    assert registry.entries["default"] is kept and kept.state.value == "ready"

    if case.dry_run_ok:
        plan = mc.compose(text, registry=registry, dry_run=True)
        assert "would reload `default`" in repr(plan)
    else:
        with pytest.raises(case.error):
            mc.compose(text, registry=registry, dry_run=True)
    assert registry_state(registry) == before


@pytest.mark.parametrize("block_id", [b for b, c in CASES.items() if c.kind == "elsewhere"])
def test_block_is_run_verbatim_by_its_own_module(block_id):
    import importlib
    import inspect
    module_name, test_name = CASES[block_id].elsewhere
    test = getattr(importlib.import_module(f"tests.{module_name}"), test_name)
    assert "BLOCKS[" in inspect.getsource(test) or block_id in inspect.getsource(inspect.getmodule(test))
    assert f'BLOCKS["{block_id}"]' in inspect.getsource(inspect.getmodule(test))


# ------------------------------------------------------------------------------------------------
# Blocks that need more than the table says


def test_the_revision_block_loads_the_v1_0_tag(registry, models):
    assert "revision: v1.0" in BLOCKS["8.2#7"] and "# Or commit hash: revision: a1b2c3d4" in BLOCKS["8.2#7"]
    mc.compose(BLOCKS["8.2#7"], registry=registry)
    info = registry.entries["default"].driver.info()
    assert info["source"] == "hub: meta-llama/Llama-2-7b-hf@v1.0"


def test_the_token_block_passes_the_token_and_never_shows_it(registry, models, monkeypatch):
    import transformers

    monkeypatch.setenv("HUGGINGFACE_TOKEN", SECRET)
    seen: List[Dict[str, Any]] = []
    original = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **kw: (seen.append(kw), original(*a, **kw))[1])
    text = BLOCKS["8.2#6"]
    assert "token: ${env.HUGGINGFACE_TOKEN}" in text

    shown: List[str] = []
    dry = mc.compose(text, registry=registry, dry_run=True)
    plan = mc.compose(text, registry=registry)
    assert [kw.get("token") for kw in seen] == [SECRET]
    shown += [str(dry), repr(dry), dry._repr_html_(), str(plan), repr(plan), plan._repr_html_(), str(plan.plan)]
    status = mc.status(registry)
    shown += [repr(status), status._repr_html_(), str(registry.snapshot())]
    with pytest.raises(UserError) as failure:          # the block names no `text:`
        mc.run(inputs={"prompt": "Hello"}, registry=registry)
    shown.append(str(failure.value))
    # the same secret through the detailed mapping (a load error) and the PEFT block (not available)
    with pytest.raises(UserError) as failure:      # the detailed mapping: its cache_dir is empty
        mc.compose(BLOCKS["8.2#2"], registry=registry)
    shown += [str(failure.value), repr(failure.value)]
    adapters = mc.compose(BLOCKS["8.5#2"], registry=registry)   # the PEFT block loads with the token
    shown += [repr(adapters), adapters._repr_html_(), repr(registry.entries["default"].driver.source)]
    shown += [repr(mc.status(registry)), mc.status(registry)._repr_html_(), str(registry.snapshot())]
    for text_shown in shown:
        assert SECRET not in text_shown


def test_the_detailed_hub_block_with_its_token_set_fails_to_load_offline_clearly(registry, models, monkeypatch):
    # cache_dir /custom/cache holds nothing and the hub is offline here: a load error naming the fix
    monkeypatch.setenv("HUGGINGFACE_TOKEN", SECRET)
    preload_default(registry, models)
    before = registry_state(registry)
    with pytest.raises(ModelLoadError) as failure:
        mc.compose(BLOCKS["8.2#2"], registry=registry)
    message = str(failure.value)
    assert "meta-llama/Llama-2-7b-hf" in message and "offline" in message and SECRET not in message
    assert registry_state(registry) == before


def test_the_rag_workflow_names_each_missing_component(registry, models):
    rag = BLOCKS["8.3.4#2"]
    with pytest.raises(WorkflowError, match="component `embedder`, which is not defined"):
        mc.compose(rag, registry=registry)
    assert registry_state(registry) == ([], {}, [], None, {})

    embedder = BLOCKS["8.3.4#1"].replace("component:\n", "component:\n  id: embedder\n", 1)
    mc.compose(embedder, registry=registry)
    assert [r["id"] for r in registry.snapshot()] == ["embedder"]
    before = registry_state(registry)
    with pytest.raises(WorkflowError) as failure:
        mc.compose(rag, registry=registry)
    assert "job `search` uses component `vector-store`, which is not defined" in str(failure.value)
    assert failure.value.path == "workflow.jobs[1].component"
    assert registry_state(registry) == before


def _inferred_note(cid: str, task: str, arch: str, model: str) -> str:
    return f"note: component `{cid}` has no `task:`: `{task}`, from config.json (architectures: {arch}) of `{model}`"


def test_the_two_precision_alternatives_compose_each_alone(registry, models):
    """8.7#1 holds two alternatives under one key; each half, composed alone, does what its comment says."""
    gpu, cpu = BLOCKS["8.7#1"].split("\n# CPU only\n")
    assert gpu.startswith("# With GPU\ncomponent:")
    assert cpu.startswith("component:\n  type: model\n  model: small-model")
    # with a GPU: float16 on cuda; the task comes from large-model's config.json (then the device is refused here)
    dry = mc.compose(gpu, registry=registry, dry_run=True)
    assert _inferred_note("default", "text-generation", "LlamaForCausalLM", "large-model") in repr(dry)
    assert dry.plan.components["default"].settings["task"] == "text-generation"
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError) as failure:
            mc.compose(gpu, registry=registry)
        assert all(part in str(failure.value) for part in CUDA)
        assert registry.snapshot() == []
    # CPU only: float32 on the CPU, loaded for real
    view = mc.compose(cpu, registry=registry)
    assert _inferred_note("default", "text-generation", "LlamaForCausalLM", "small-model") in repr(view)
    [row] = registry.snapshot()
    assert {k: row[k] for k in cpu_row("text-generation", "small-model")} == cpu_row("text-generation", "small-model")


def test_the_quantization_tip_infers_its_task_from_the_13b_config(registry, models):
    dry = mc.compose(BLOCKS["8.7#2"], registry=registry, dry_run=True)
    assert _inferred_note("default", "text-generation", "LlamaForCausalLM", "meta-llama/Llama-2-13b-hf") in repr(dry)
    settings = dry.plan.components["default"].settings
    assert (settings["task"], settings["quantization"], settings["device"]) == ("text-generation", "int8", "cuda")


def test_the_model_caching_tip_says_its_cache_dir_holds_no_gpt2_and_how_to_fill_it(registry, models):
    if Path(CACHE_87).exists():
        pytest.skip(f"{CACHE_87} exists on this machine")
    with pytest.raises(ConfigError) as failure:
        mc.compose(BLOCKS["8.7#4"], registry=registry, dry_run=True)
    error = failure.value
    assert (error.path, error.line) == ("component", 2)       # the block's first line is its comment
    assert error.bare_message == ("the required key `task` is missing, and the files of `gpt2` could not be read "
                                  "offline to infer it: it is not in the local Hugging Face cache "
                                  f"({CACHE_87}, revision main), and composing never downloads")
    assert error.hint.endswith(f"or download the model first where there is a network (`huggingface-cli download "
                               f"gpt2 --cache-dir {CACHE_87}`) and compose again.")
    # with `task:` written, the same block composes and the load says where it looked
    with_task = BLOCKS["8.7#4"].replace("  type: model\n", "  type: model\n  task: text-generation\n", 1)
    dry = mc.compose(with_task, registry=registry, dry_run=True)
    assert "would refuse `default`" in repr(dry) and CACHE_87 in repr(dry) and registry.snapshot() == []
