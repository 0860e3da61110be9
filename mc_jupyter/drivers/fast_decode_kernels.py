"""Triton kernels of the fast decode step (``fast_decode: true`` on CUDA), plain and quantized weights.

A decode step at batch 1 reads every weight once and does little else, so its time is the weights'
bytes over the memory bandwidth plus what runs between the matrix-vector products. These kernels keep
both small: per layer five launches, each reading its weights once:

1. ``gemv`` with the RMS norm folded in: ``qkv = W_qkv @ (rms(x) * ln1)`` (+ bias); the norm's scale
   ``1/rms(x)`` is a scalar per row of ``x``, so it is accumulated in the same pass and applied once at
   the end (no normalised copy of ``x`` is written);
2. ``attention``: rotary embedding of q and k from the tables, the new k/v written into the static
   cache at the step's slot, and attention of each query head over the positions filled so far
   (the loop stops at the slot: the work grows with the position, not with the cache's length);
3. ``gemv`` with the residual added on the way out: ``x = x + W_o @ a``;
4. ``gemv`` with the norm again: ``gu = W_gu @ (rms(x) * ln2)``;
5. ``gemv`` with silu(gate) * up computed as the input is read, and the residual: ``x = x + W_down @ ...``;

and the final norm and ``lm_head`` are one more ``gemv`` writing float32 logits.

Weights come in three kinds (:mod:`quant_weights`): the model's own float matrices, int8 (one float32
scale per output row, stored as ``q + 128`` in uint8) and int4 (two values a byte, the even column in
the low nibble; a scale and a minimum per group of columns, ``w = q * scale + min``). Dequantizing is
fused into the product: the integers become floats by OR-ing them into the mantissa of 2^23 (a bit
operation and a subtraction instead of a conversion instruction, which the GPU runs at a quarter rate).

Batch 1 uses a multiply-and-add kernel with the reduction deferred to the end of the row; batches of 2
and more use ``tl.dot`` on tiles of 16 rows (the weight tile is read once for all of them).

``reference_*`` functions are the same arithmetic in plain torch: the CPU path and the tests' oracle.
Importing this module works without Triton (``available()`` says whether the kernels exist).
"""

from __future__ import annotations

import os
from typing import Optional

try:      # the kernels need Triton (shipped with CUDA builds of torch); the references do not
    import triton
    import triton.language as tl
except Exception:   # pragma: no cover - CPU-only installs
    triton = None
    tl = None

PLAIN, INT8, INT4 = 0, 1, 2            # weight kinds
PRO_NONE, PRO_RMS, PRO_SILU = 0, 1, 2  # what is done to the input as it is read
MAGIC = 0x4B000000                      # the bits of 2^23 as float32
BATCH_TILE = 16                         # rows of x per program in the batched (tl.dot) kernel


def available() -> bool:
    return triton is not None


#: fixed block sizes instead of autotuning (set by the CPU tests, which run the kernels in Triton's
#: interpreter, where nothing can be timed): {"vec": dict(BLOCK_N=.., BLOCK_K=..), "mat": dict(BLOCK_N=..)}
FIXED_CONFIG: Optional[dict] = None


def _vec_configs():
    out = []
    for bn, bk, warps, stages in ((4, 512, 4, 3), (8, 512, 4, 3), (16, 256, 4, 3), (8, 1024, 8, 2),
                                  (2, 1024, 4, 3)):
        out.append(triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps, num_stages=stages))
    return out


def _mat_configs():
    out = []
    for bn, warps, stages in ((32, 4, 3), (64, 4, 3), (64, 4, 4), (128, 8, 3)):
        out.append(triton.Config({"BLOCK_N": bn}, num_warps=warps, num_stages=stages))
    return out


