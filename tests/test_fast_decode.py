"""`fast_decode: true`: the fused decode step (mc_jupyter/drivers/fast_decode.py) on the tiny CPU models.

On CPU the step runs as plain tensor code (no CUDA graph), the same code the graph captures on a GPU.
Greedy output must equal transformers' ``generate`` exactly (float32); sampling must apply the same
processors as ``generate``; teacher-forced logits must equal the eager model's.
"""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.logits_process import (LogitsProcessorList, MinNewTokensLengthLogitsProcessor,
                                                    RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)

import mc_jupyter as mc
from mc_jupyter.drivers.fast_decode import FastDecoder, Sampling, _State
from mc_jupyter.errors import UserError

PROMPTS = ["The cat sat on", "Hello", "A much longer prompt about models and notebooks and"]


@pytest.fixture
def lm(models):
    path = models["causal"]
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, tok


def eager_greedy(model, enc, n, **kw):
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=n, do_sample=False, pad_token_id=0, **kw)
    return out[:, enc["input_ids"].shape[1]:]


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["batch1", "batch3-left-padded"])
def test_greedy_tokens_equal_generate_exactly(lm, prompts):
    model, tok = lm
    enc = tok(prompts, return_tensors="pt", padding=True)
    expected = eager_greedy(model, enc, 40)
    fast = FastDecoder(model)
    got = fast.generate_ids(enc["input_ids"], enc["attention_mask"], 40, pad_token_id=0)
    assert got.shape == expected.shape == (len(prompts), 40)
    assert torch.equal(got, expected)
    # a second call reuses the static state (same shapes) and still matches
    assert torch.equal(fast.generate_ids(enc["input_ids"], enc["attention_mask"], 40, pad_token_id=0), expected)


def test_the_weights_are_fused_into_views_not_copies(lm):
    model, tok = lm
    before = sum(p.numel() for p in model.parameters())
    fast = FastDecoder(model)
    attn = model.model.layers[0].self_attn
    layer = fast.layers[0]
    assert attn.q_proj.weight.data_ptr() == layer.wqkv.data_ptr()
    assert attn.k_proj.weight.data_ptr() == layer.wqkv[attn.q_proj.weight.shape[0]:].data_ptr()
    assert model.model.layers[0].mlp.up_proj.weight.data_ptr() == \
        layer.wgu[model.model.layers[0].mlp.gate_proj.weight.shape[0]:].data_ptr()
    assert sum(p.numel() for p in model.parameters()) == before
    enc = tok(PROMPTS[:1], return_tensors="pt")
    # the model itself (its own forward, through the views) still gives the same tokens
    assert torch.equal(eager_greedy(model, enc, 8), fast.generate_ids(enc["input_ids"], enc["attention_mask"], 8))


def test_an_end_token_stops_the_row_and_pads_it_as_generate_does(lm):
    model, tok = lm
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    free = eager_greedy(model, enc, 30)
    eos = int(free[1, 4])                       # row 1 says this at step 4: make it the end token
    expected = eager_greedy(model, enc, 30, eos_token_id=eos)
    fast = FastDecoder(model, eos_token_id=eos)
    got = fast.generate_ids(enc["input_ids"], enc["attention_mask"], 30, pad_token_id=0)
    assert torch.equal(got, expected[:, :got.shape[1]]) and got.shape == expected.shape, (got, expected)
    assert int(got[1, 4]) == eos and (got[1, 5:] == 0).all()


def test_teacher_forced_logits_equal_the_eager_models_at_every_step(lm):
    model, tok = lm
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    teacher = torch.randint(10, 300, (len(PROMPTS), 12))
    fast = FastDecoder(model)
    steps = list(fast.generate(enc["input_ids"], enc["attention_mask"], 12, teacher_tokens=teacher))
    ids = torch.cat([enc["input_ids"], teacher], 1)
    mask = torch.cat([enc["attention_mask"], torch.ones_like(teacher)], 1)
    with torch.inference_mode():
        eager = model(input_ids=ids, attention_mask=mask,
                      position_ids=(mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)).logits.float()
    n = enc["input_ids"].shape[1]
    assert len(steps) == 12
    for j, logits in enumerate(steps):
        torch.testing.assert_close(logits, eager[:, n - 1 + j], atol=1e-4, rtol=1e-4)


def state_for(fast, sampling, batch=2):
    s = _State(fast, batch, 64, sampling)
    return s


