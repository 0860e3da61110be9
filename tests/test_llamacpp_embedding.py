"""text-embedding through `driver: llamacpp`: a tiny Llama written as GGUF, embedded by llama.cpp, against
llama_cpp's own `Llama.embed` on the same file."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mc_jupyter as mc
from mc_jupyter.errors import UserError
from mc_jupyter.registry import Registry
from tests import tiny_models

llama_cpp = pytest.importorskip("llama_cpp", reason="the llamacpp extra (llama-cpp-python) is installed by .ci/run")


@pytest.fixture(scope="module")
def gguf_file(models, tmp_path_factory):
    return tiny_models.build_gguf(models["causal"], tmp_path_factory.mktemp("gguf") / "tiny-llama.f32.gguf")


@pytest.fixture(scope="module")
def raw(gguf_file):
    """llama_cpp itself on the same file, as the driver loads it (embedding=True, the same context)."""
    llm = llama_cpp.Llama(model_path=str(gguf_file), embedding=True, n_ctx=128, n_batch=128, n_ubatch=128,
                          n_threads=2, verbose=False)
    yield llm
    llm.close()


def compose(gguf_file, params: str = "", options: str = "{n_ctx: 128, n_threads: 2}", fmt: str = ", format: gguf"
            ) -> Registry:
    reg = Registry()
    mc.compose(f"""
components:
  - id: e
    type: model
    task: text-embedding
    driver: llamacpp
    model: {{provider: local, path: {gguf_file}{fmt}}}
    options: {options}
    action:
      text: ${{input.text}}
{params}
""", registry=reg)
    return reg


def embed(reg, text):
    return mc.run(inputs={"text": text}, registry=reg).output


def test_vectors_are_llama_cpps_own_mean_pooled_and_normalised(gguf_file, raw, models):
    from transformers import AutoConfig

    n_embd = AutoConfig.from_pretrained(models["causal"]).hidden_size
    reg = compose(gguf_file)
    try:
        first = embed(reg, "The sky is blue")
        again = embed(reg, "The sky is blue")
        other = embed(reg, "a cat sat on the mat")
        row = reg.snapshot()[0]
    finally:
        reg.down()
    assert first["dimensions"] == len(first["embedding"]) == n_embd == raw.n_embd()
    assert abs(math.sqrt(sum(x * x for x in first["embedding"])) - 1) < 1e-5
    assert first == again
    assert np.max(np.abs(np.array(first["embedding"]) - np.array(other["embedding"]))) > 1e-3
    # the raw library call: a Llama GGUF does not pool (pooling none), so a vector per token, meaned here
    assert raw.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_NONE
    tokens = np.array(raw.embed("The sky is blue"))
    assert tokens.ndim == 2 and tokens.shape[1] == n_embd
    expected = tokens.mean(axis=0)
    expected /= np.linalg.norm(expected)
    assert np.max(np.abs(np.array(first["embedding"]) - expected)) < 1e-5
    assert row["driver"] == "llamacpp" and row["dtype"] == "gguf"


def test_a_list_pooling_and_normalize_false(gguf_file, raw):
    reg = compose(gguf_file, params="      params: {pooling: max, normalize: false}")
    try:
        out = mc.run(inputs={"text": ["The sky is blue", "Hello world"]}, registry=reg).output
    finally:
        reg.down()
    assert [o["dimensions"] for o in out] == [raw.n_embd()] * 2
    for text, got in zip(["The sky is blue", "Hello world"], out):
        expected = np.array(raw.embed(text)).max(axis=0)
        assert np.max(np.abs(np.array(got["embedding"]) - expected)) < 1e-5
    assert abs(np.linalg.norm(out[0]["embedding"]) - 1) > 1e-3      # not normalised


def test_cls_pooling_and_max_input_length(gguf_file, raw):
    reg = compose(gguf_file, params="      params: {pooling: cls, max_input_length: 2}")
    try:
        long = embed(reg, "The sky is blue and the grass is green")
        short = embed(reg, "The sky is blue")
    finally:
        reg.down()
    first = np.array(raw.embed("The sky is blue")[0])      # the first token's vector
    assert np.max(np.abs(np.array(short["embedding"]) - first / np.linalg.norm(first))) < 1e-5
    assert np.max(np.abs(np.array(long["embedding"]) - np.array(short["embedding"]))) < 1e-5   # same first tokens


def test_a_model_that_pools_itself_refuses_another_pooling(gguf_file, raw):
    reg = compose(gguf_file, options="{n_ctx: 128, n_threads: 2, pooling_type: 1}")     # llama.cpp's mean
    try:
        out = embed(reg, "The sky is blue")
        pooled = np.array(raw.embed("The sky is blue")).mean(axis=0)
        assert np.max(np.abs(np.array(out["embedding"]) - pooled / np.linalg.norm(pooled))) < 1e-4
        with pytest.raises(UserError, match=r"pools its own vectors \(mean\), so `pooling: max` cannot be applied"):
            reg.get("e").driver.run({"text": "The sky is blue", "params": {"pooling": "max"}})
    finally:
        reg.down()


def test_model_composes_own_shape_without_format(gguf_file, raw):
    reg = compose(gguf_file, fmt="")
    try:
        out = embed(reg, "The sky is blue")
    finally:
        reg.down()
    assert out["dimensions"] == raw.n_embd()


def test_not_a_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(UserError, match="llama.cpp could not load"):
        compose(bad)