if triton is not None:
    _MAGIC = tl.constexpr(MAGIC)        # (kernels may only read globals that are constexpr)

    @triton.jit
    def _load_x(x_ptr, k, km, ln_ptr, inter, PRO: tl.constexpr):
        """The input at columns ``k`` as float32 after the prologue, and its raw square (for the norm)."""
        x = tl.load(x_ptr + k, mask=km, other=0.0).to(tl.float32)
        sq = x * x
        if PRO == 1:
            x = x * tl.load(ln_ptr + k, mask=km, other=0.0).to(tl.float32)
        if PRO == 2:
            up = tl.load(x_ptr + inter + k, mask=km, other=0.0).to(tl.float32)
            x = x / (1.0 + tl.exp(-x)) * up
        return x, sq

    @triton.jit
    def _finish(out, rows, rmask, k_total, ss, s_ptr, bias_ptr, res_ptr, out_ptr, eps,
                WKIND: tl.constexpr, PRO: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr):
        if PRO == 1:
            out = out * tl.rsqrt(ss / k_total + eps)
        if WKIND == 1:
            out = out * tl.load(s_ptr + rows, mask=rmask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            out = out + tl.load(bias_ptr + rows, mask=rmask, other=0.0).to(tl.float32)
        if HAS_RES:      # the product rounded to the residual's dtype first, as the model's own add does
            out = out.to(res_ptr.dtype.element_ty).to(tl.float32) + \
                tl.load(res_ptr + rows, mask=rmask, other=0.0).to(tl.float32)
        tl.store(out_ptr + rows, out.to(out_ptr.dtype.element_ty), mask=rmask)

    @triton.autotune(configs=_vec_configs(), key=["N", "K", "WKIND", "PRO"])
    @triton.jit
    def _gemv_vec(x_ptr, w_ptr, s_ptr, m_ptr, ln_ptr, bias_ptr, res_ptr, out_ptr,
                  N, K, w_stride, s_stride, inter, eps,
                  WKIND: tl.constexpr, PRO: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr,
                  GROUP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """One row of x times W^T ([N, K]); program i owns output rows i*BLOCK_N ... (batch 1)."""
        pid = tl.program_id(0)
        rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        rmask = rows < N
        if WKIND == 2:
            # a byte holds columns c (low nibble) and c + GROUP/2 (high) of its group; the tile is
            # [rows, groups, GROUP/2 bytes], so each group's scale and minimum are loaded once and
            # broadcast, and both halves of the input are contiguous runs
            NG: tl.constexpr = BLOCK_K // GROUP
            HG: tl.constexpr = GROUP // 2
            gg = tl.arange(0, NG)
            cc = tl.arange(0, HG)
            acc3 = tl.zeros([BLOCK_N, NG, HG], dtype=tl.float32)
            ss2 = tl.zeros([NG, HG], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                gidx = k0 // GROUP + gg
                gm = gidx < K // GROUP
                col = gidx[:, None] * GROUP + cc[None, :]
                cm = gm[:, None] & (cc[None, :] < HG)
                xl, sql = _load_x(x_ptr, col, cm, ln_ptr, inter, PRO)
                xh, sqh = _load_x(x_ptr, col + HG, cm, ln_ptr, inter, PRO)
                ss2 += sql + sqh
                m3 = rmask[:, None, None] & cm[None, :, :]
                byte = gidx[:, None] * HG + cc[None, :]
                p = tl.load(w_ptr + rows[:, None, None] * w_stride + byte[None, :, :], mask=m3, other=0)
                p = p.to(tl.int32)
                lo = ((p & 15) | _MAGIC).to(tl.float32, bitcast=True) - 8388608.0
                hi = ((p >> 4) | _MAGIC).to(tl.float32, bitcast=True) - 8388608.0
                g = rows[:, None] * s_stride + gidx[None, :]
                m2 = rmask[:, None] & gm[None, :]
                sc = tl.load(s_ptr + g, mask=m2, other=0.0).to(tl.float32)[:, :, None]
                mn = tl.load(m_ptr + g, mask=m2, other=0.0).to(tl.float32)[:, :, None]
                acc3 += (lo * sc + mn) * xl[None, :, :] + (hi * sc + mn) * xh[None, :, :]
            out = tl.sum(tl.sum(acc3, axis=2), axis=1)
            sst = tl.sum(tl.sum(ss2, axis=1), axis=0)
        else:
            ks0 = tl.arange(0, BLOCK_K)
            acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
            ss = tl.zeros([BLOCK_K], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                ks = k0 + ks0
                km = ks < K
                x, sq = _load_x(x_ptr, ks, km, ln_ptr, inter, PRO)
                ss += sq
                w = tl.load(w_ptr + rows[:, None] * w_stride + ks[None, :],
                            mask=rmask[:, None] & km[None, :], other=0)
                if WKIND == 1:
                    wf = (w.to(tl.int32) | _MAGIC).to(tl.float32, bitcast=True) - 8388736.0   # 2^23 + 128
                else:
                    wf = w.to(tl.float32)
                acc += wf * x[None, :]
            out = tl.sum(acc, axis=1)
            sst = tl.sum(ss, axis=0)
        _finish(out, rows, rmask, K, sst, s_ptr, bias_ptr, res_ptr, out_ptr, eps, WKIND, PRO, HAS_BIAS, HAS_RES)

    @triton.jit
    def _load_xt(x_ptr, x_stride, bs, bmask, k, km, ln_ptr, inter, PRO: tl.constexpr):
        """x^T at columns ``k`` for the batch rows ``bs``: [len(k), BLOCK_B] float32 after the prologue."""
        ptr = x_ptr + bs[None, :] * x_stride + k[:, None]
        m = bmask[None, :] & km[:, None]
        x = tl.load(ptr, mask=m, other=0.0).to(tl.float32)
        sq = tl.sum(x * x, axis=0)
        if PRO == 1:
            x = x * tl.load(ln_ptr + k, mask=km, other=0.0).to(tl.float32)[:, None]
        if PRO == 2:
            up = tl.load(ptr + inter, mask=m, other=0.0).to(tl.float32)
            x = x / (1.0 + tl.exp(-x)) * up
        return x, sq

    @triton.autotune(configs=_mat_configs(), key=["N", "K", "WKIND", "PRO"])
    @triton.jit
    def _gemv_mat(x_ptr, w_ptr, s_ptr, m_ptr, ln_ptr, bias_ptr, res_ptr, out_ptr,
                  B, N, K, x_stride, res_stride, out_stride, w_stride, s_stride, inter, eps,
                  WKIND: tl.constexpr, PRO: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr,
                  GROUP: tl.constexpr, ACT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
                  BLOCK_N: tl.constexpr):
        """Up to BLOCK_B rows of x times W^T with tl.dot; grid (N / BLOCK_N, B / BLOCK_B)."""
        pid = tl.program_id(0)
        rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        rmask = rows < N
        bs = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        bmask = bs < B
        acc = tl.zeros([BLOCK_N, BLOCK_B], dtype=tl.float32)
        ss = tl.zeros([BLOCK_B], dtype=tl.float32)
        if WKIND == 2:       # BLOCK_K == GROUP: one group a step, its scale and minimum applied per row
            HALF: tl.constexpr = BLOCK_K // 2
            j = tl.arange(0, HALF)
            for k0 in range(0, K, BLOCK_K):
                kl = k0 + j                          # low nibbles: the group's first half; high: the second
                km = kl < K
                xe, sqe = _load_xt(x_ptr, x_stride, bs, bmask, kl, km, ln_ptr, inter, PRO)
                xo, sqo = _load_xt(x_ptr, x_stride, bs, bmask, kl + HALF, km, ln_ptr, inter, PRO)
                ss += sqe + sqo
                xe = xe.to(ACT)
                xo = xo.to(ACT)
                p = tl.load(w_ptr + rows[:, None] * w_stride + (k0 // 2 + j)[None, :],
                            mask=rmask[:, None] & km[None, :], other=0).to(tl.int32)
                lo = ((p & 15) | _MAGIC).to(tl.float32, bitcast=True) - 8388608.0
                hi = ((p >> 4) | _MAGIC).to(tl.float32, bitcast=True) - 8388608.0
                d = tl.dot(lo.to(ACT), xe) + tl.dot(hi.to(ACT), xo)
                xsum = tl.sum(xe.to(tl.float32), axis=0) + tl.sum(xo.to(tl.float32), axis=0)
                g = rows * s_stride + k0 // GROUP
                sc = tl.load(s_ptr + g, mask=rmask, other=0.0).to(tl.float32)
                mn = tl.load(m_ptr + g, mask=rmask, other=0.0).to(tl.float32)
                acc += sc[:, None] * d + mn[:, None] * xsum[None, :]
        else:
            ks0 = tl.arange(0, BLOCK_K)
            for k0 in range(0, K, BLOCK_K):
                ks = k0 + ks0
                km = ks < K
                x, sq = _load_xt(x_ptr, x_stride, bs, bmask, ks, km, ln_ptr, inter, PRO)
                ss += sq
                w = tl.load(w_ptr + rows[:, None] * w_stride + ks[None, :],
                            mask=rmask[:, None] & km[None, :], other=0)
                if WKIND == 1:      # q + 128 in uint8: q itself is exact in bf16/fp16; the scale comes last
                    w = (w.to(tl.int32) - 128).to(ACT)
                else:
                    w = w.to(ACT)
                acc += tl.dot(w, x.to(ACT))
        if PRO == 1:
            acc = acc * tl.rsqrt(ss / K + eps)[None, :]
        if WKIND == 1:
            acc = acc * tl.load(s_ptr + rows, mask=rmask, other=0.0).to(tl.float32)[:, None]
        if HAS_BIAS:
            acc = acc + tl.load(bias_ptr + rows, mask=rmask, other=0.0).to(tl.float32)[:, None]
        m = rmask[:, None] & bmask[None, :]
        if HAS_RES:
            acc = acc.to(res_ptr.dtype.element_ty).to(tl.float32) + \
                tl.load(res_ptr + bs[None, :] * res_stride + rows[:, None], mask=m, other=0.0).to(tl.float32)
        tl.store(out_ptr + bs[None, :] * out_stride + rows[:, None], acc.to(out_ptr.dtype.element_ty), mask=m)

    @triton.jit
    def _attention(qkv_ptr, qkv_stride, cos_ptr, sin_ptr, pos_ptr, slot_ptr, valid_ptr, valid_stride,
                   kc_ptr, vc_ptr, out_ptr, out_stride, L, scale,
                   H: tl.constexpr, KVH: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_L: tl.constexpr):
        """Rotary, cache write and attention of query head ``program_id(1)`` of batch row ``program_id(0)``."""
        b = tl.program_id(0)
        h = tl.program_id(1)
        G: tl.constexpr = H // KVH
        HALF: tl.constexpr = D // 2
        kvh = h // G
        pos = tl.load(pos_ptr + b)
        sl = tl.load(slot_ptr)
        d = tl.arange(0, BLOCK_D)
        dm = d < D
        rot = tl.where(d < HALF, d + HALF, d - HALF)
        sign = tl.where(d < HALF, -1.0, 1.0)
        cos = tl.load(cos_ptr + pos * D + d, mask=dm, other=0.0).to(tl.float32)
        sin = tl.load(sin_ptr + pos * D + d, mask=dm, other=0.0).to(tl.float32)
        row = qkv_ptr + b * qkv_stride
        dt = qkv_ptr.dtype.element_ty
        q = tl.load(row + h * D + d, mask=dm, other=0.0).to(tl.float32)
        q_rot = tl.load(row + h * D + rot, mask=dm, other=0.0).to(tl.float32)
        q = (q * cos + sign * q_rot * sin).to(dt).to(tl.float32)
        k_row = row + H * D + kvh * D
        k = tl.load(k_row + d, mask=dm, other=0.0).to(tl.float32)
        k_rot = tl.load(k_row + rot, mask=dm, other=0.0).to(tl.float32)
        k = (k * cos + sign * k_rot * sin).to(dt).to(tl.float32)
        v = tl.load(row + (H + KVH) * D + kvh * D + d, mask=dm, other=0.0).to(tl.float32)
        cache = (b * KVH + kvh).to(tl.int64) * L * D
        if h % G == 0:          # the group's first head writes the new k/v (the others use theirs in registers)
            tl.store(kc_ptr + cache + sl * D + d, k.to(kc_ptr.dtype.element_ty), mask=dm)
            tl.store(vc_ptr + cache + sl * D + d, v.to(vc_ptr.dtype.element_ty), mask=dm)
            if h == 0:
                tl.store(valid_ptr + b * valid_stride + sl, 1)
        m_i = tl.max(tl.full([BLOCK_L], -1e30, tl.float32), axis=0)
        l_i = tl.sum(tl.zeros([BLOCK_L], tl.float32), axis=0)
        acc = tl.zeros([BLOCK_D], tl.float32)
        lo = tl.arange(0, BLOCK_L)
        for l0 in range(0, sl + 1, BLOCK_L):
            offs = l0 + lo
            inside = offs <= sl
            current = offs == sl
            ok = (tl.load(valid_ptr + b * valid_stride + offs, mask=inside & (offs < sl), other=0) != 0) | current
            m2 = (inside & (offs < sl))[:, None] & dm[None, :]
            kt = tl.load(kc_ptr + cache + offs[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
            kt = tl.where(current[:, None], k[None, :], kt)
            s = tl.sum(kt * q[None, :], axis=1) * scale
            s = tl.where(ok, s, -1e30)
            m_new = tl.maximum(m_i, tl.max(s, axis=0))
            alpha = tl.exp(m_i - m_new)
            p = tl.where(ok, tl.exp(s - m_new), 0.0)
            l_i = l_i * alpha + tl.sum(p, axis=0)
            vt = tl.load(vc_ptr + cache + offs[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
            vt = tl.where(current[:, None], v[None, :], vt)
            acc = acc * alpha + tl.sum(p[:, None] * vt, axis=0)
            m_i = m_new
        tl.store(out_ptr + b * out_stride + h * D + d, (acc / l_i).to(out_ptr.dtype.element_ty), mask=dm)


# -- launchers ---------------------------------------------------------------------------------------
def gemv(x, w, *, pro: int = PRO_NONE, ln=None, eps: float = 0.0, inter: int = 0, bias=None, res=None,
         out=None, out_dtype=None):
    """``prologue(x) @ W^T`` (+ bias) (+ res) for x [B, *] on the GPU; ``w`` is a :class:`QWeight`.

    ``pro``: PRO_RMS multiplies x by ``ln`` and by 1/rms(x) (over x's K columns); PRO_SILU reads the
    gate from x[:, :inter] and the up projection from x[:, inter:] (K == inter).
    """
    import torch
    b = x.shape[0]
    n, k = w.shape
    if b > 1 and x.dtype == torch.float32 and os.environ.get("TRITON_INTERPRET") != "1":
        y = reference_gemv(x, w, pro=pro, ln=ln, eps=eps, inter=inter, bias=bias, res=res, out_dtype=out_dtype)
        return y if out is None else out.copy_(y)
    if out is None:
        out = torch.empty(b, n, device=x.device, dtype=out_dtype or x.dtype)
    wkind = {"plain": PLAIN, "int8": INT8, "int4": INT4}[w.kind]
    dummy = w.data
    s = w.scale if w.scale is not None else dummy
    m = w.mins if w.mins is not None else dummy
    s_stride = w.scale.stride(0) if w.kind == "int4" else 0
    args = (x, w.data, s, m, ln if ln is not None else dummy, bias if bias is not None else dummy,
            res if res is not None else dummy, out)
    flags = dict(WKIND=wkind, PRO=pro, HAS_BIAS=bias is not None, HAS_RES=res is not None,
                 GROUP=w.group or 1)
    assert x.stride(-1) == 1 and out.stride(-1) == 1 and w.data.stride(-1) == 1
    if b == 1:
        kernel, fixed = _gemv_vec, {}
        if FIXED_CONFIG is not None:
            kernel, fixed = _gemv_vec.fn, dict(FIXED_CONFIG["vec"])
        grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)   # noqa: E731
        kernel[grid](*args, n, k, w.data.stride(0), s_stride, inter, eps, **flags, **fixed)
    else:
        kernel, fixed = _gemv_mat, {}
        if FIXED_CONFIG is not None:
            kernel, fixed = _gemv_mat.fn, dict(FIXED_CONFIG["mat"])
        block_k = w.group if w.kind == "int4" else 64
        grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(b, BATCH_TILE))   # noqa: E731
        kernel[grid](*args, b, n, k, x.stride(0), res.stride(0) if res is not None else 0, out.stride(0),
                        w.data.stride(0), s_stride, inter, eps,
                        ACT=tl.bfloat16 if w.act_dtype == torch.bfloat16 else tl.float16,
                        BLOCK_B=BATCH_TILE, BLOCK_K=block_k, **flags, **fixed)
    return out


def attention(qkv, cos, sin, pos, slot, valid_u8, k_cache, v_cache, heads: int, kv_heads: int, head_dim: int,
              scale: float, out=None):
    """The decode step's attention for every batch row and query head (see ``_attention``)."""
    import torch
    b = qkv.shape[0]
    if out is None:
        out = torch.empty(b, heads * head_dim, device=qkv.device, dtype=qkv.dtype)
    block_d = triton.next_power_of_2(head_dim)
    block_l = max(16, 8192 // block_d)         # 64 positions a step at head_dim 128, 128 at 64
    _attention[(b, heads)](qkv, qkv.stride(0), cos, sin, pos, slot, valid_u8, valid_u8.stride(0),
                           k_cache, v_cache, out, out.stride(0), k_cache.shape[2], scale,
                           H=heads, KVH=kv_heads, D=head_dim, BLOCK_D=block_d, BLOCK_L=block_l,
                           num_warps=8 if block_d >= 128 else 4)
    return out


# -- the same arithmetic in torch (CPU path, tests) -----------------------------------------------------
def reference_gemv(x, w, *, pro: int = PRO_NONE, ln=None, eps: float = 0.0, inter: int = 0, bias=None,
                   res=None, out_dtype=None):
    import torch
    xf = x.float()
    if pro == PRO_RMS:
        r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        xf = xf * ln.float() * r
    elif pro == PRO_SILU:
        xf = torch.nn.functional.silu(xf[:, :inter]) * xf[:, inter:]
    y = xf @ w.dequantize(torch.float32).t()
    if bias is not None:
        y = y + bias.float()
    if res is not None:
        y = y.to(res.dtype).float() + res.float()
    return y.to(out_dtype or x.dtype)


def reference_attention(qkv, cos, sin, pos, slot, valid, k_cache, v_cache, heads: int, kv_heads: int,
                        head_dim: int, scale: float):
    """What ``attention`` computes (and writes into the caches and ``valid``), in torch."""
    import torch
    b = qkv.shape[0]
    sl = int(slot)
    dt = qkv.dtype
    q, k, v = qkv.float().split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], -1)
    q = q.view(b, heads, head_dim)
    k = k.view(b, kv_heads, head_dim)
    v = v.view(b, kv_heads, head_dim)
    c = cos.float()[pos][:, None, :]
    s_ = sin.float()[pos][:, None, :]

    def rope(t):
        half = head_dim // 2
        return t * c + torch.cat([-t[..., half:], t[..., :half]], -1) * s_

    q, k = rope(q).to(dt).float(), rope(k).to(dt).float()
    k_cache[:, :, sl] = k.to(k_cache.dtype)
    v_cache[:, :, sl] = v.to(v_cache.dtype)
    valid[:, sl] = True
    keys = k_cache[:, :, :sl + 1].float().repeat_interleave(heads // kv_heads, 1)      # [B, H, sl+1, D]
    values = v_cache[:, :, :sl + 1].float().repeat_interleave(heads // kv_heads, 1)
    scores = torch.einsum("bhd,bhld->bhl", q, keys) * scale
    scores = scores.masked_fill(~valid[:, None, :sl + 1], float("-inf"))
    out = torch.einsum("bhl,bhld->bhd", scores.softmax(-1), values)
    return out.reshape(b, heads * head_dim).to(dt)
