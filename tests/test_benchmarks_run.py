"""The benchmark script runs end to end and prints its table (its timings are not checked here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "tests" / "benchmarks" / "bench_core.py"
HEADER = "| measurement | mc_jupyter | raw | ratio | overhead |"

# set by conftest for this process; the script sets up its own temporary, offline cache
_CACHE_VARS = ("HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.mark.slow
def test_bench_core_runs_and_prints_the_table():
    env = {k: v for k, v in os.environ.items() if k not in _CACHE_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    done = subprocess.run([sys.executable, str(SCRIPT), "--repeats", "2"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"exit code {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr[-4000:]}"
    out = done.stdout
    assert out.startswith("command: python ") and "--repeats 2" in out.splitlines()[0]
    assert HEADER in out

    lines = out.splitlines()
    start = lines.index(HEADER)
    columns = [c.strip() for c in HEADER.strip("|").split("|")]
    ratio_at = columns.index("ratio")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    assert len(rows) >= 7, out
    measurements = " ".join(r[0] for r in rows)
    for what in ("%%compose", "re-run", "%%run", "mc_jupyter.run", "text-generation", "text-embedding"):
        assert what in measurements, f"no `{what}` row in:\n{out}"
    for row in rows:
        assert len(row) == len(columns), row
        assert re.fullmatch(r"\d+\.\d+x", row[ratio_at]), f"ratio `{row[ratio_at]}` is not a number: {row}"
        assert float(row[ratio_at][:-1]) > 0, row
        for cell in (row[1], row[2]):
            assert re.fullmatch(r"\d+\.\d+ ms", cell), row
        assert re.fullmatch(r"[+-]\d+\.\d+ ms", row[4]), row


def run_script(*argv: str, timeout: int = 600) -> str:
    env = {k: v for k, v in os.environ.items() if k not in _CACHE_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    done = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"exit code {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_fast_decode_benchmark_runs_on_a_tiny_model_and_its_checks_pass():
    out = run_script("tests/benchmarks/fast_decode.py", "--shapes", "tiny", "--new", "8", "--repeats", "1",
                     "--skip-static")
    assert "| tiny | 1 |" in out and "| tiny | 8 |" in out
    assert "'within_tolerance': True" in out and "repeats with its seed: True, varies with it: True" in out
    assert "same text: True" in out


@pytest.mark.slow
def test_the_image_benchmark_runs_on_the_tiny_sdxl_and_both_sides_make_the_same_pixels():
    out = run_script("tests/benchmarks/gpu_image.py", "--tiny", "--repeats", "1")
    assert "| SDXL-shaped fp32 32x32, 4 steps, batch 1 |" in out and "same pixels: True" in out


@pytest.mark.slow
def test_the_profile_scripts_run():
    assert "ratio" in run_script("tests/benchmarks/profile_load.py")
    out = run_script("tests/benchmarks/profile_encoders.py", "--tiny")
    assert "same vectors: True" in out and "--- mc.run, by own time" in out


@pytest.mark.network   # installs model-compose from a package index: never in the default run or CI
def test_the_model_compose_comparison_runs_with_model_compose_from_pypi(tmp_path):
    out = run_script("tests/benchmarks/vs_model_compose.py", "--tiny-check", "--venv", str(tmp_path / "venv"),
                     timeout=900)
    assert "model-compose" in out and "| repeated:" in out


@pytest.mark.slow
def test_bench_tasks_checks_each_task_against_the_raw_call_and_prints_a_row():
    env = {k: v for k, v in os.environ.items() if k not in _CACHE_VARS}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "benchmarks" / "bench_tasks.py"), "--repeats", "2",
                           "--warmup", "0"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"exit code {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr[-4000:]}"
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if re.match(r"^[a-z-]+ +[\d.]+ ", line)}
    assert sorted(rows) == sorted(["text-to-text", "text-reranking", "image-text-to-text", "speech-to-text",
                                   "image-embedding", "object-detection", "depth-estimation"])
    assert all(float(row[-1].rstrip("x")) > 0 for row in rows.values())
