"""A token read through ``${env.NAME}`` never shows: not in a display, repr, error, log or the sidebar.

Dialect §4: "`${env.NAME}` is read when the cell runs; its value never appears in any display, repr,
error, log or the sidebar (mask it)." Every test here sets ``HUGGINGFACE_TOKEN`` to a unique marker
(``hf_LEAKCHECK_<random hex>``), references it through ``${env.HUGGINGFACE_TOKEN}`` wherever the
dialect takes it (a hub mapping's ``token:``, a LoRA adapter's hub mapping, an http ``Authorization``
header, query ``params:``, a ``body:`` field, an http-server's ``manage.env``) and searches everything a
user or a log could see for the marker's random part:

1. every example notebook, run in a real kernel with the token put into its YAML: every output of
   every cell (text/plain, text/html with its image alts, images, streams, error tracebacks) and the
   saved notebook JSON;
2. error cases that involve the token, through the real IPython shell, as a ``%%compose``/``%%run``
   magic and as a call of the Python API in a cell: stdout, stderr, every display bundle, the
   exception's text and its formatted traceback;
3. a managed server's log (``mc.logs``, ``%mc logs``) and every Python logging record;
4. every message the sidebar's comm sends;
5. the reprs of RunResult, PlanView, StatusTable, registry entries, ``driver.info()``, ModelSource.

Plus ``trust_remote_code``: off unless the YAML turns it on, and said in the compose output when it is.
A table of the places searched, the checks made and the occurrences found is printed at the end.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import socket
import sys
import threading
import traceback
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

import mc_jupyter as mc
from mc_jupyter.errors import UserError
from tests import tiny_models
from tests.conftest import run_cell
from tests.test_examples import EXAMPLES
from tests.test_examples_images import captioners  # noqa: F401  (a fixture: tiny BLIP under the real repo ids)
from tests.test_sidebar_comm import eventually, fast_panel, manager  # noqa: F401  (manager is a fixture)

ENV = "HUGGINGFACE_TOKEN"
NEEDLE = secrets.token_hex(12)             # what is searched for: the marker's random part
MARKER = f"hf_LEAKCHECK_{NEEDLE}"
TOKEN = "${env.HUGGINGFACE_TOKEN}"
SERVER = str(Path(__file__).resolve().parent / "model_server.py")

# Prints the token it was given through manage.env, then serves as tests/model_server.py does.
PRINT_AND_SERVE = (
    "import os, runpy, sys; print('starting with API_TOKEN=' + os.environ['API_TOKEN'], flush=True); "
    f"port = sys.argv[1]; sys.argv = [{SERVER!r}, '--port', port]; runpy.run_path({SERVER!r}, run_name='__main__')")
PRINT_AND_EXIT = ("import os; print('API_TOKEN=' + os.environ['API_TOKEN'], flush=True); "
                  "print('the token ' + os.environ['API_TOKEN'] + ' was refused', flush=True); raise SystemExit(1)")
PRINT_TOKEN = "import os; print('installing with API_TOKEN=' + os.environ['API_TOKEN'])"


# ------------------------------------------------------------------------------------------------
# Searching, and the table of what was searched

CHECKS: Dict[str, List[int]] = defaultdict(lambda: [0, 0])     # place -> [checks, occurrences]


def strings(value: Any) -> Iterator[str]:
    """Every string inside ``value`` (mappings, lists, bytes), or its str() for anything else."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (bytes, bytearray)):
        yield bytes(value).decode("utf-8", "replace")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            yield from strings(v)
    elif value is not None:
        yield str(value)


class Audit:
    """Counts the checks per place and keeps each occurrence of the marker with its context."""

    def __init__(self, needle: str = NEEDLE):
        self.needle, self.leaks = needle, []

    def check(self, place: str, value: Any, case: str = "") -> int:
        found = 0
        for text in strings(value):
            count = text.count(self.needle)
            if count:
                at = text.index(self.needle)
                context = text[max(0, at - 120):at + len(self.needle) + 40].replace(self.needle, "<SECRET>")
                self.leaks.append(f"{place}{f' [{case}]' if case else ''}: ...{context!r}...")
            found += count
        CHECKS[place][0] += 1
        CHECKS[place][1] += found
        return found

    def assert_clean(self) -> None:
        assert not self.leaks, "the secret appeared:\n" + "\n".join(self.leaks)


