"""An opt-in fast decode path for Llama-shaped causal LMs (``fast_decode: true``).

What makes ``generate`` slow at batch 1 is not the weights' bytes but what runs around them: Python
per layer and per step, a cache that grows, hundreds of kernel launches, sampling on the host. Like
gpt-fast-style decoders, this path

- prefills the prompt with the model's own forward (so the first token is the model's own),
- then decodes one token a step with its own forward over the *same* weight tensors: a static KV
  cache sized once per call, q/k/v and gate/up fused into one matrix each (the model's parameters
  become views into the fused matrices, so no memory is added), rotary tables computed once by the
  model's own rotary module;
- runs the whole step (forward, repetition penalty, temperature, top-k, top-p, sampling, end-of-text
  bookkeeping) on the device, and on CUDA captures it in a CUDA graph (optionally compiled with
  ``torch.compile`` first), so a step costs one graph launch.

Greedy output equals ``generate``'s on the same model (tested exactly on CPU models in float32; on a
GPU, teacher-forced logits are checked against the eager model's at every step). Sampling follows
transformers' processors in their order: repetition penalty, min-new-tokens, temperature, top-k,
top-p, then a categorical draw (drawn as argmax(p / Exp(1)), which is an exact categorical sample and
safe inside a CUDA graph).

On CUDA the step is compiled by ``torch.compile`` (``backend="inductor"``, the default: the step measured
on the H200, batch-1 products as multiply-and-sum reductions tuned by coordinate descent). ``backend="triton"``
(``MC_JUPYTER_FAST_BACKEND=triton``, and the quantized step) is made of the Triton kernels of
:mod:`fast_decode_kernels`: five launches a layer, the RMS norms, rotary embedding, cache write, residual adds
and silu folded into them, and the attention loop stopping at the filled slots; it is checked against the
plain step in Triton's interpreter and compiled for sm_90, but not yet timed on a GPU. ``backend="eager"`` is
the plain tensor code (the CPU path, and the reference the others are tested against).

``quantization="int8"`` or ``"int4"`` (:mod:`quant_weights`) quantizes the layers' linear weights in
place (weight-only; the embedding and ``lm_head`` stay as they are): the model's own forward then runs
on the dequantized weights (prefill, and ``generate`` where the fast path does not apply), and the step
reads the packed weights with the dequantization fused into its products.

Supported: model types ``llama``, ``mistral`` (without a sliding window shorter than the cache) and
``qwen2``, plain weights (quantized here, not by bitsandbytes), without LoRA adapters. Anything else is
refused at load with the reason.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..catalog import Quantization
from ..errors import InputError, ModelLoadError

SUPPORTED = ("llama", "mistral", "qwen2")
CACHE_ROUNDING = 64        # cache lengths are rounded up, so one captured graph serves similar prompts
QUANTIZED = ("int8", "int4")   # what the fast path quantizes to itself
BACKENDS = ("triton", "inductor", "eager")


def check_supported(model: Any, component: Any, component_id: str = "") -> None:
    """Raise a clear error when ``fast_decode`` cannot serve this model; ``component`` is the component's
    typed config (its ``quantization`` and ``peft_adapters``), ``component_id`` names it in the message."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", type(model).__name__)
    quantization = component.quantization
    why = None
    if kind not in SUPPORTED:
        why = f"it is a `{kind}` model; fast_decode serves {', '.join(SUPPORTED)} models"
    elif quantization != Quantization.NONE and str(quantization) not in QUANTIZED:
        why = (f"`quantization: {quantization}` is bitsandbytes' format; fast_decode quantizes to "
               f"{' or '.join(QUANTIZED)} itself")
    elif _prequantized(model):
        why = ("its weights were quantized at load (bitsandbytes): fast_decode needs the plain weights and "
               "quantizes them itself")
    elif component.peft_adapters:
        why = "it has LoRA adapters: merge them into the weights, or leave fast_decode off"
    elif getattr(config, "hidden_act", "silu") != "silu":
        why = f"its activation is `{config.hidden_act}`, not silu"
    elif getattr(model, "hf_device_map", None) and len(set(map(str, model.hf_device_map.values()))) > 1:
        why = "it is split over several devices (`device_mode: auto`): the fused step runs on one device"
    if why:
        raise ModelLoadError(f"component `{component_id}`: `fast_decode: true` cannot be used: {why}.\n"
                             f"  Remove `fast_decode`, and the model runs through transformers' generate.")