@pytest.mark.parametrize("temperature,top_k,top_p,penalty,min_new", [
    (0.7, 0, None, None, 0), (1.3, 5, None, None, 0), (0.9, 0, 0.8, None, 0), (0.8, 20, 0.5, 1.3, 0),
    (1.0, 0, None, 1.5, 3)])
def test_the_sampling_processors_are_transformers_own(lm, temperature, top_k, top_p, penalty, min_new):
    model, _ = lm
    fast = FastDecoder(model, eos_token_id=[0, 7])
    sampling = Sampling(do_sample=True, top_k=top_k, use_top_p=top_p is not None,
                        use_penalty=penalty is not None, use_min_new=min_new > 0)
    s = state_for(fast, sampling)
    s.temperature.fill_(temperature)
    s.top_p.fill_(top_p or 1.0)
    s.penalty.fill_(penalty or 1.0)
    s.min_new.fill_(min_new)
    s.generated.fill_(1)
    torch.manual_seed(3)
    vocab = fast.vocab
    history = torch.randint(0, vocab, (2, 9))
    if s.seen is not None:
        s.seen.scatter_(1, history, True)
    logits = torch.randn(2, vocab) * 4
    processors = LogitsProcessorList()
    if penalty:
        processors.append(RepetitionPenaltyLogitsProcessor(penalty))
    if min_new:
        processors.append(MinNewTokensLengthLogitsProcessor(prompt_length_to_skip=8, min_new_tokens=min_new,
                                                            eos_token_id=[0, 7]))
    processors.append(TemperatureLogitsWarper(temperature))
    if top_k:
        processors.append(TopKLogitsWarper(top_k))
    if top_p is not None:
        processors.append(TopPLogitsWarper(top_p))
    expected = processors(history, logits.clone())       # history: 8 prompt tokens + 1 generated
    got = FastDecoder._process(s, logits.clone())
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    torch.testing.assert_close(got[~torch.isinf(got)], expected[~torch.isinf(expected)])
    # the draw stays inside what the processors kept
    for _ in range(50):
        token = fast._choose(s, logits.clone())
        assert not torch.isinf(expected.gather(1, token[:, None])).any()


def test_a_categorical_draw_follows_the_distribution(lm):
    model, _ = lm
    fast = FastDecoder(model)
    s = state_for(fast, Sampling(do_sample=True), batch=1)
    logits = torch.full((1, fast.vocab), -1e9)
    logits[0, [3, 4, 5]] = torch.log(torch.tensor([0.2, 0.3, 0.5]))
    torch.manual_seed(0)
    draws = torch.stack([fast._choose(s, logits) for _ in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=6)[3:6].float() / len(draws)
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.3, 0.5]), atol=0.03, rtol=0)


def test_top_k_one_sampling_is_greedy(lm):
    model, tok = lm
    enc = tok(PROMPTS[:1], return_tensors="pt")
    fast = FastDecoder(model)
    got = fast.generate_ids(enc["input_ids"], enc["attention_mask"], 16, do_sample=True, temperature=0.7, top_k=1)
    assert torch.equal(got, eager_greedy(model, enc, 16))


COMPONENT = """
components:
  - id: plain
    type: model
    task: text-generation
    model: {path}
    text: ${{input.prompt}}
    params: {{max_output_length: 24, temperature: 0}}
  - id: quick
    type: model
    task: text-generation
    model: {path}
    fast_decode: true
    text: ${{input.prompt}}
    params: {{max_output_length: 24, temperature: 0}}
"""


def test_a_component_with_fast_decode_gives_the_same_text_run_and_streamed(models, registry):
    mc.compose(COMPONENT.format(path=models["causal"]), registry=registry)
    assert registry.entries["quick"].driver.fast is not None and registry.entries["plain"].driver.fast is None
    for prompt in (PROMPTS[0], PROMPTS):
        expected = mc.run("plain", {"prompt": prompt}, registry=registry).output
        assert mc.run("quick", {"prompt": prompt}, registry=registry).output == expected
    chunks = []

    from mc_jupyter.engine import StreamSink

    class Sink(StreamSink):
        def chunk(self, text, tokens=None):
            chunks.append(text)

    mc.compose(COMPONENT.format(path=models["causal"]).split("  - id: quick")[1].join(
        ["components:\n  - id: quick", ""]).replace("    text:", "    streaming: true\n    text:"), registry=registry)
    assert registry.entries["quick"].spec.settings["fast_decode"]
    streamed = mc.run("quick", {"prompt": PROMPTS[0]}, stream=Sink(), registry=registry).output
    assert streamed == mc.run("plain", {"prompt": PROMPTS[0]}, registry=registry).output
    assert len(chunks) > 1 and "".join(chunks) == streamed