@pytest.fixture(scope="module", autouse=True)
def report(request):
    """Print the table of places searched, checks made and occurrences found, after the module's tests."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not CHECKS:
        return
    rows = [f"{'place searched for the secret':<60} {'checks':>7} {'found':>6}"]
    rows += [f"{place:<60} {checks:>7} {found:>6}" for place, (checks, found) in sorted(CHECKS.items())]
    rows.append(f"{'total':<60} {sum(c for c, _ in CHECKS.values()):>7} {sum(f for _, f in CHECKS.values()):>6}")
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for row in rows:
            reporter.write_line(row)


@pytest.fixture(autouse=True)
def token(monkeypatch, tmp_path):
    """The token in the environment (a kernel started now inherits it); install markers in tmp."""
    monkeypatch.setenv(ENV, MARKER)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return MARKER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# YAML that takes the token everywhere the dialect allows


def hub(repo: str) -> Dict[str, Any]:
    return {"provider": "huggingface", "repository": repo, "token": TOKEN}


def writer(cid: str = "writer", **extra: Any) -> Dict[str, Any]:
    """The tiny Llama under meta-llama/Llama-2-7b-hf with a LoRA adapter, both through hub mappings with the token."""
    return {"id": cid, "type": "model", "task": "text-generation", "model": hub("meta-llama/Llama-2-7b-hf"),
            "peft_adapters": [{"type": "lora", "name": "alpaca", "model": hub("tloen/alpaca-lora-7b"), "weight": 0.7}],
            "text": "${input.prompt}", "params": {"max_output_length": 4, "temperature": 0}, **extra}


def server(port: int, cid: str = "llm", echo: bool = False, start: Optional[list] = None, **manage: Any) -> Dict:
    """A managed model server given the token through manage.env (it prints it), asked with the token in
    the Authorization header and a body field; ``echo`` also puts it in the prompt, which the server
    says back. (No query ``params:``: tests/model_server.py routes on the whole path, query included.)"""
    content = "${input.prompt}" + (f" {TOKEN}" if echo else "")
    return {"id": cid, "type": "http-server",
            "manage": {"start": start or [sys.executable, "-c", PRINT_AND_SERVE, str(port)],
                       "env": {"API_TOKEN": TOKEN}, "ready_timeout": 20, "health_path": "/health", **manage},
            "port": port, "path": "/v1/chat/completions",
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "body": {"model": "${input.model | tiny}", "user": TOKEN, "stream": True,
                     "messages": [{"role": "user", "content": content}]},
            "stream_format": "json", "output": "${response[].choices[0].delta.content}"}


def client(url: str, cid: str = "client", params: bool = False, **body: Any) -> Dict[str, Any]:
    """An http-client with the token in its Authorization header and a body field (and, with ``params``,
    a query parameter)."""
    return {"id": cid, "type": "http-client", "endpoint": url, "headers": {"Authorization": f"Bearer {TOKEN}"},
            **({"params": {"key": TOKEN}} if params else {}),
            "body": {"model": "${input.model | tiny}", "user": TOKEN,
                     "messages": [{"role": "user", "content": "${input.prompt | hi}"}], **body},
            "output": "${response.choices[0].message.content}", "timeout": 10}


def compose_text(*components: Dict[str, Any]) -> str:
    data = {"components": list(components)} if len(components) > 1 else {"component": components[0]}
    text = yaml.safe_dump(data, sort_keys=False, width=10_000)
    assert TOKEN in text and MARKER not in text
    return text


class EchoingAuthServer:
    """A server that refuses every request with 401 and says back the Authorization header it got
    (as some servers do in their error bodies)."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                raw = json.dumps({"error": f"invalid credentials: {self.headers.get('Authorization')}"}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/chat/completions"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def echoing_auth_server():
    s = EchoingAuthServer()
    yield s
    s.close()