def _int4_group(cfg: Any, wanted: int) -> int:
    """The int4 group: ``wanted`` columns, or fewer (down to 32) where the layers' widths need it."""
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    widths = {cfg.hidden_size, getattr(cfg, "intermediate_size", cfg.hidden_size), cfg.num_attention_heads * head_dim}
    for group in sorted({wanted, 64, 32}, reverse=True):
        if group <= wanted and all(width % group == 0 for width in widths):
            return group
    raise ModelLoadError(f"`quantization: int4` with fast_decode packs groups of 32 to 128 columns; this model's "
                         f"widths ({', '.join(map(str, sorted(widths)))}) are not multiples of 32.\n"
                         f"  Use `quantization: int8` (one scale a row), or leave quantization out.")


def _prequantized(model: Any) -> bool:
    for module in model.modules():
        if type(module).__module__.startswith("bitsandbytes"):
            return True
    return False


@dataclass(frozen=True)
class Sampling:
    """What the step does after the logits; a new combination captures a new graph."""

    do_sample: bool = False
    top_k: int = 0                 # 0: off
    use_top_p: bool = False
    use_penalty: bool = False
    use_min_new: bool = False


class _Layer:
    """One decoder layer's weights as the step reads them: q/k/v and gate/up fused (the model's own
    modules become views of the fused matrices), plain or quantized (:class:`quant_weights.QWeight`)."""

    def __init__(self, layer: Any, heads: int, kv_heads: int, head_dim: int,
                 quantization: Optional[str] = None, group: int = 64) -> None:
        import torch
        from . import quant_weights as qw
        attn, mlp = layer.self_attn, layer.mlp
        q, k, v = attn.q_proj, attn.k_proj, attn.v_proj
        self.bqkv = None
        if q.bias is not None:
            self.bqkv = torch.cat([q.bias.data, k.bias.data, v.bias.data])
            for i, m in enumerate((q, k, v)):
                lo = sum(x.bias.shape[0] for x in (q, k, v)[:i])
                m.bias.data = self.bqkv[lo:lo + m.bias.shape[0]]
        self.bo = getattr(attn.o_proj, "bias", None)
        self.bo = self.bo.data if self.bo is not None else None
        self.ln1, self.eps1 = layer.input_layernorm.weight.data, layer.input_layernorm.variance_epsilon
        self.ln2, self.eps2 = layer.post_attention_layernorm.weight.data, layer.post_attention_layernorm.variance_epsilon
        self.split = (heads * head_dim, kv_heads * head_dim, kv_heads * head_dim)
        self.inter = mlp.gate_proj.out_features
        self.scaling = float(getattr(attn, "scaling", head_dim ** -0.5))
        if quantization:
            # each linear quantized, then fused; the model's modules become QuantLinear views of the fused
            # packed tensors (its own forward keeps working), and the float weights are dropped
            self.qkv = _fuse_quantized(attn, ("q_proj", "k_proj", "v_proj"), quantization, group)
            self.o = _fuse_quantized(attn, ("o_proj",), quantization, group)
            self.gu = _fuse_quantized(mlp, ("gate_proj", "up_proj"), quantization, group)
            self.down = _fuse_quantized(mlp, ("down_proj",), quantization, group)
            self.wqkv = self.wo = self.wgu = self.wdown = None
        else:
            self.wqkv = _fuse([q, k, v])
            self.wo = attn.o_proj.weight.data
            self.wgu = _fuse([mlp.gate_proj, mlp.up_proj])
            self.wdown = mlp.down_proj.weight.data
            self.qkv, self.o, self.gu, self.down = (qw.plain(w) for w in (self.wqkv, self.wo, self.wgu, self.wdown))

    def weight(self, name: str):
        """The float matrix of ``qkv``/``o``/``gu``/``down`` (dequantized for quantized layers: eager path)."""
        plain = {"qkv": self.wqkv, "o": self.wo, "gu": self.wgu, "down": self.wdown}[name]
        return plain if plain is not None else getattr(self, name).dequantize()


