"""Progress that looks like Jupyter: one bar per component load (tokenizer, weights, device), one per
diffusion run (a step per denoising step), each replaced by one line when done; the libraries' own bars
off while ours runs; no stderr and no TqdmWarning from a compose in a real notebook (nbclient)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import nbformat
import pytest
from IPython.utils.capture import capture_output

import mc_jupyter as mc
from mc_jupyter import progress
from tests import tiny_diffusion
from tests.conftest import run_cell
from tests.tiny_models import place_in_hub_cache

ROOT = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: the line a finished load leaves: ``loaded chat: 0.4 s, cpu, float32, 120.3 KiB``
LOADED = r"loaded {id}: \d+\.\d s, cpu, float32, \d+\.\d (B|KiB|MiB|GiB)"
CHAT = """
component:
  id: chat
  type: model
  task: text-generation
  model: {model}
  device: cpu
  prompt: ${{input.prompt}}
  params: {{max_output_length: 4}}
"""


@pytest.fixture
def mode():
    """Set the progress mode for one test; back to choosing after."""
    yield progress.configure
    progress.configure(None)


@pytest.fixture
def events():
    """Every (event, title, value, total, stage) the outermost bars report while the test runs."""
    seen = []
    stop = progress.watch(lambda event, bar: seen.append((event, bar.title, bar.value, bar.total, bar.stage)))
    yield seen
    stop()


@pytest.fixture(scope="module")
def sdxl(hub_cache, tmp_path_factory) -> str:
    """The tiny SDXL pipeline, in the hub cache under its real repo id."""
    folder = tmp_path_factory.mktemp("diffusion") / "tiny-sdxl"
    tiny_diffusion.sdxl().save_pretrained(folder)
    place_in_hub_cache(hub_cache, tiny_diffusion.REPOS["sdxl"], folder)
    return tiny_diffusion.REPOS["sdxl"]


# -- the choice and the API, without a model ------------------------------------------------------------------

def test_a_script_gets_text_and_the_environment_or_configure_overrides_it(mode, monkeypatch):
    monkeypatch.delenv("MC_JUPYTER_PROGRESS", raising=False)
    assert progress.mode() == "text"             # no IPython kernel here
    monkeypatch.setenv("MC_JUPYTER_PROGRESS", "off")
    assert progress.mode() == "off"
    mode("widget")
    assert progress.mode() == "widget"
    with pytest.raises(ValueError, match="progress mode must be one of widget, text, off, not 'bars'"):
        mode("bars")


def test_a_bar_inside_a_bar_joins_it_and_only_the_outermost_shows_one_line(mode, events, capsys):
    mode("text")
    with progress.bar("loading x", done="loaded x") as outer:
        outer.step("first")
        with progress.bar("inner title", total=3) as inner:
            assert inner is outer and outer.total == 3
            inner.step("second")
            inner.step("third")
        outer.finish("loaded x: all three")
    assert capsys.readouterr().out == "loaded x: all three\n"
    assert [e[0] for e in events] == ["open", "step", "total", "step", "step", "close"]
    assert events[-1][1:4] == ("loading x", 3, 3) and outer.stages == ["first", "second", "third"]


def test_a_failed_bar_writes_nothing_in_text_and_a_stopped_line_in_a_widget(mode, capsys, ip):
    capsys.readouterr()          # `ip` may have said "already loaded" (one shell per test process)
    mode("text")
    with pytest.raises(RuntimeError):
        with progress.bar("loading bad"):
            raise RuntimeError("no")
    assert capsys.readouterr().out == ""
    mode("widget")
    with capture_output() as shown, pytest.raises(RuntimeError):
        with progress.bar("loading bad"):
            raise RuntimeError("no")
    assert re.fullmatch(r"loading bad: stopped after \d+\.\d s", shown.outputs[-1].data["text/plain"])


def test_a_secret_in_a_summary_is_scrubbed(mode, capsys, monkeypatch):
    from mc_jupyter.secrets import read_env
    monkeypatch.setenv("MCJ_PROGRESS_TOKEN", "s3cr3t-value-42")
    read_env("MCJ_PROGRESS_TOKEN")          # as a ${env.MCJ_PROGRESS_TOKEN} of a compose reads it
    mode("text")
    with progress.bar("loading x") as bar:
        bar.finish("loaded x from https://s3cr3t-value-42@example.org")
    out = capsys.readouterr().out
    assert "s3cr3t-value-42" not in out and out.startswith("loaded x from https://")


def test_install_filters_the_iprogress_warning_once(recwarn):
    progress.install()
    progress.install()
    patterns = [f[1].pattern for f in warnings.filters if f[0] == "ignore" and f[1] is not None]
    assert patterns.count("IProgress not found") == 1
    from tqdm.std import TqdmWarning
    warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", TqdmWarning)
    assert not [w for w in recwarn if issubclass(w.category, TqdmWarning)]


# -- real loads ------------------------------------------------------------------------------------------------

def test_a_load_in_a_script_is_one_line_with_seconds_device_dtype_and_memory(registry, models, mode, events, capsys):
    mode("text")
    mc.compose(CHAT.format(model=models["causal"]), registry=registry)
    out = capsys.readouterr()
    assert re.fullmatch(LOADED.format(id="chat") + "\n", out.out), out.out
    assert "\r" not in out.out + out.err and out.err == ""
    steps = [e for e in events if e[0] == "step"]
    assert [e[4] for e in steps] == ["tokenizer", "weights", "device"]
    assert [e[2:4] for e in steps] == [(0, 3), (1, 3), (2, 3)] and events[-1][2:4] == (3, 3)
    row = registry.snapshot()[0]
    assert f"{row['load_seconds']:.1f} s" in out.out


def test_the_widget_path_makes_an_int_progress_that_reaches_its_total_and_becomes_the_line(ip, models, mode):
    mode("widget")
    views = []
    stop = progress.watch(lambda event, bar: views.append((bar.view.progress.value, bar.view.progress.max))
                          if event in ("step", "close") else None)
    try:
        with capture_output() as shown:
            run_cell(ip, "%%compose\n" + CHAT.format(model=models["causal"]))
    finally:
        stop()
    first, last = shown.outputs[0], shown.outputs[1]
    assert WIDGET_VIEW in first.data and first.data["text/plain"] == "loading chat"   # fallbacks beside it
    assert first.data["text/html"] == "<progress value='0' max='1'></progress> <span>loading chat</span>"
    assert views[:3] == [(0, 3), (1, 3), (2, 3)] and views[-1] == (3, 3)      # the IntProgress's value and max
    assert last.update and set(last.data) == {"text/plain", "text/html"}     # the same output, replaced
    assert re.fullmatch(LOADED.format(id="chat"), last.data["text/plain"]), last.data


def test_the_libraries_bars_are_off_while_ours_runs_and_back_after_with_no_stderr(models, hub_cache):
    """A fresh process with the hub's bars on (HF_HUB_DISABLE_PROGRESS_BARS unset): inside our load bar
    transformers' and the hub's bars are off, after it they are on again, and the load wrote nothing to stderr."""
    script = textwrap.dedent(f"""
        import mc_jupyter as mc
        from mc_jupyter import progress
        import transformers.utils.logging as tl, huggingface_hub.utils as hu
        before = (tl.is_progress_bar_enabled(), hu.are_progress_bars_disabled())
        inside = []
        progress.watch(lambda e, bar: inside.append((tl.is_progress_bar_enabled(), hu.are_progress_bars_disabled()))
                       if e == "step" else None)
        mc.compose({CHAT.format(model="gpt2")!r})
        print("BEFORE", before, "INSIDE", sorted(set(inside)), "AFTER",
              (tl.is_progress_bar_enabled(), hu.are_progress_bars_disabled()))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "MC_JUPYTER_PROGRESS")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(LOADED.format(id="chat"), lines[0]), done.stdout
    assert lines[1] == "BEFORE (True, False) INSIDE [(False, True)] AFTER (True, False)"
    assert done.stderr == ""