# ------------------------------------------------------------------------------------------------
# 1. The example notebooks, with the token in their YAML

HUB_MODEL_LINE = re.compile(r"^(?P<lead>[ \t]*(?:- )?)model: (?P<id>[\w.\-]+/[\w.\-]+|gpt2|"
                            r"distilbert-base-uncased-finetuned-sst-2-english)[ \t]*$", re.M)


def with_token(source: str) -> str:
    """A code cell with ``${env.HUGGINGFACE_TOKEN}`` in each hub model and LoRA adapter (as hub mappings),
    each http component's Authorization header and each managed server's ``manage.env``."""
    if "type: model" in source or "peft_adapters" in source:
        source = HUB_MODEL_LINE.sub(lambda m: f'{m["lead"]}model: {{provider: huggingface, repository: '
                                              f'{m["id"]}, token: "{TOKEN}"}}', source)
        source = re.sub(r"(repository: [\w.\-]+/[\w.\-]+, filename: [\w.\-]+)\}", rf'\1, token: "{TOKEN}"}}',
                        source)
    if "type: http-" in source:
        if re.search(r"^([ \t]*)headers:\n\1[ \t]+Content-Type: application/json$", source, re.M):
            source = re.sub(r"^([ \t]*)headers:\n(\1[ \t]+)(Content-Type: application/json)$",
                            rf"\1headers:\n\2\3\n\2Authorization: Bearer {TOKEN}", source, count=1, flags=re.M)
        else:
            source = re.sub(r"^([ \t]*)((?:path|endpoint): .*)$", rf'\1\2\n\1headers: {{Authorization: "Bearer {TOKEN}"}}',
                            source, count=1, flags=re.M)
        source = re.sub(r"^([ \t]*)manage:$", rf'\1manage:\n\1  env: {{API_TOKEN: "{TOKEN}"}}', source, flags=re.M)
    return source


READ_CHECK = ('import os\nfrom mc_jupyter.binding import scrub\n'
              'print("the kernel read the token through ${env}:", scrub(os.environ["HUGGINGFACE_TOKEN"]) == "***")')


def setup_models(request, tmp_path, monkeypatch):
    request.getfixturevalue("models")


def setup_captioners(request, tmp_path, monkeypatch):
    request.getfixturevalue("models")
    request.getfixturevalue("captioners")


def setup_image_generation(request, tmp_path, monkeypatch):
    from tests import tiny_diffusion
    hub_cache = request.getfixturevalue("hub_cache")
    folder = tmp_path / "tiny-sdxl"
    tiny_diffusion.sdxl().save_pretrained(folder)
    tiny_models.place_in_hub_cache(hub_cache, "stabilityai/sdxl-turbo", folder)


def setup_upscaling(request, tmp_path, monkeypatch):
    import torch
    from tests import tiny_upscalers
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save({"params_ema": tiny_upscalers.rrdb(4).state_dict()}, weights / "RealESRGAN_x4plus.pth")
    monkeypatch.setenv("MC_JUPYTER_WEIGHTS", str(weights))


def setup_faces(request, tmp_path, monkeypatch):
    from tests import tiny_faces
    tiny_faces.build_pack(tmp_path / "insightface" / "models" / "buffalo_l")
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "insightface"))