def test_fast_decode_stops_when_told(lm):
    model, tok = lm
    enc = tok(PROMPTS[:1], return_tensors="pt")
    stop = threading.Event()
    got = []
    for step in FastDecoder(model).generate(enc["input_ids"], enc["attention_mask"], 50, stop=stop):
        got.append(step)
        if len(got) == 5:
            stop.set()
    assert len(got) == 5


@pytest.mark.parametrize("extra,fragment", [
    ("    quantization: nf4\n", "`quantization: nf4` is bitsandbytes' format"),
    ("    device_mode: auto\n", "needs plain weights on one device"),
])
def test_fast_decode_with_settings_it_cannot_serve_is_a_located_error(models, registry, extra, fragment):
    text = COMPONENT.format(path=models["causal"]).split("  - id: quick")[0].replace(
        "    text:", "    fast_decode: true\n" + extra + "    text:", 1)
    with pytest.raises(UserError) as info:
        mc.compose(text, registry=registry)
    assert fragment in str(info.value) and "fast_decode" in str(info.value) and "line" in str(info.value).lower()
    assert registry.entries == {}


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_a_component_with_fast_decode_and_int8_or_int4_packs_its_weights_and_decodes_as_its_generate(
        models, registry, kind):
    """`fast_decode: true` + `quantization: int8|int4`: loaded plain (no bitsandbytes), the layers' linears
    packed by the fast step; the text equals transformers' generate on the same packed model, the memory
    the registry reports is the packed size, and a plan needs no bitsandbytes."""
    from mc_jupyter.drivers.quant_weights import QuantLinear
    text = COMPONENT.format(path=models["causal"]).replace(
        "    fast_decode: true\n", f"    fast_decode: true\n    quantization: {kind}\n")
    plan = mc.compose(text, registry=registry, dry_run=True).plan
    assert [p.refused for p in plan.estimates] == [[], []] and registry.entries == {}
    # the plain weights load first: the plan counts them, and offers no quantization (it would not lower the peak)
    assert plan.estimates[1].weight_bytes == plan.estimates[0].weight_bytes
    assert [k for k in plan.estimates[1].alternatives if "quantization" in k] == []
    mc.compose(text, registry=registry)
    quick, plain = registry.entries["quick"].driver, registry.entries["plain"].driver
    assert quick.fast.quantization == kind
    assert isinstance(quick.model.model.layers[0].mlp.down_proj, QuantLinear)
    assert quick.memory_bytes < plain.memory_bytes and quick.dtype.endswith(f"· {kind}")
    for prompt in (PROMPTS[0], PROMPTS):
        got = mc.run("quick", {"prompt": prompt}, registry=registry).output
        prompts = [prompt] if isinstance(prompt, str) else prompt
        enc = quick.tokenizer(prompts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            ids = quick.model.generate(**enc, max_new_tokens=24, do_sample=False,
                                       pad_token_id=quick.tokenizer.pad_token_id)[:, enc["input_ids"].shape[1]:]
        expected = quick.tokenizer.batch_decode(ids, skip_special_tokens=True)
        assert got == (expected[0] if isinstance(prompt, str) else expected)


def test_the_int4_group_fits_every_width_the_layers_read_or_the_load_says_why():
    from transformers import LlamaConfig

    from mc_jupyter.drivers.fast_decode import _int4_group
    from mc_jupyter.errors import ModelLoadError
    assert _int4_group(LlamaConfig(hidden_size=4096, intermediate_size=11008, num_attention_heads=32), 64) == 64
    # o_proj reads heads x head_dim columns, which an explicit head_dim makes other than the hidden size
    assert _int4_group(LlamaConfig(hidden_size=128, intermediate_size=256, num_attention_heads=4, head_dim=24),
                       64) == 32
    with pytest.raises(ModelLoadError, match="(?s)not multiples of 32.*Use `quantization: int8`"):
        _int4_group(LlamaConfig(hidden_size=48, intermediate_size=96, num_attention_heads=4), 64)


def test_fast_decode_on_another_task_is_a_located_error(models, registry):
    text = f"""
component:
  id: enc
  type: model
  task: text-embedding
  model: {models["causal"]}
  fast_decode: true
  text: ${{input.text}}
"""
    with pytest.raises(UserError, match="fast_decode` is for the huggingface driver's text-generation"):
        mc.compose(text, registry=registry)


def test_the_multiply_and_sum_matrix_vector_form_gives_the_same_tokens(lm):
    """Batch 1 on a compiled step writes each matrix-vector product as multiply-and-sum (one tuned
    reduction kernel each on a GPU); run here without the compiler, it must give generate's tokens."""
    model, tok = lm
    enc = tok(PROMPTS[:1], return_tensors="pt")
    fast = FastDecoder(model, use_compile=True, reduce_gemv=True)
    assert fast.reduce_gemv and not fast.use_graphs
    assert torch.equal(fast.generate_ids(enc["input_ids"], enc["attention_mask"], 24), eager_greedy(model, enc, 24))


@pytest.mark.parametrize("kind", ["mistral", "qwen2"])
def test_mistral_and_qwen2_models_decode_as_generate_does(kind):
    """The other two supported families (Qwen2 has q/k/v biases) on tiny random models."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM
    config_cls, model_cls = {"mistral": (MistralConfig, MistralForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[kind]
    torch.manual_seed(0)
    model = model_cls(config_cls(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                 pad_token_id=0, eos_token_id=None, bos_token_id=1)).eval()
    model.generation_config.eos_token_id = None
    if kind == "qwen2":
        assert model.model.layers[0].self_attn.q_proj.bias is not None
    ids = torch.randint(2, 300, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.inference_mode():
        expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=20, do_sample=False,
                                  pad_token_id=0)[:, 9:]
    assert torch.equal(FastDecoder(model).generate_ids(ids, mask, 20, pad_token_id=0), expected)


def test_a_model_family_it_does_not_serve_is_refused_with_the_reason():
    from transformers import GPT2Config, GPT2LMHeadModel

    from mc_jupyter.config.schema import ModelComponent
    from mc_jupyter.drivers.fast_decode import check_supported
    from mc_jupyter.errors import ModelLoadError
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(ModelLoadError, match=r"`fast_decode: true` cannot be used: it is a `gpt2` model; "
                                             r"fast_decode serves llama, mistral, qwen2 models"):
        check_supported(model, ModelComponent(task="text-generation", fast_decode=True), "old")


# -- issue #19: quantized fast decode, the Triton step, the stream's figures ------------------------------
def _quant_model(seed=0, hidden=128, layers=2, qwen=False):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    config_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if qwen else (LlamaConfig, LlamaForCausalLM)
    torch.manual_seed(seed)
    model = model_cls(config_cls(vocab_size=300, hidden_size=hidden, intermediate_size=2 * hidden,
                                 num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=256, pad_token_id=0, eos_token_id=None,
                                 bos_token_id=1)).eval()
    model.generation_config.eos_token_id = None
    return model


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("qwen", [False, True], ids=["llama", "qwen2-biases"])
def test_quantized_fast_decode_equals_generate_on_the_same_quantized_weights(kind, qwen):
    """The layers' linears are replaced by QuantLinear (the model's own forward dequantizes): its generate
    and the fused step read the same quantized weights, so greedy tokens must be equal exactly (float32)."""
    from mc_jupyter.drivers.quant_weights import QuantLinear, quantized_bytes
    model = _quant_model(qwen=qwen)
    plain_bytes = sum(p.numel() * p.element_size() for layer in model.model.layers for p in layer.parameters()
                      if p.dim() == 2)
    fast = FastDecoder(model, quantization=kind)
    assert fast.quantization == kind and fast.backend == "eager"
    attn = model.model.layers[0].self_attn
    assert isinstance(attn.q_proj, QuantLinear) and isinstance(model.model.layers[1].mlp.down_proj, QuantLinear)
    assert attn.q_proj.qweight.data.data_ptr() == fast.layers[0].qkv.data.data_ptr()   # views of the fused weights
    stored = quantized_bytes(model)
    assert stored < plain_bytes * (0.27 if kind == "int8" else 0.16)     # float32 weights: 1/4 and ~1/7
    ids = torch.randint(2, 300, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.inference_mode():
        expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=16, do_sample=False,
                                  pad_token_id=0)[:, 9:]
    assert torch.equal(fast.generate_ids(ids, mask, 16, pad_token_id=0), expected)
    # teacher-forced logits equal the model's own forward on the quantized weights
    teacher = torch.randint(2, 300, (2, 8))
    steps = torch.stack(list(fast.generate(ids, mask, 8, teacher_tokens=teacher)), 1)
    full_ids, full_mask = torch.cat([ids, teacher], 1), torch.cat([mask, torch.ones_like(teacher)], 1)
    with torch.inference_mode():
        own = model(input_ids=full_ids, attention_mask=full_mask,
                    position_ids=(full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 1)).logits.float()
    torch.testing.assert_close(steps, own[:, 8:16], atol=1e-4, rtol=1e-4)


def test_quantized_weights_stay_close_to_the_float_ones_and_int4_beats_nf4():
    from mc_jupyter.drivers import quant_weights as qw
    torch.manual_seed(0)
    w = torch.randn(256, 512) * 0.02
    rel = lambda d: float((d - w).norm() / w.norm())                   # noqa: E731
    q8, q4 = qw.quantize(w, "int8"), qw.quantize(w, "int4", 64)
    assert q8.data.dtype == torch.uint8 and q8.scale.shape == (256,) and q8.nbytes == 256 * 512 + 256 * 4
    assert q4.data.shape == (256, 256) and q4.scale.shape == (256, 8) and q4.scale.dtype == torch.float16
    assert rel(q8.dequantize(torch.float32)) < 0.01
    # NF4 at blocks of 64 (bitsandbytes' 4-bit default), the same 4.5 bits a weight
    nf4 = torch.tensor([-1.0, -0.6961928, -0.5250730, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0,
                        0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0])
    blocks = w.reshape(-1, 64)
    absmax = blocks.abs().amax(1, keepdim=True)
    nf4_w = (nf4[((blocks / absmax)[..., None] - nf4).abs().argmin(-1)] * absmax).reshape(w.shape)
    assert rel(q4.dequantize(torch.float32)) < 0.95 * rel(nf4_w) < 0.1
    # the layout: byte g * 32 + c holds column g * 64 + c (low nibble) and g * 64 + 32 + c (high nibble)
    packed = q4.data.view(256, 8, 32)
    codes = torch.cat([packed & 15, packed >> 4], -1).float()                 # [256, 8 groups, 64]
    manual = codes * q4.scale.float()[..., None] + q4.mins.float()[..., None]
    torch.testing.assert_close(manual.reshape(256, 512), q4.dequantize(torch.float32))
    # rows() are views, concat fuses
    both = qw.concat([q4, q4])
    assert both.shape == (512, 512) and torch.equal(both.rows(256, 512).dequantize(), q4.dequantize())


def test_check_supported_takes_int8_and_int4_and_refuses_nf4_and_bitsandbytes_weights():
    from mc_jupyter.config.schema import ModelComponent
    from mc_jupyter.drivers.fast_decode import check_supported
    from mc_jupyter.errors import ModelLoadError
    model = _quant_model()
    for kind in ("int8", "int4"):
        check_supported(model, ModelComponent(task="text-generation", fast_decode=True, quantization=kind), "q")
    with pytest.raises(ModelLoadError, match="bitsandbytes' format; fast_decode quantizes to int8 or int4"):
        check_supported(model, ModelComponent(task="text-generation", fast_decode=True, quantization="nf4"), "q")

    class Linear8bitLt(torch.nn.Linear):      # stands for a module bitsandbytes put in at load
        pass
    Linear8bitLt.__module__ = "bitsandbytes.nn.modules"
    model.model.layers[0].mlp.down_proj = Linear8bitLt(256, 128)
    with pytest.raises(ModelLoadError, match="quantized at load \\(bitsandbytes\\)"):
        check_supported(model, ModelComponent(task="text-generation", fast_decode=True, quantization="int8"), "q")


def test_a_call_leaves_its_time_to_first_token_and_decode_rate(lm):
    model, tok = lm
    enc = tok(PROMPTS[:1], return_tensors="pt")
    fast = FastDecoder(model)
    fast.generate_ids(enc["input_ids"], enc["attention_mask"], 12)
    stats = fast.last_stats
    assert stats["new_tokens"] == 12 and stats["prompt_tokens"] == enc["input_ids"].shape[1]
    assert 0 < stats["first_token_s"] < 30 and stats["decode_s"] > 0
    assert stats["decode_tokens_per_s"] == pytest.approx(11 / stats["decode_s"])


def test_an_unknown_backend_or_quantization_is_refused(lm):
    model, _ = lm
    with pytest.raises(ValueError, match="unknown fast decode backend"):
        FastDecoder(model, backend="cuda-magic")
    with pytest.raises(ValueError, match="quantizes to int8 or int4, not `nf4`"):
        FastDecoder(model, quantization="nf4")


_INTERPRETED = r'''
import os, sys
os.environ["TRITON_INTERPRET"] = "1"
import torch
from mc_jupyter.drivers import fast_decode_kernels as K
from mc_jupyter.drivers import quant_weights as Q
from mc_jupyter.drivers.fast_decode import FastDecoder
K.FIXED_CONFIG = {"vec": dict(BLOCK_N=8, BLOCK_K=128), "mat": dict(BLOCK_N=32)}
torch.manual_seed(0)
worst = 0.0
for kind in ("plain", "int8", "int4"):
    for b in (1, 3):
        for pro in (K.PRO_NONE, K.PRO_RMS, K.PRO_SILU):
            dt = torch.float16            # (the interpreter has no bf16 matrix product)
            w = torch.randn(80, 320) * 0.05
            qw = Q.plain(w.to(dt)) if kind == "plain" else Q.quantize(w.to(dt), kind, 64)
            x = torch.randn(b, 640 if pro == K.PRO_SILU else 320).to(dt)
            kw = dict(pro=pro, ln=(torch.rand(320) + 0.5).to(dt), eps=1e-5, inter=320,
                      bias=torch.randn(80).to(dt) if pro == K.PRO_NONE else None,
                      res=torch.randn(b, 80).to(dt) if pro != K.PRO_RMS else None)
            got, exp = K.gemv(x, qw, **kw).float(), K.reference_gemv(x, qw, **kw).float()
            worst = max(worst, float((got - exp).norm() / exp.norm()))
print("gemv worst", worst)
assert worst < 5e-3, worst
for (b, h, kvh, d, length, sl) in [(1, 4, 2, 64, 128, 70), (3, 8, 2, 32, 192, 130)]:
    qkv = torch.randn(b, (h + 2 * kvh) * d)
    ang = torch.rand(300, d // 2) * 6
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    pos, slot = torch.randint(0, 300, (b,)), torch.tensor([sl])
    valid = torch.rand(b, length) > 0.3
    valid[:, sl:] = False
    kc, vc = torch.randn(b, kvh, length, d), torch.randn(b, kvh, length, d)
    kc2, vc2, valid2 = kc.clone(), vc.clone(), valid.clone()
    exp = K.reference_attention(qkv, cos, sin, pos, slot, valid2, kc2, vc2, h, kvh, d, d ** -0.5)
    got = K.attention(qkv, cos, sin, pos, slot, valid.view(torch.uint8), kc, vc, h, kvh, d, d ** -0.5)
    torch.testing.assert_close(got, exp, atol=1e-5, rtol=1e-5)
    assert torch.equal(kc, kc2) and torch.equal(vc, vc2) and torch.equal(valid, valid2)
print("attention ok")
from transformers import LlamaConfig, LlamaForCausalLM
for quant in (None, "int4"):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             pad_token_id=0, eos_token_id=None, bos_token_id=1)).eval()
    model.generation_config.eos_token_id = None
    fast = FastDecoder(model, backend="triton", quantization=quant)
    assert fast.backend == "triton"
    ids = torch.randint(2, 300, (1, 7))
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                  pad_token_id=0)[:, 7:]
    got = fast.generate_ids(ids, mask, 6, pad_token_id=0)
    assert torch.equal(got, expected), (quant, got, expected)
print("decoder ok")
'''


@pytest.mark.slow
def test_the_triton_kernels_compute_what_their_references_do_in_the_interpreter():
    """The kernels of the CUDA step, run by Triton's CPU interpreter against the torch references
    (matrix-vector products for plain/int8/int4 weights with each prologue, batch 1 and 3; the attention
    with its cache writes; a whole one-layer decoder's greedy tokens against generate)."""
    import importlib.util
    import os
    import subprocess
    import sys
    from pathlib import Path
    if importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed here")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", _INTERPRETED], cwd=root, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "attention ok" in done.stdout and "decoder ok" in done.stdout