@pytest.mark.slow
def test_a_diffusion_run_has_one_bar_whose_steps_are_the_denoising_steps(registry, sdxl, mode, events, capsys):
    mode("text")
    mc.compose(f"""
component:
  id: painter
  type: model
  task: image-generation
  model: {sdxl}
  device: cpu
  prompt: ${{input.prompt}}
  params: {{width: 64, height: 64, num_inference_steps: 3, seed: 1}}
""", registry=registry)
    assert [e[4] for e in events if e[0] == "step"] == ["model index", "weights", "device"]
    events.clear()
    capsys.readouterr()
    image = mc.run(inputs={"prompt": "a red fox"}, registry=registry).output
    assert image.size == (64, 64)
    assert [e[0] for e in events].count("open") == 1
    steps = [e for e in events if e[0] == "step" and e[4].startswith("step ")]
    assert [e[4] for e in steps] == ["step 1/3", "step 2/3", "step 3/3"]
    assert [e[2] for e in steps] == [1, 2, 3] and events[-1][2:4] == (3, 3)
    assert re.fullmatch(r"generated painter: 1 prompt, 3 steps, \d+\.\d s\n", capsys.readouterr().out)


# -- a real notebook -------------------------------------------------------------------------------------------

COMPOSES = {
    "chat": CHAT.format(model="gpt2"),
    "classifier": """
component:
  id: classifier
  type: model
  task: text-classification
  model: distilbert-base-uncased-finetuned-sst-2-english
  device: cpu
  text: ${input.text}
""",
    "embedder": """
component:
  id: embedder
  type: model
  task: text-embedding
  model: sentence-transformers/all-MiniLM-L6-v2
  device: cpu
  text: ${input.text}
""",
}