def setup_serving(request, tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is installed by .ci/run")
    models, hub_cache = request.getfixturevalue("models"), request.getfixturevalue("hub_cache")
    folder = tmp_path / "gguf-repo"
    folder.mkdir()
    tiny_models.build_gguf(models["causal"], folder / "SmolLM2-135M-Instruct-Q4_K_M.gguf")
    tiny_models.place_in_hub_cache(hub_cache, "bartowski/SmolLM2-135M-Instruct-GGUF", folder)
    monkeypatch.setenv("LLAMA_PORT", str(free_port()))


def setup_custom_driver(request, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    request.getfixturevalue("models")


def setup_rag(request, tmp_path, monkeypatch):
    from tests import tiny_seq2seq
    request.getfixturevalue("models")
    tiny_seq2seq.build_all(tmp_path / "rerankers", request.getfixturevalue("hub_cache"), ("cross-encoder",))


def setup_seq2seq(request, tmp_path, monkeypatch):
    from tests import tiny_seq2seq
    tiny_seq2seq.build_all(tmp_path / "seq2seq", request.getfixturevalue("hub_cache"), ("t5", "bart", "marian"))


def setup_vlms(request, tmp_path, monkeypatch):
    from tests import tiny_vlms
    tiny_vlms.build_all(tmp_path / "vlms", request.getfixturevalue("hub_cache"))


def setup_whisper(request, tmp_path, monkeypatch):
    from tests import tiny_whisper
    tiny_whisper.build_all(tmp_path / "whisper", request.getfixturevalue("hub_cache"))


def setup_clip(request, tmp_path, monkeypatch):
    from tests import tiny_clip
    tiny_models.place_in_hub_cache(request.getfixturevalue("hub_cache"), tiny_clip.REPOS["clip"],
                                   tiny_clip.build_clip(tmp_path / "clip"))


def setup_vision(request, tmp_path, monkeypatch):
    from tests import tiny_vision
    tiny_vision.build_all(tmp_path / "vision", request.getfixturevalue("hub_cache"))


# notebook -> (its stand-ins, whether its YAML has a place for the token)
NOTEBOOKS = {
    "quickstart.ipynb": (setup_models, True),
    "chat_and_streaming.ipynb": (setup_models, True),
    "generation_and_classification.ipynb": (setup_models, True),
    "lora_adapters.ipynb": (setup_models, True),
    "quantization_and_memory.ipynb": (setup_models, True),
    "image_generation.ipynb": (setup_image_generation, True),
    "captioning.ipynb": (setup_captioners, True),
    "multi_step_workflow.ipynb": (setup_captioners, True),
    "custom_driver.ipynb": (setup_custom_driver, True),
    "serving.ipynb": (setup_serving, True),
    "model_compose_files.ipynb": (setup_models, True),
    "rag.ipynb": (setup_rag, True),
    "translation_and_summarization.ipynb": (setup_seq2seq, True),
    "vision_language_chat.ipynb": (setup_vlms, True),
    "speech.ipynb": (setup_whisper, True),
    "image_search.ipynb": (setup_clip, True),
    "vision.ipynb": (setup_vision, True),
    # a model name that is not a hub id (buffalo_l, RealESRGAN_x4plus): only the environment holds the token
    "upscaling.ipynb": (setup_upscaling, False),
    "face_embedding.ipynb": (setup_faces, False),
}


def test_every_example_notebook_is_covered():
    assert sorted(NOTEBOOKS) == sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_example_notebooks_with_the_token_in_their_yaml_never_show_it(name, request, tmp_path, monkeypatch):
    setup, takes_token = NOTEBOOKS[name]
    setup(request, tmp_path, monkeypatch)
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    injected = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = with_token(cell.source)
            injected += cell.source.count(TOKEN)
    assert (injected > 0) == takes_token, (name, injected)
    nb.cells.append(nbformat.v4.new_code_cell(READ_CHECK))

    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()

    audit = Audit()
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "stream":
                audit.check("notebook output: stream", output.get("text"))
            elif kind == "error":
                audit.check("notebook output: error traceback", [output.get("ename"), output.get("evalue"),
                                                                  output.get("traceback")])
            else:
                for mime, data in output.get("data", {}).items():
                    audit.check(f"notebook output: {mime}", data)
                audit.check("notebook output: metadata", output.get("metadata"))
    audit.check("saved notebook JSON", nbformat.writes(nb))
    audit.assert_clean()
    read = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert f"the kernel read the token through ${{env}}: {takes_token}" in read, read


# ------------------------------------------------------------------------------------------------
# 2. Errors that involve the token, through the real IPython shell


class Shell:
    """The ``ip`` shell with every display bundle recorded (text/html too, not only what the test shell prints)."""

    def __init__(self, ip, capsys, monkeypatch):
        self.ip, self.capsys, self.bundles = ip, capsys, []
        fmt, publish = ip.display_formatter.format, ip.display_pub.publish

        def record_format(obj, *args, **kwargs):
            data, metadata = fmt(obj, *args, **kwargs)
            self.bundles.append(data)
            return data, metadata

        def record_publish(data, *args, **kwargs):
            self.bundles.append(data)
            return publish(data, *args, **kwargs)

        monkeypatch.setattr(ip.display_formatter, "format", record_format)
        monkeypatch.setattr(ip.display_pub, "publish", record_publish)

    def cell(self, audit: Audit, what: str, text: str, fails: bool = True) -> Optional[BaseException]:
        """Run a cell; search its stdout, stderr, displays, and its exception's text and traceback."""
        self.capsys.readouterr()
        del self.bundles[:]
        error = None
        try:
            run_cell(self.ip, text)
        except BaseException as e:   # noqa: BLE001 - what the cell raised is what is searched
            error = e
        out = self.capsys.readouterr()
        audit.check("shell: stdout", out.out, what)
        audit.check("shell: stderr", out.err, what)
        audit.check("shell: display bundles", self.bundles, what)
        if error is not None:
            audit.check("shell: exception str/repr", [str(error), repr(error)], what)
            audit.check("shell: exception traceback", traceback.format_exception(error), what)
        assert (error is not None) == fails, f"{what}: {error!r}"
        return error


@pytest.fixture
def shell(ip, capsys, monkeypatch):
    return Shell(ip, capsys, monkeypatch)


def api_compose(text: str) -> str:
    return f"import mc_jupyter as mc\nmc.compose({text!r})"


def api_run(target: str, **inputs: Any) -> str:
    return f"import mc_jupyter as mc\nmc.run({target!r}, {inputs!r})"


@pytest.mark.slow
def test_a_hub_model_not_in_the_offline_cache_with_a_token(shell):
    audit = Audit()
    text = compose_text({"id": "private", "type": "model", "task": "text-generation",
                         "model": hub("private-org/not-in-the-cache"), "text": "${input.prompt}"})
    error = shell.cell(audit, "magic", "%%compose\n" + text)
    assert "private-org/not-in-the-cache" in str(error)
    shell.cell(audit, "api", api_compose(text))
    audit.assert_clean()


def test_a_lora_adapter_not_in_the_offline_cache_with_a_token(shell):
    audit = Audit()
    component = writer()
    component["peft_adapters"][0]["model"] = hub("private-org/adapter-not-in-the-cache")
    text = compose_text(component)
    error = shell.cell(audit, "magic", "%%compose\n" + text)
    assert "private-org/adapter-not-in-the-cache" in str(error)
    shell.cell(audit, "api", api_compose(text))
    audit.assert_clean()


def test_an_http_client_refused_with_404_by_the_model_server_with_the_authorization_header(shell):
    audit = Audit()
    port = free_port()
    shell.cell(audit, "compose", "%%compose\n" + compose_text(server(port)), fails=False)
    error = shell.cell(audit, "magic", "%%run llm\nprompt: hi\nmodel: missing")
    assert "answered HTTP 404" in str(error)
    shell.cell(audit, "api", api_run("llm", prompt="hi", model="missing"))
    audit.check("mc.logs", mc.logs("llm"))
    audit.assert_clean()


def test_an_http_client_refused_with_401_by_a_server_that_echoes_the_authorization_header(shell,
                                                                                          echoing_auth_server):
    audit = Audit()
    shell.cell(audit, "compose", "%%compose\n" + compose_text(client(echoing_auth_server.url)), fails=False)
    error = shell.cell(audit, "magic", "%%run client\nprompt: hi")
    assert "answered HTTP 401" in str(error) and "invalid credentials: Bearer ***" in str(error)
    shell.cell(audit, "api", api_run("client", prompt="hi"))
    audit.assert_clean()


@pytest.mark.slow
def test_a_server_that_prints_the_token_it_was_given_and_exits(shell):
    audit = Audit()
    port = free_port()
    text = compose_text(server(port, start=[sys.executable, "-c", PRINT_AND_EXIT]))
    error = shell.cell(audit, "magic", "%%compose\n" + text)
    assert "exited (code 1) before it was ready" in str(error) and "API_TOKEN=***" in str(error)
    shell.cell(audit, "api", api_compose(text))
    audit.assert_clean()


@pytest.mark.slow
def test_a_server_whose_start_command_is_not_found_with_the_token_in_its_arguments(shell):
    audit = Audit()
    text = compose_text(server(free_port(), start=["/nonexistent/bin/serve", "--token", TOKEN]))
    error = shell.cell(audit, "magic", "%%compose\n" + text)
    assert "cannot start" in str(error)
    shell.cell(audit, "api", api_compose(text))
    audit.assert_clean()


@pytest.mark.slow
def test_an_install_command_that_prints_the_token(shell):
    audit = Audit()
    port = free_port()
    ok = compose_text(server(port, install=[sys.executable, "-c", PRINT_TOKEN]))
    shell.cell(audit, "install that succeeds", "%%compose\n" + ok, fails=False)
    failing = compose_text(server(free_port(), cid="other", install=[sys.executable, "-c",
                                                                     PRINT_TOKEN + "; raise SystemExit(4)"]))
    error = shell.cell(audit, "install that fails (magic)", "%%compose\n" + failing)
    assert "the install command failed (exit 4)" in str(error)
    shell.cell(audit, "install that fails (api)", api_compose(failing))
    audit.assert_clean()


def test_a_binding_error_converting_the_token_as_a_number(shell):
    audit = Audit()
    port = free_port()
    component = server(port)
    component["body"]["temperature"] = "${env.HUGGINGFACE_TOKEN as number}"
    shell.cell(audit, "compose", "%%compose\n" + compose_text(component), fails=False)
    error = shell.cell(audit, "magic", "%%run llm\nprompt: hi")
    assert "cannot convert the secret value to `number`" in str(error)
    shell.cell(audit, "api", api_run("llm", prompt="hi"))
    audit.assert_clean()


def test_run_inputs_that_the_server_echoes_back_with_the_token(shell):
    """The prompt carries the token (a body field); the model server says it back, streamed and whole."""
    audit = Audit()
    port = free_port()
    shell.cell(audit, "compose", "%%compose\n" + compose_text(server(port, echo=True)), fails=False)
    shell.cell(audit, "streamed run (magic)", "%%run llm -o echoed\nprompt: say it back", fails=False)
    assert shell.ip.user_ns["echoed"].output.startswith("You said: say it back")
    shell.cell(audit, "the RunResult shown again", "echoed", fails=False)
    shell.cell(audit, "printed", "print(echoed)", fails=False)
    shell.cell(audit, "streamed run (api)", api_run("llm", prompt="say it back"), fails=False)
    shell.cell(audit, "%mc status", "%mc status", fails=False)
    shell.cell(audit, "%mc logs", "%mc logs llm 100", fails=False)
    audit.assert_clean()


# ------------------------------------------------------------------------------------------------
# 3. Logs


@pytest.mark.slow
def test_the_log_of_a_server_that_printed_the_token_and_every_logging_record(registry, caplog, shell,
                                                                              echoing_auth_server):
    caplog.set_level(logging.DEBUG)
    audit = Audit()
    port = free_port()
    mc.compose(compose_text(writer(), server(port), client(echoing_auth_server.url, params=True)), registry=registry)
    out = mc.run("llm", {"prompt": "hello"}, registry=registry).output
    assert out == "You said: hello"
    assert mc.run("writer", {"prompt": "hello"}, registry=registry).output is not None
    with pytest.raises(UserError):   # 401 (its message is test_an_http_client_refused_with_401_*'s business)
        mc.run("client", {"prompt": "hello"}, registry=registry)
    lines = mc.logs("llm", 2000, registry=registry)
    assert any(line.startswith("starting with API_TOKEN=***") for line in lines), lines
    audit.check("mc.logs", lines)
    audit.check("server log (all lines kept)", list(registry.entries["llm"].driver.process.log))
    registry.unload("llm")

    shell.cell(audit, "compose", "%%compose\n" + compose_text(server(free_port())), fails=False)
    shell.cell(audit, "run", "%%run llm\nprompt: hello", fails=False)
    shell.cell(audit, "%mc logs", "%mc logs llm 2000", fails=False)
    audit.check("logging records", [r.getMessage() for r in caplog.records])
    audit.check("logging records (formatted)", caplog.text)
    audit.assert_clean()


def test_a_token_read_from_a_file_with_its_trailing_newline_is_masked_too(registry, monkeypatch):
    """``export HUGGINGFACE_TOKEN=$(cat token)`` strips the newline; ``os.environ[...] = open(...).read()``
    keeps it. The token is the same secret either way: the server's log line (newline stripped) and
    an error quoting the header must not show it."""
    needle = secrets.token_hex(12)
    monkeypatch.setenv(ENV, f"hf_LEAKCHECK_{needle}\n")
    audit = Audit(needle)
    port = free_port()
    mc.compose(compose_text(server(port)), registry=registry)
    audit.check("mc.logs (token with a trailing newline)", mc.logs("llm", 2000, registry=registry))
    with pytest.raises(UserError) as failure:    # a newline is not allowed in a header value
        mc.run("llm", {"prompt": "hi"}, registry=registry)
    audit.check("exception str (token with a trailing newline)", [str(failure.value), repr(failure.value)])
    audit.assert_clean()


# ------------------------------------------------------------------------------------------------
# 4. The sidebar's comm


@pytest.mark.slow
def test_every_message_the_sidebar_sends_is_free_of_the_token(models, registry, manager):  # noqa: F811
    audit = Audit()
    panel, connection = fast_panel(manager, registry, sample_seconds=0.05)
    port = free_port()
    mc.compose(compose_text(writer(), server(port, echo=True), client(f"http://127.0.0.1:{port}/v1/chat/completions")),
               registry=registry)
    assert mc.run("llm", {"prompt": "hi"}, registry=registry).output.startswith("You said: hi")
    with pytest.raises(UserError):
        mc.run("client", {"prompt": "hi", "model": "missing"}, registry=registry)
    panel.send({"command": "refresh"})
    panel.send({"command": "unload", "id": MARKER})             # an error reply that quotes the token
    panel.send({"command": "stop", "id": "llm"})
    assert eventually(lambda: len(panel.received("memory")) >= 2)
    panel.send({"command": "unload", "id": "writer"})
    panel.close()
    assert connection.closed
    sent = panel.kernel_comm.published
    assert len(sent) > 5 and any(d.get("type") == "error" for _, d in sent if d)
    for msg_type, data in sent:
        audit.check(f"sidebar comm: {msg_type} {data.get('type', '') if isinstance(data, dict) else ''}".strip(),
                    json.dumps(data))
    audit.assert_clean()


def test_a_component_that_failed_to_load_with_the_token_in_its_error_is_masked_in_the_sidebar(
        registry, manager):  # noqa: F811
    """A model loaded on first run (``preload: false``) that fails keeps its error in the registry row."""
    audit = Audit()
    panel, _ = fast_panel(manager, registry, sample_seconds=0.05)
    lazy = {"id": "lazy", "type": "model", "task": "text-generation", "preload": False,
            "model": hub("private-org/not-in-the-cache"), "text": "${input.prompt}"}
    mc.compose(compose_text(lazy), registry=registry)
    with pytest.raises(UserError):
        mc.run("lazy", {"prompt": "hi"}, registry=registry)
    panel.send({"command": "refresh"})
    [row] = panel.received("snapshot")[-1]["components"]
    assert row["state"] == "failed" and row["error"]
    for msg_type, data in panel.kernel_comm.published:
        audit.check("sidebar comm: failed component", json.dumps(data))
    audit.check("registry.snapshot() (failed component)", registry.snapshot())
    audit.check("repr(entry) (failed component)", repr(registry.entries["lazy"]))
    audit.assert_clean()


# ------------------------------------------------------------------------------------------------
# 5. Reprs


def test_reprs_of_results_plans_status_entries_driver_info_and_model_sources(models, registry):
    audit = Audit()
    port = free_port()
    text = compose_text(writer(), server(port, echo=True), client(f"http://127.0.0.1:{port}/v1/chat/completions"))
    dry = mc.compose(text, registry=registry, dry_run=True)
    plan = mc.compose(text, registry=registry)
    for name, view in (("dry run", dry), ("compose", plan)):
        audit.check("PlanView repr/str/html/lines", [repr(view), str(view), view._repr_html_(), view.lines()])
        audit.check("Plan repr", repr(view.plan))

    echoed = mc.run("llm", {"prompt": "say it back"}, registry=registry)
    assert echoed.output.startswith("You said: say it back")
    written = mc.run("writer", {"prompt": "hello"}, registry=registry)
    whole = mc.run("client", {"prompt": "say it back"}, registry=registry)
    for result in (echoed, written, whole):
        audit.check("RunResult repr/str", [repr(result), str(result)])
        audit.check("RunResult display bundle", result._repr_mimebundle_())

    status = mc.status(registry)
    audit.check("StatusTable repr/html", [repr(status), status._repr_html_()])
    for cid, entry in registry.entries.items():
        audit.check("registry entry repr", repr(entry))
        audit.check("registry entry describe()", entry.describe())
        audit.check("driver.info()", entry.driver.info())
        audit.check("driver repr", repr(entry.driver))
    audit.check("registry.snapshot()", registry.snapshot())
    source = registry.entries["writer"].driver.source
    assert source.kwargs.get("token") == MARKER        # the token is passed on ...
    audit.check("ModelSource repr/str", [repr(source), str(source), source.description])   # ... and never shown
    audit.assert_clean()


# ------------------------------------------------------------------------------------------------
# trust_remote_code


TRUSTING = """
component:
  id: trusting
  type: model
  task: text-generation
  model: meta-llama/Llama-2-7b-hf
  text: ${input.prompt}
"""


@pytest.fixture
def from_pretrained_calls(monkeypatch):
    import transformers
    calls: List[Dict[str, Any]] = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        original = cls.from_pretrained
        monkeypatch.setattr(cls, "from_pretrained",
                            (lambda original, name: lambda *a, **kw: (calls.append(dict(kw, _cls=name)),
                                                                      original(*a, **kw))[1])(original, cls.__name__))
    return calls


def test_trust_remote_code_is_off_unless_the_yaml_turns_it_on(models, registry, from_pretrained_calls):
    from mc_jupyter.config.schema import ModelComponent
    from mc_jupyter.drivers.placement import load_plan
    assert "trust_remote_code" not in load_plan(ModelComponent(task="text-generation"))["kwargs"]
    plan = mc.compose(TRUSTING, registry=registry)
    model_calls = [c for c in from_pretrained_calls if c["_cls"] == "AutoModelForCausalLM"]
    assert model_calls and all(c.get("trust_remote_code", False) is False for c in from_pretrained_calls)
    assert "trust_remote_code" not in "\n".join(plan.lines())
    assert "trust_remote_code" not in mc.compose(TRUSTING, registry=registry, dry_run=True)._repr_html_()


def test_trust_remote_code_on_is_passed_and_said_in_the_compose_output(models, registry, from_pretrained_calls,
                                                                        shell):
    text = TRUSTING + "  trust_remote_code: true\n"
    dry = mc.compose(text, registry=registry, dry_run=True)
    assert any("trust_remote_code" in line for line in dry.lines()), dry.lines()
    assert "trust_remote_code" in dry._repr_html_()
    plan = mc.compose(text, registry=registry)
    [model_call] = [c for c in from_pretrained_calls if c["_cls"] == "AutoModelForCausalLM"]
    assert model_call["trust_remote_code"] is True
    [tokenizer_call] = [c for c in from_pretrained_calls if c["_cls"] == "AutoTokenizer"]
    assert tokenizer_call["trust_remote_code"] is True      # a custom tokenizer is repository code too
    assert any("trust_remote_code" in line for line in plan.lines()), plan.lines()
    audit = Audit()
    shell.cell(audit, "compose", "%%compose\n" + text.strip(), fails=False)
    texts = "\n".join(t for b in shell.bundles for t in strings(b))
    assert "trust_remote_code: true" in texts and "runs in this kernel" in texts, texts
