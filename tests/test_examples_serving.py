"""examples/serving.ipynb and examples/custom_driver.ipynb run top to bottom in a real kernel.

The kernel inherits this process's environment (the offline tiny-model cache of conftest.py), so
every stand-in and variable is set up before the notebook is executed.
"""

import re
import time

import psutil
import pytest

from tests import tiny_models
from tests.test_examples import EXAMPLES, execute, outputs_of, text_of

pytestmark = pytest.mark.slow   # real kernels and notebooks: CI runs these (pytest -m slow)

GGUF_REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"
GGUF_FILE = "SmolLM2-135M-Instruct-Q4_K_M.gguf"


def llama_servers_on(port: int) -> list:
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if p.info["status"] != psutil.STATUS_ZOMBIE and "llama_cpp.server" in cmd and str(port) in cmd:
            found.append(p.info["pid"])
    return found


def test_serving_dry_runs_the_spec_servers_and_streams_from_a_managed_llama_cpp_server(
        models, hub_cache, tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is installed by .ci/run")
    from tests.test_servers import free_port
    folder = tmp_path / "gguf-repo"
    folder.mkdir()
    tiny_models.build_gguf(models["causal"], folder / GGUF_FILE)
    tiny_models.place_in_hub_cache(hub_cache, GGUF_REPO, folder)
    port = free_port()
    monkeypatch.setenv("LLAMA_PORT", str(port))

    start = time.monotonic()
    nb = execute("serving.ipynb")
    took = time.monotonic() - start

    for name, kind in (("vllm", "http-server"), ("ollama", "http-server"), ("tgi", "http-client")):
        plan = text_of(outputs_of(nb, f"  id: {name}\n"))
        assert f"would load `{name}`: {kind}" in plan, plan
    assert f"port:  {port}" in text_of(outputs_of(nb, "hf_hub_download("))

    compared = text_of(outputs_of(nb, 'print("served:"'))
    served = re.search(r"served: (.*)", compared).group(1)
    assert served not in ("''", "None") and served.startswith("'"), compared
    assert "same text in the kernel: True" in compared
    assert "streamed and whole replies are the same: True" in text_of(outputs_of(nb, "whole.output == served.output"))

    logs = text_of(outputs_of(nb, "%mc logs llama"))
    assert "POST /v1/chat/completions" in logs, logs
    status = text_of(outputs_of(nb, "%mc status"))
    assert "llama" in status and "client" in status
    assert f"still running on port {port}: 0" in text_of(outputs_of(nb, "import psutil"))
    assert llama_servers_on(port) == []          # nothing outlives the notebook's kernel
    assert took < 120, took


def test_custom_driver_notebook_runs_a_users_class_and_an_onnx_export_like_the_hf_driver(models):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    start = time.monotonic()
    nb = execute("custom_driver.ipynb")
    took = time.monotonic() - start

    runs = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%run shout")]
    shouted = [text_of(c.outputs) for c in runs]
    assert "CUSTOM MODELS PLUG IN LIKE BUILT-IN ONES!" in shouted[0], shouted
    assert "ONE WORD AT A TIME" in shouted[1], shouted

    table = text_of(outputs_of(nb, "labels agree")).splitlines()
    rows = [line for line in table if line.startswith("onnx=")]
    assert len(rows) == 4
    for row in rows:
        onnx_label, hf_label = re.match(r"onnx=(\S+)\s+hf=(\S+)", row).groups()
        assert onnx_label == hf_label and onnx_label in ("POSITIVE", "NEGATIVE")
    assert "labels agree: True" in table
    gap = float(next(line for line in table if line.startswith("largest score difference")).split(":")[1])
    assert gap < 1e-4
    assert "onnxruntime · cpu" in text_of(outputs_of(nb, "%mc status"))
    assert not (EXAMPLES / "shout.py").exists() and not (EXAMPLES / "sst2").exists()   # written to a temp folder
    assert took < 120, took