@pytest.mark.slow
def test_a_notebook_compose_writes_no_stderr_and_saves_the_one_line(models, sdxl, tmp_path, monkeypatch):
    """nbclient runs the notebook (no widget manager there): each compose cell's saved output is the line,
    no output is a stderr stream or says TqdmWarning, and the saved widget state shows the bars full."""
    from nbclient import NotebookClient

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)   # the kernel inherits this environment
    monkeypatch.delenv("MC_JUPYTER_PROGRESS", raising=False)
    composes = dict(COMPOSES, painter=f"""
component:
  id: painter
  type: model
  task: image-generation
  model: {sdxl}
  device: cpu
  prompt: ${{input.prompt}}
  params: {{width: 64, height: 64, num_inference_steps: 2, seed: 1}}
""")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext mc_jupyter")]
    nb.cells += [nbformat.v4.new_code_cell("%%compose" + text) for text in composes.values()]
    nb.cells.append(nbformat.v4.new_code_cell("%%run painter\nprompt: a red fox"))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    everything = [o for cell in nb.cells for o in cell.outputs]
    stderr = [o.text for o in everything if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, "\n".join(stderr)
    assert "TqdmWarning" not in nbformat.writes(nb)
    for cell, cid in zip(nb.cells[1:], composes):
        lines = [o.data["text/plain"] for o in cell.outputs if o.output_type == "display_data"]
        assert len(lines) == 1 and re.fullmatch(LOADED.format(id=cid), lines[0]), cell.outputs
        assert not [o for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
        assert not [o for o in cell.outputs if o.output_type == "stream"], cell.outputs   # no bar fragments
    run = [o.data["text/plain"] for o in nb.cells[-1].outputs if o.output_type == "display_data"
           and "text/plain" in o.data and o.data["text/plain"].startswith("generated")]
    assert len(run) == 1 and re.fullmatch(r"generated painter: 1 prompt, 2 steps, \d+\.\d s", run[0])
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    bars = [m["state"] for m in state.values() if m["model_name"] == "IntProgressModel"]
    assert len(bars) == len(composes) + 1 and all(b["value"] == b["max"] for b in bars), bars
    assert sorted(b["max"] for b in bars) == [2, 3, 3, 3, 3]
