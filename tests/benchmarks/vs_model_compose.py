"""mc_jupyter against model-compose itself, on the same YAML and the same tiny local model, on the CPU.

    python tests/benchmarks/vs_model_compose.py [--repeats N] [--warmup W] [--venv DIR]
    python tests/benchmarks/vs_model_compose.py --tiny-check      # one quick pass, for CI

model-compose is a peer, not a dependency: this script installs the PyPI package ``model-compose``
(``--model-compose-version``, default 0.4.120; ``latest`` for the newest) into its own virtual
environment (``--venv``, default /tmp/mcj-model-compose-venv, reused when it already holds that
version). The venv is made with ``--system-site-packages`` so it uses the torch and transformers
already installed here (no CPU torch wheel is downloaded); every pip call in it goes through
``constraints.txt``, which pins torch, and the script checks that the venv's torch and transformers are
the main environment's. model-compose 0.4.120 pins none of them; its own dependencies (click,
pydantic, fastapi, mcp, ...) are installed normally. On the first run of a component model-compose
pip-installs what its Hugging Face text-generation driver lists (``transformers>=4.52``,
``huggingface_hub<2.0``, ``accelerate``, ``peft>=0.5``, ``sentencepiece``) into the running
interpreter; the script installs that list into the venv beforehand, so no timed run pays an install,
and it checks that the venv's packages do not change while timing. So model-compose runs with
huggingface_hub 1.x from its venv, mc_jupyter with the main environment's.

One file, model-compose's own shape (``controller:`` with an http-server ``adapter:``, a
``components:`` list, the action under ``action:``, ``workflow:`` with one ``job:``), is read by both:
``model-compose -f FILE run`` and ``mc_jupyter.compose(file=FILE)`` (what ``%%compose`` does with
the same text; mc_jupyter notes the ``controller:`` and ignores it). The model is a tiny random Llama
(``tests/tiny_models.py``) given by its absolute path (model-compose reads an absolute path as
``provider: local``), greedy (``do_sample: false``: model-compose samples by default and would hand
``temperature: 0`` to transformers' sampler, which raises), 16 new tokens, ``device: cpu``. Nothing
is downloaded at run time: ``HF_HUB_OFFLINE=1`` and a temporary ``HF_HOME``.

Rows (each figure the median of ``--repeats`` timings after ``--warmup`` untimed ones; the two sides
of a row are timed interleaved, in alternating order):

- cold: one ``model-compose run`` (a new process: start, import, parse, load, generate, exit) against
  one new ``python -c`` process that imports mc_jupyter, composes the file and runs it once (the
  ``%%compose`` + first ``%%run`` of a notebook, minus the kernel's own start);
- repeated: ``model-compose run`` again (each run is a new process that loads the model again; the
  CLI keeps nothing) against ``mc_jupyter.run`` on the composed registry (the kernel keeps the model);
- context: the first result in an already open kernel: the cold ``model-compose run`` against the
  compose + first run measured inside the ``python -c`` process after ``import mc_jupyter`` (a
  kernel that has just done ``%load_ext``), and inside this process, where torch is already imported;
- context (not with ``--tiny-check``): model-compose's own way to keep a model loaded, a
  ``model-compose up`` server on a free local port, one ``POST /workflows/runs`` per run, against
  ``mc_jupyter.run``; the server's start (until ``/health`` answers) is printed below the table.

Every output, of every run on both sides, must be the same text; the script fails otherwise.
ratio = model-compose / mc_jupyter (above 1: mc_jupyter is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO_ROOT / "constraints.txt"

MODEL_COMPOSE_VERSION = "0.4.120"
DEFAULT_VENV = Path(tempfile.gettempdir()) / "mcj-model-compose-venv"
MAX_NEW_TOKENS = 16
PROMPT = "The sky is blue because"
INPUT = {"prompt": PROMPT}

#: what model-compose's Hugging Face language-model driver pip-installs on its first run (0.4.120:
#: HuggingfaceModelTaskDriver + HuggingfaceLanguageModelTaskDriver._get_setup_requirements; torch
#: is already satisfied by the system's)
RUNTIME_REQUIREMENTS = ["transformers>=4.52.0", "huggingface_hub<2.0", "accelerate", "peft>=0.5.0", "sentencepiece"]

YAML = """\
controller:
  adapter:
    type: http-server
    port: {port}
components:
  - id: gen
    type: model
    task: text-generation
    device: cpu
    model: {path}
    action:
      prompt: ${{input.prompt}}
      max_output_length: {max_new}
      params:
        do_sample: false