def _fuse_quantized(parent: Any, names: Sequence[str], kind: str, group: int):
    from . import quant_weights as qw
    parts = []
    for n in names:
        module = getattr(parent, n)
        if isinstance(module, qw.QuantLinear):     # quantized by an earlier decoder on this model: as it is
            if module.qweight.kind != kind:
                raise ModelLoadError(f"this model's weights are already quantized to {module.qweight.kind}, "
                                     f"not {kind}: load it again")
            parts.append(module.qweight)
        else:
            parts.append(qw.quantize(module.weight.data, kind, group))
    fused = qw.concat(parts) if len(parts) > 1 else parts[0]
    row = 0
    for n, part in zip(names, parts):
        old = getattr(parent, n)
        rows = part.shape[0]
        bias = old.bias.data if old.bias is not None else None
        setattr(parent, n, qw.QuantLinear(fused.rows(row, row + rows), bias))
        row += rows
    return fused


def _fuse(linears: Sequence[Any]):
    """One matrix for several linears; each linear's weight becomes a view into it (no extra memory)."""
    import torch
    fused = torch.cat([m.weight.data for m in linears], dim=0)
    row = 0
    for m in linears:
        n = m.weight.shape[0]
        m.weight.data = fused[row:row + n]
        row += n
    return fused


def _rms(x, w, eps):
    import torch
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(dtype)


def _rotate_half(x):
    import torch
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _State:
    """The static buffers of one (batch, cache length, sampling) combination, and its graph."""

    def __init__(self, dec: "FastDecoder", batch: int, length: int, sampling: Sampling) -> None:
        import torch
        dev, dt = dec.device, dec.dtype
        self.batch, self.length, self.sampling = batch, length, sampling
        shape = (batch, dec.kv_heads, length, dec.head_dim)
        self.k = [torch.zeros(shape, device=dev, dtype=dt) for _ in dec.layers]
        self.v = [torch.zeros(shape, device=dev, dtype=dt) for _ in dec.layers]
        self.valid = torch.zeros(batch, length, device=dev, dtype=torch.bool)
        self.valid_u8 = self.valid.view(torch.uint8)                         # the same memory, for the kernels
        self.tokens = torch.zeros(batch, device=dev, dtype=torch.long)      # the token fed to the next step
        self.pos = torch.zeros(batch, device=dev, dtype=torch.long)         # its rotary position
        self.slot = torch.zeros(1, device=dev, dtype=torch.long)            # its cache slot
        self.generated = torch.zeros(1, device=dev, dtype=torch.long)       # tokens generated so far
        self.finished = torch.zeros(batch, device=dev, dtype=torch.bool)
        self.seen = torch.zeros(batch, dec.vocab, device=dev, dtype=torch.bool) if sampling.use_penalty else None
        self.logits = torch.zeros(batch, dec.vocab, device=dev, dtype=torch.float32)
        self.temperature = torch.ones(1, device=dev, dtype=torch.float32)
        self.top_p = torch.ones(1, device=dev, dtype=torch.float32)
        self.penalty = torch.ones(1, device=dev, dtype=torch.float32)
        self.min_new = torch.zeros(1, device=dev, dtype=torch.long)
        self.eos = dec.eos_ids
        self.pad = torch.zeros(1, device=dev, dtype=torch.long)
        self.graph = None