workflow:
  job:
    component: gen
"""

#: the cold mc_jupyter side: a new Python doing what a notebook does (load, %%compose, %%run)
CHILD = """\
import json, sys, time
t0 = time.perf_counter()
import mc_jupyter as mc
t1 = time.perf_counter()
mc.compose(file=sys.argv[1])
output = mc.run(inputs=json.loads(sys.argv[2])).output
t2 = time.perf_counter()
print("MCJ-RESULT " + json.dumps({"output": output, "import_ms": (t1 - t0) * 1e3, "first_ms": (t2 - t1) * 1e3}))
"""

HEADER = "| measurement | model-compose | mc_jupyter | ratio |"


# -- timing -----------------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], object]) -> Tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return (time.perf_counter() - start) * 1000.0, value


def interleaved(calls: Dict[str, Callable[[], object]], repeats: int, warmup: int,
                results: Dict[str, List[object]]) -> Dict[str, List[float]]:
    """Time each call ``repeats`` times (ms) after ``warmup`` untimed rounds, alternating the order;
    every return value (warm-up ones too) goes to ``results``."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            results.setdefault(name, []).append(calls[name]())
    times: Dict[str, List[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in (names if i % 2 == 0 else names[::-1]):
            ms, value = timed(calls[name])
            times[name].append(ms)
            results.setdefault(name, []).append(value)
    return times


def fmt_ms(ms: float) -> str:
    return f"{ms:.1f} ms"


class Table:
    def __init__(self) -> None:
        self.rows: List[List[str]] = []
        self.spreads: List[str] = []

    def add(self, measurement: str, mc_compose: Sequence[float], mcj: Sequence[float]) -> None:
        """One row from the two sides' timings (ms): their medians and the ratio of the medians."""
        mc_compose_ms, mcj_ms = median(mc_compose), median(mcj)
        ratio = mc_compose_ms / mcj_ms if mcj_ms > 0 else float("nan")
        self.rows.append([measurement, fmt_ms(mc_compose_ms), fmt_ms(mcj_ms), f"{ratio:.1f}x"])
        self.spreads.append(f"row {len(self.rows)}: model-compose {min(mc_compose):.1f}-{max(mc_compose):.1f} ms, "
                            f"mc_jupyter {min(mcj):.1f}-{max(mcj):.1f} ms")

    def render(self) -> str:
        lines = [HEADER, "|:---|---:|---:|---:|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


# -- the model-compose venv -------------------------------------------------------------------------
def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def venv_query(venv: Path, code: str) -> str:
    done = subprocess.run([str(venv_python(venv)), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def installed_model_compose(venv: Path) -> str:
    if not (venv / "bin" / "model-compose").exists():
        return ""
    return venv_query(venv, "from importlib.metadata import version; print(version('model-compose'))")


def pip(venv: Path, *args: str) -> None:
    command = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "-q",
               "-c", str(CONSTRAINTS), *args]
    print("  $ " + shlex.join(command), flush=True)
    subprocess.run(command, check=True)


def ensure_venv(venv: Path, wanted: str) -> str:
    """A venv (seeing this environment's torch) holding model-compose ``wanted``; its version."""
    have = installed_model_compose(venv)
    if have and (wanted == "latest" or have == wanted):
        print(f"model-compose {have}: reusing the venv {venv}")
    else:
        if not venv_python(venv).exists():
            print(f"creating the venv {venv} (--system-site-packages)", flush=True)
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
        spec = "model-compose" if wanted == "latest" else f"model-compose=={wanted}"
        pip(venv, *(["--upgrade"] if wanted == "latest" else []), spec)
        have = installed_model_compose(venv)
        if not have:
            raise SystemExit(f"model-compose did not install into {venv}")
    # what model-compose would pip-install on its first run, installed now, outside the timings
    pip(venv, *RUNTIME_REQUIREMENTS)

    import torch
    import transformers
    where = venv_query(venv, "import torch, transformers; print(torch.__file__); print(transformers.__file__)")
    if where.splitlines() != [torch.__file__, transformers.__file__]:
        raise SystemExit(f"the venv's torch/transformers are not this environment's:\n{where}\n"
                         f"vs {torch.__file__}\n   {transformers.__file__}")
    return have


def venv_packages(venv: Path) -> List[str]:
    return sorted(p.name for p in venv.glob("lib/python*/site-packages/*.dist-info"))


# -- the two sides ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_process(command: List[str], cwd: Path, env: Dict[str, str], what: str) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8")
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-4000:]}\n{done.stdout[-2000:]}")
    return done.stdout


def model_compose_run(venv: Path, yaml_file: Path, cwd: Path, env: Dict[str, str]) -> str:
    out = run_process([str(venv / "bin" / "model-compose"), "-f", str(yaml_file), "run", "-i", json.dumps(INPUT)],
                      cwd, env, "model-compose run")
    return out[:-1] if out.endswith("\n") else out   # click.echo adds one newline


def mc_cold_run(yaml_file: Path, cwd: Path, env: Dict[str, str]) -> dict:
    out = run_process([sys.executable, "-c", CHILD, str(yaml_file), json.dumps(INPUT)], cwd, env,
                      "python -c (mc_jupyter compose + run)")
    lines = [line for line in out.splitlines() if line.startswith("MCJ-RESULT ")]
    if not lines:
        raise RuntimeError(f"the mc_jupyter child printed no result:\n{out[-2000:]}")
    return json.loads(lines[-1][len("MCJ-RESULT "):])


class Server:
    """``model-compose up`` on a free port, in its own process group (stopped at the end)."""

    def __init__(self, venv: Path, yaml_file: Path, port: int, cwd: Path, env: Dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(cwd / "model-compose-up.log", "w+", encoding="utf-8")
        start = time.perf_counter()
        self.proc = subprocess.Popen([str(venv / "bin" / "model-compose"), "-f", str(yaml_file), "up"],
                                     cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = start + 180
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"model-compose up exited ({self.proc.returncode}):\n{self.log.read()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError("model-compose up did not answer /health within 180 s")
            time.sleep(0.05)
        self.ready_ms = (time.perf_counter() - start) * 1000.0

    def run(self) -> str:
        body = json.dumps({"input": INPUT, "output_only": True}).encode()
        request = urllib.request.Request(self.url + "/workflows/runs", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as r:
            return json.loads(r.read().decode("utf-8"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# -- main -------------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per figure (median; default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each side before timing (default 1)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help=f"the model-compose virtual environment, reused if present (default {DEFAULT_VENV})")
    parser.add_argument("--model-compose-version", default=MODEL_COMPOSE_VERSION,
                        help=f"model-compose version to install (default {MODEL_COMPOSE_VERSION}; "
                             "`latest` for the newest)")
    parser.add_argument("--tiny-check", action="store_true",
                        help="quick pass for CI: 1 repeat, no warm-up, no server row; still checks the outputs")
    args = parser.parse_args(argv)
    if args.tiny_check:
        args.repeats, args.warmup = 1, 0
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")

    script = sys.argv[0] if argv is None else "tests/benchmarks/vs_model_compose.py"
    print("command: " + shlex.join(["python", script, *(sys.argv[1:] if argv is None else argv)]), flush=True)

    root = Path(tempfile.mkdtemp(prefix="mc_jupyter-vs-model-compose-"))
    server: Optional[Server] = None
    registry = None
    try:
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        from tests import tiny_models   # imports neither transformers nor huggingface_hub

        tiny_models.use_offline_cache(root)
        (root / "hf" / "hub").mkdir(parents=True, exist_ok=True)
        os.environ["PYTHONIOENCODING"] = "utf-8"
        env = dict(os.environ)

        version = ensure_venv(args.venv.resolve(), args.model_compose_version)
        venv = args.venv.resolve()

        import huggingface_hub
        import torch
        import transformers

        llama = tiny_models.build_causal_lm(root / "tiny-llama")
        work = root / "work"          # the working directory of every process (model-compose reads ./.env)
        work.mkdir()
        yaml_file = work / "model-compose.yml"
        port = free_port()
        yaml_file.write_text(YAML.format(port=port, path=llama, max_new=MAX_NEW_TOKENS), encoding="utf-8")

        import mc_jupyter
        from mc_jupyter.registry import Registry

        venv_hub = venv_query(venv, "import huggingface_hub; print(huggingface_hub.__version__)")
        print(f"python {sys.version.split()[0]} · torch {torch.__version__} ({torch.get_num_threads()} threads) · "
              f"transformers {transformers.__version__} · device cpu")
        print(f"model-compose {version} (venv {venv}; huggingface_hub {venv_hub}) · "
              f"mc_jupyter {mc_jupyter.__version__} (huggingface_hub {huggingface_hub.__version__})")
        print(f"model: tiny random Llama at {llama}, greedy, {MAX_NEW_TOKENS} new tokens, prompt {PROMPT!r}")
        print(f"medians of {args.repeats} timed repeats after {args.warmup} warm-up run(s); "
              f"ratio = model-compose / mc_jupyter", flush=True)

        packages_before = venv_packages(venv)
        outputs: Dict[str, List[object]] = {}

        # 1. cold: a new process on each side
        cold_children: List[dict] = []

        def mcj_cold() -> str:
            result = mc_cold_run(yaml_file, work, env)
            cold_children.append(result)
            return result["output"]

        cold = interleaved({"model-compose": lambda: model_compose_run(venv, yaml_file, work, env),
                            "mc_jupyter": mcj_cold}, args.repeats, args.warmup, outputs)
        timed_children = cold_children[args.warmup:]

        # context: compose + first run inside this process (torch already imported), a new registry each time
        first_in_process: List[float] = []
        for i in range(args.warmup + args.repeats):
            reg = Registry()
            start = time.perf_counter()
            mc_jupyter.compose(file=str(yaml_file), registry=reg)
            value = mc_jupyter.run(inputs=INPUT, registry=reg).output
            ms = (time.perf_counter() - start) * 1000.0
            reg.down()
            outputs.setdefault("mc_jupyter, in process", []).append(value)
            if i >= args.warmup:
                first_in_process.append(ms)

        # 2. repeated: model-compose run again (a new process each time) against mc.run on a kept model
        registry = Registry()
        mc_jupyter.compose(file=str(yaml_file), registry=registry)
        repeated = interleaved({"model-compose": lambda: model_compose_run(venv, yaml_file, work, env),
                                "mc.run": lambda: mc_jupyter.run(inputs=INPUT, registry=registry).output},
                               args.repeats, args.warmup, outputs)
        packages_after = venv_packages(venv)

        # 3. context: model-compose kept warm as a server
        served: Optional[Dict[str, List[float]]] = None
        if not args.tiny_check:
            server = Server(venv, yaml_file, port, work, env)
            served = interleaved({"server": server.run,
                                  "mc.run": lambda: mc_jupyter.run(inputs=INPUT, registry=registry).output},
                                 args.repeats, max(args.warmup, 1), outputs)

        # the same text everywhere
        reference = outputs["model-compose"][0]
        assert isinstance(reference, str) and reference, f"model-compose gave {reference!r}"
        for name, values in outputs.items():
            for value in values:
                assert value == reference, (
                    f"{name} gave {value!r}, model-compose {reference!r} (model-compose also passes the tokenizer's "
                    f"eos_token_id to generate, mc_jupyter the model's generation_config: a greedy run that reaches "
                    f"<|endoftext|> would stop early on the model-compose side only)")
        n_outputs = sum(len(v) for v in outputs.values())

        table = Table()
        mc_cold = cold["model-compose"]
        table.add("cold: `model-compose run` (new process) vs `python -c` import + `compose` + first `run` "
                  "(new process)", mc_cold, cold["mc_jupyter"])
        table.add("repeated: `model-compose run` (new process, reloads the model) vs `mc.run` "
                  "(model kept in the kernel)", repeated["model-compose"], repeated["mc.run"])
        table.add("context, first result in an open kernel: cold `model-compose run` vs `compose` + first `run` "
                  "after `import mc_jupyter` (torch not yet imported)", mc_cold,
                  [c["first_ms"] for c in timed_children])
        table.add("context, first result in an open kernel: cold `model-compose run` vs `compose` + first `run` "
                  "(torch already imported, new registry)", mc_cold, first_in_process)
        if served is not None:
            table.add("context, repeated, model-compose as a server: `POST /workflows/runs` to `model-compose up` "
                      "vs `mc.run`", served["server"], served["mc.run"])
        print()
        print(table.render())
        print()
        print("spread (min-max of the timed repeats): " + "; ".join(table.spreads))
        print(f"check: all {n_outputs} outputs (both tools, every run, warm-ups included) are the same text: "
              f"{ascii(reference)}")
        print(f"cold mc_jupyter process, medians: `import mc_jupyter` "
              f"{fmt_ms(median([c['import_ms'] for c in timed_children]))}, compose + first run "
              f"{fmt_ms(median([c['first_ms'] for c in timed_children]))} (the rest of the process time is the "
              f"interpreter's start and exit)")
        if server is not None:
            print(f"model-compose up: {fmt_ms(server.ready_ms)} from launch until /health answered (model loaded)")
        if packages_after != packages_before:
            print("warning: model-compose changed its venv during the timed runs: "
                  f"{sorted(set(packages_after) ^ set(packages_before))}")
        else:
            print("check: model-compose installed nothing during the timed runs")
    finally:
        if server is not None:
            server.stop()
        if registry is not None:
            registry.down()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