class FastDecoder:
    """The fused decode step over a loaded Llama-shaped model (see the module's docstring)."""

    def __init__(self, model: Any, eos_token_id: Any = None, use_graphs: Optional[bool] = None,
                 use_compile: Optional[bool] = None, reduce_gemv: Optional[bool] = None,
                 backend: Optional[str] = None, quantization: Optional[str] = None, group_size: int = 64) -> None:
        import torch
        from . import fast_decode_kernels as kernels
        self.model = model
        cfg = model.config
        inner = model.model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        cuda = self.device.type == "cuda"
        quantization = None if quantization in (None, "none", "") else str(quantization)
        if quantization is not None and quantization not in QUANTIZED:
            raise ValueError(f"fast_decode quantizes to {' or '.join(QUANTIZED)}, not `{quantization}`")
        self.quantization = quantization
        # which step: Triton kernels on CUDA (half-precision models), else the compiled or plain tensor code
        if backend is None:
            backend = os.environ.get("MC_JUPYTER_FAST_BACKEND") or None
        if backend is None:
            if use_compile is True:
                backend = "inductor"
            elif use_compile is False:
                backend = "eager"
            elif cuda and os.environ.get("MC_JUPYTER_FAST_COMPILE", "1") != "0":
                # the compiled step stays the default until the Triton step is measured on a GPU (issue #19:
                # no machine started in the session that built it); MC_JUPYTER_FAST_BACKEND=triton opts in
                backend = "inductor"
            else:
                backend = "eager"
        if backend not in BACKENDS:
            raise ValueError(f"unknown fast decode backend `{backend}` ({', '.join(BACKENDS)})")
        if backend == "triton" and not (kernels.available() and (cuda or os.environ.get("TRITON_INTERPRET") == "1")):
            backend = "eager"           # (the CPU tests run the kernels in Triton's interpreter)
        if quantization and backend == "inductor":
            backend = "triton" if cuda and kernels.available() else "eager"
        if quantization and cuda and backend != "triton":
            raise ModelLoadError(f"fast_decode with `quantization: {quantization}` needs Triton on CUDA "
                                 f"(the fused dequantizing kernels); it is not installed here")
        self.backend = backend
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.vocab = model.lm_head.weight.shape[0]
        self.sliding = getattr(cfg, "sliding_window", None) if cfg.model_type == "mistral" else None
        if quantization == "int4":
            group_size = _int4_group(cfg, group_size)
        self.group_size = group_size if quantization == "int4" else 0
        with torch.no_grad():
            self.layers = [_Layer(layer, self.heads, self.kv_heads, self.head_dim, quantization, group_size)
                           for layer in inner.layers]
        if quantization:
            from .quant_weights import QuantLinear
            for module in model.modules():
                if isinstance(module, QuantLinear):
                    module.use_kernels = backend == "triton"
            if cuda:
                torch.cuda.empty_cache()
        self.embed = inner.embed_tokens.weight.data
        self.norm, self.norm_eps = inner.norm.weight.data, inner.norm.variance_epsilon
        self.lm_head = model.lm_head.weight.data
        from .quant_weights import plain
        self.head = plain(self.lm_head)
        self.rotary = inner.rotary_emb
        self.max_positions = int(getattr(cfg, "max_position_embeddings", 4096) or 4096)
        eos = eos_token_id if eos_token_id is not None else getattr(model.generation_config, "eos_token_id", None)
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        self.eos_ids = torch.tensor(eos, device=self.device, dtype=torch.long)
        self.use_graphs = cuda if use_graphs is None else (use_graphs and cuda)
        self.use_compile = backend == "inductor"
        # batch 1 on a compiled step: matrix-vector products written as multiply-and-sum, which the
        # compiler turns into one tuned reduction kernel per matrix instead of a library GEMM call
        self.reduce_gemv = (self.use_compile and os.environ.get("MC_JUPYTER_FAST_GEMV", "reduce") == "reduce") \
            if reduce_gemv is None else (reduce_gemv and self.use_compile)
        self._cos = self._sin = None
        self._table_rows: Optional[int] = None       # rows of the rotary tables (None: the model's positions)
        self._global_tuning = False                  # benchmarks only: the tuning flag set globally (old form)
        self._states: Dict[Tuple[int, int, Sampling], _State] = {}
        self._step_fn: Optional[Callable] = None
        self._lock = threading.Lock()
        self.notes: List[str] = []
        #: the last call's timing: prompt and new tokens, seconds to the first token, and the decode
        #: after it alone (what a stream's footer shows)
        self.last_stats: Dict[str, Any] = {}

    @property
    def weight_bytes(self) -> int:
        """Bytes of the weights the step reads (the layers' matrices, norms, lm_head)."""
        total = self.head.nbytes + self.norm.numel() * self.norm.element_size()
        for layer in self.layers:
            total += sum(w.nbytes for w in (layer.qkv, layer.o, layer.gu, layer.down))
            total += (layer.ln1.numel() + layer.ln2.numel()) * layer.ln1.element_size()
        return total

    # -- tables ------------------------------------------------------------------------------------
    def _tables(self, length: int) -> None:
        import torch
        if self._cos is not None and self._cos.shape[0] >= length:
            return
        # sized once for the model's positions (a few MiB): captured graphs read these very tensors,
        # so new ones (a longer call past 8192) drop every captured graph first
        n = max(length, self._table_rows or min(self.max_positions, 8192))
        self._states.clear()
        with torch.no_grad():
            pos = torch.arange(n, device=self.device)[None]
            probe = torch.zeros(1, device=self.device, dtype=self.dtype)
            cos, sin = self.rotary(probe, pos)
        self._cos, self._sin = cos[0].contiguous(), sin[0].contiguous()     # [n, head_dim], model dtype

    # -- the step ----------------------------------------------------------------------------------
    def _forward(self, s: _State):
        """Logits (float32) for ``s.tokens`` at ``s.pos``, writing k/v into slot ``s.slot``."""
        import torch.nn.functional as F
        b = s.batch
        if b == 1 and self.reduce_gemv:
            def linear(h, w, bias=None):
                out = (h.unsqueeze(-2).float() * w.float()).sum(-1).to(h.dtype)
                return out if bias is None else out + bias
        else:
            linear = F.linear
        x = F.embedding(s.tokens, self.embed)                         # [B, H]
        cos = self._cos.index_select(0, s.pos)[:, None, None, :]      # [B, 1, 1, D]
        sin = self._sin.index_select(0, s.pos)[:, None, None, :]
        mask = s.valid[:, None, None, :]                              # [B, 1, 1, L]
        for i, layer in enumerate(self.layers):
            h = _rms(x, layer.ln1, layer.eps1)
            qkv = linear(h, layer.weight("qkv"), layer.bqkv)
            q, k, v = qkv.split(layer.split, dim=-1)
            q = q.view(b, self.heads, 1, self.head_dim)
            k = k.view(b, self.kv_heads, 1, self.head_dim)
            v = v.view(b, self.kv_heads, 1, self.head_dim)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            s.k[i].index_copy_(2, s.slot, k)
            s.v[i].index_copy_(2, s.slot, v)
            a = F.scaled_dot_product_attention(q, s.k[i], s.v[i], attn_mask=mask, scale=layer.scaling,
                                               enable_gqa=self.kv_heads != self.heads)
            x = x + linear(a.reshape(b, self.heads * self.head_dim), layer.weight("o"), layer.bo)
            h = _rms(x, layer.ln2, layer.eps2)
            gate, up = linear(h, layer.weight("gu")).split(layer.inter, dim=-1)
            x = x + linear(F.silu(gate) * up, layer.weight("down"))
        x = _rms(x, self.norm, self.norm_eps)
        return linear(x, self.lm_head).float()

    def _forward_triton(self, s: _State):
        """The same step with the Triton kernels (five launches a layer); writes ``s.logits`` and marks
        the slot in ``s.valid`` (the attention kernel does)."""
        import torch.nn.functional as F

        from . import fast_decode_kernels as K
        x = F.embedding(s.tokens, self.embed)                         # [B, H]
        for i, layer in enumerate(self.layers):
            qkv = K.gemv(x, layer.qkv, pro=K.PRO_RMS, ln=layer.ln1, eps=layer.eps1, bias=layer.bqkv)
            a = K.attention(qkv, self._cos, self._sin, s.pos, s.slot, s.valid_u8, s.k[i], s.v[i],
                            self.heads, self.kv_heads, self.head_dim, layer.scaling)
            x = K.gemv(a, layer.o, bias=layer.bo, res=x)
            gu = K.gemv(x, layer.gu, pro=K.PRO_RMS, ln=layer.ln2, eps=layer.eps2)
            x = K.gemv(gu, layer.down, pro=K.PRO_SILU, inter=layer.inter, res=x)
        return K.gemv(x, self.head, pro=K.PRO_RMS, ln=self.norm, eps=self.norm_eps, out=s.logits)

    def _choose(self, s: _State, logits):
        """transformers' processors, in its order, then greedy or a categorical draw."""
        import torch
        logits = self._process(s, logits)
        if not s.sampling.do_sample:
            return logits.argmax(-1)
        probs = logits.softmax(-1)
        noise = torch.empty_like(probs).exponential_()
        return (probs / noise).argmax(-1)

    @staticmethod
    def _process(s: _State, logits):
        """The logits processors transformers' ``generate`` applies, in its order, as device code."""
        import torch
        sp = s.sampling
        if sp.use_penalty:
            penalized = torch.where(logits < 0, logits * s.penalty, logits / s.penalty)
            logits = torch.where(s.seen, penalized, logits)
        if sp.use_min_new and s.eos.numel():
            early = (s.generated < s.min_new)                                    # [1]
            block = torch.zeros_like(logits, dtype=torch.bool)
            block[:, s.eos] = True
            logits = logits.masked_fill(block & early, float("-inf"))
        if not sp.do_sample:
            return logits
        logits = logits / s.temperature
        if sp.top_k:
            kth = torch.topk(logits, min(sp.top_k, logits.shape[-1]))[0][..., -1, None]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if sp.use_top_p:
            sorted_logits, order = torch.sort(logits, descending=False)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop = cum <= (1 - s.top_p)
            drop[..., -1:] = False
            logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        return logits

    def _step(self, s: _State) -> None:
        """One whole decode step on the device: forward, choose, bookkeeping (in-place on ``s``)."""
        import torch
        if self.backend == "triton":
            logits = self._forward_triton(s)
        else:
            s.valid.index_fill_(1, s.slot, True)
            logits = self._forward(s)
            s.logits.copy_(logits)
        nxt = self._choose(s, logits)
        if s.eos.numel():
            nxt = torch.where(s.finished, s.pad, nxt)
            s.finished |= torch.isin(nxt, s.eos)
        if s.seen is not None:
            s.seen.scatter_(1, nxt[:, None], True)
        s.tokens.copy_(nxt)
        s.pos.add_(1)
        s.slot.add_(1)
        s.generated.add_(1)

    def _runner(self, s: _State) -> Callable[[], None]:
        """The step as one call: a replayed CUDA graph on CUDA, plain tensor code elsewhere."""
        import torch
        if not self.use_graphs:
            return lambda: self._step(s)
        if s.graph is None:
            step = self._step
            if self.use_compile:
                if self._step_fn is None:
                    try:        # tuned kernels for this step only: the kernel's global settings stay as they are
                        if self._global_tuning:        # the form before f8ee0e8 (benchmarks compare the two)
                            import torch._inductor.config as inductor
                            inductor.coordinate_descent_tuning = True
                            self._step_fn = torch.compile(self._step, fullgraph=False, dynamic=False)
                        else:
                            self._step_fn = torch.compile(self._step, fullgraph=False, dynamic=False,
                                                          options={"coordinate_descent_tuning": True})
                    except Exception as e:   # no compiler here: the graph of the plain step still helps
                        self.notes.append(f"torch.compile unavailable ({type(e).__name__}); eager step in a CUDA graph")
                        self._step_fn = self._step
                        self.reduce_gemv = False       # multiply-and-sum pays only when compiled
                step = self._step_fn
            saved = self._save(s)
            rng = torch.cuda.get_rng_state(self.device)    # warm-up and capture draw numbers: give them back,
            side = torch.cuda.Stream()                     # so a seed gives the same text on the first call
            side.wait_stream(torch.cuda.current_stream())
            try:
                with torch.cuda.stream(side):
                    for _ in range(3):           # warm up (and compile) outside the capture
                        step(s)
                torch.cuda.current_stream().wait_stream(side)
                self._restore(s, saved)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    step(s)
            except Exception as e:
                if step is not self._step:      # compiled code that cannot be captured: the plain step
                    self.notes.append(f"compiled step not capturable ({type(e).__name__}: {e}); eager step")
                    self._step_fn = self._step
                    self.reduce_gemv = False
                    self._restore(s, saved)
                    torch.cuda.set_rng_state(rng, self.device)
                    return self._runner(s)
                if self.backend == "triton":    # kernels that fail here: the plain step (same weights)
                    self.notes.append(f"Triton step failed ({type(e).__name__}: {str(e)[:300]}); eager step")
                    self.backend = "eager"
                    self._restore(s, saved)
                    torch.cuda.set_rng_state(rng, self.device)
                    torch.cuda.synchronize(self.device)
                    return self._runner(s)
                raise
            self._restore(s, saved)
            torch.cuda.set_rng_state(rng, self.device)
            s.graph = graph
        return s.graph.replay

    @staticmethod
    def _save(s: _State):
        names = ("valid", "tokens", "pos", "slot", "generated", "finished", "seen")
        return {n: getattr(s, n).clone() for n in names if getattr(s, n) is not None}

    @staticmethod
    def _restore(s: _State, saved) -> None:
        for n, t in saved.items():
            getattr(s, n).copy_(t)

    # -- a call ------------------------------------------------------------------------------------
    def _state(self, batch: int, length: int, sampling: Sampling) -> _State:
        key = (batch, length, sampling)
        if key not in self._states:
            if len(self._states) >= 4:     # a few shapes at most: drop the oldest (and its graph)
                self._states.pop(next(iter(self._states)))
            self._states[key] = _State(self, batch, length, sampling)
        return self._states[key]

    def _prefill(self, s: _State, input_ids, attention_mask):
        """The model's own forward over the prompt; its k/v copied into the static cache."""
        n = input_ids.shape[1]
        position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True, logits_to_keep=1)
        cache = out.get("cache", None) if hasattr(out, "get") else None
        if cache is None:
            cache = out.past_key_values
        for i in range(len(self.layers)):
            keys, values = _layer_kv(cache, i)
            s.k[i].zero_()
            s.v[i].zero_()
            s.k[i][:, :, :n].copy_(keys)
            s.v[i][:, :, :n].copy_(values)
        s.valid.zero_()
        s.valid[:, :n].copy_(attention_mask.bool())
        s.pos.copy_(attention_mask.long().sum(-1))
        s.slot.fill_(n)
        s.generated.zero_()
        s.finished.zero_()
        if s.seen is not None:
            s.seen.zero_()
            s.seen.scatter_(1, input_ids, True)
        return out.logits[:, -1, :].float()

    def generate(self, input_ids, attention_mask, max_new_tokens: int, *, pad_token_id: int = 0,
                 temperature: Optional[float] = None, do_sample: bool = False, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, repetition_penalty: Optional[float] = None,
                 min_new_tokens: int = 0, stop: Optional[threading.Event] = None,
                 teacher_tokens=None) -> Iterator[Any]:
        """Yield the new tokens of each step (a [batch] tensor on the device) until all rows ended.

        ``teacher_tokens`` ([batch, n], for checks): feed these instead of the chosen tokens and yield
        each step's float32 logits instead.
        """
        import torch
        started = time.perf_counter()
        batch, n = input_ids.shape
        sampling = Sampling(do_sample=bool(do_sample), top_k=int(top_k or 0) if do_sample else 0,
                            use_top_p=bool(do_sample and top_p is not None and top_p < 1.0),
                            use_penalty=repetition_penalty is not None and repetition_penalty != 1.0,
                            use_min_new=min_new_tokens > 0)
        length = -(-(n + max_new_tokens) // CACHE_ROUNDING) * CACHE_ROUNDING
        if self.sliding and length > self.sliding:
            raise InputError(f"fast_decode: this Mistral model attends over a sliding window of {self.sliding} "
                             f"tokens, shorter than prompt + new tokens ({n + max_new_tokens}).\n  Ask for fewer "
                             f"tokens (`max_output_length`), or leave fast_decode off.")
        if n + max_new_tokens > self.max_positions:
            raise InputError(f"fast_decode: prompt + new tokens ({n + max_new_tokens}) exceed the model's "
                             f"{self.max_positions} positions.\n  Shorten the prompt or lower `max_output_length`.")
        with self._lock, torch.inference_mode():
            self._tables(length)
            s = self._state(batch, length, sampling)
            s.temperature.fill_(float(temperature) if do_sample and temperature else 1.0)
            s.top_p.fill_(float(top_p) if sampling.use_top_p else 1.0)
            s.penalty.fill_(float(repetition_penalty) if sampling.use_penalty else 1.0)
            s.min_new.fill_(int(min_new_tokens))
            s.pad.fill_(int(pad_token_id if pad_token_id is not None else 0))
            logits = self._prefill(s, input_ids, attention_mask)
            if teacher_tokens is not None:
                yield logits
                run = self._runner(s)
                for j in range(teacher_tokens.shape[1] - 1):
                    s.tokens.copy_(teacher_tokens[:, j])
                    run()
                    yield s.logits.clone()
                return
            # the first token: chosen from the prefill's logits with the same processors
            first = self._choose(s, logits)
            if s.eos.numel():
                s.finished |= torch.isin(first, s.eos)
            if s.seen is not None:
                s.seen.scatter_(1, first[:, None], True)
            s.tokens.copy_(first)
            s.generated.fill_(1)
            stats = self.last_stats = {"batch": batch, "prompt_tokens": n, "new_tokens": 1}
            self._sync()
            stats["first_token_s"] = time.perf_counter() - started
            first_at = time.perf_counter()
            yield first.clone()
            run = self._runner(s)
            steps = 0
            try:
                for i in range(1, max_new_tokens):
                    if stop is not None and stop.is_set():
                        return
                    if s.eos.numel() and i % 16 == 0 and bool(s.finished.all()):
                        return
                    run()
                    steps += 1
                    yield s.tokens.clone()
            finally:      # the decode alone: the steps after the first token, over their time
                self._sync()
                stats["new_tokens"] = 1 + steps
                stats["decode_s"] = time.perf_counter() - first_at
                stats["decode_tokens_per_s"] = steps * batch / stats["decode_s"] if steps and stats["decode_s"] else None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch
            torch.cuda.synchronize(self.device)

    def generate_ids(self, input_ids, attention_mask, max_new_tokens: int, **kwargs):
        """All new tokens as one [batch, new] tensor (rows that ended are padded), as ``generate`` gives."""
        import torch
        steps = list(self.generate(input_ids, attention_mask, max_new_tokens, **kwargs))
        out = torch.stack(steps, dim=1)
        if self.eos_ids.numel():            # trim the tail every row spent finished (generate stops there)
            ended = torch.isin(out, self.eos_ids)
            done = ended.cumsum(1) > 0
            keep = int((~done).sum(0).nonzero().max()) + 2 if bool((~done).any()) else 1
            out = out[:, :min(keep, out.shape[1])]
        return out


def _layer_kv(cache: Any, i: int):
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return layers[i].keys, layers[i].values
    return cache[i][0], cache[i][1]     # older tuple-style caches
