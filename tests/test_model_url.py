"""`model: {provider: local, url:, bundled:}`: a model fetched on first load from a real HTTP server (a local
one, in a thread), unpacked in place for `bundled: true`, and used offline from then on."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import mc_jupyter as mc
from mc_jupyter.errors import ModelLoadError
from mc_jupyter.registry import Registry
from tests import tiny_models


class Server:
    """Serves ``files`` (URL path -> bytes) and records every request (method, path, headers, body)."""

    def __init__(self):
        self.files = {}
        self.requests = []
        self.delay = 0.0
        self.cut = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                if outer.delay:
                    time.sleep(outer.delay)
                data = outer.files.get(self.path.split("?")[0])
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"not found")
                    return
                cut = self.path in outer.cut          # announce it all, send a tenth, hang up
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:len(data) // 10] if cut else data)
                if cut:
                    self.close_connection = True

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def tar_gz(folder: Path, top: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tf.add(path, arcname=os.path.join(top, str(path.relative_to(folder))))
    return buf.getvalue()


def zipped(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, str(path.relative_to(folder)))
    return buf.getvalue()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return tiny_models.build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny-bert")


def embed_yaml(model: str) -> str:
    return f"""
components:
  - id: emb
    type: model
    task: text-embedding
    model: {model}
    action:
      text: ${{input.text}}
"""


TEXTS = ["the sky is blue", "a cat on a mat"]


def embeddings(model: str):
    reg = Registry()
    mc.compose(embed_yaml(model), registry=reg)
    try:
        return [mc.run(inputs={"text": t}, registry=reg).output["embedding"] for t in TEXTS]
    finally:
        reg.down()


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_a_bundled_archive_is_fetched_once_unpacked_in_place_and_gives_the_local_models_values(
        server, encoder, tmp_path, kind):
    server.files[f"/packs/tiny-bert.{kind}"] = tar_gz(encoder) if kind == "tar.gz" else zipped(encoder)
    target = tmp_path / "models" / "tiny-bert"
    model = f"{{provider: local, url: {server.url}/packs/tiny-bert.{kind}, bundled: true, path: {target}}}"
    expected = embeddings(str(encoder))
    assert embeddings(model) == expected
    assert len(server.requests) == 1 and server.requests[0]["method"] == "GET"
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in encoder.iterdir())
    assert leftovers(target.parent) == ["tiny-bert"]          # no temporary file or folder left beside it
    assert embeddings(model) == expected                      # second compose: what is on disk, no request
    assert len(server.requests) == 1


def test_without_path_the_model_goes_to_the_xdg_cache_named_after_the_archive(server, encoder, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    server.files["/tiny-bert.tgz"] = tar_gz(encoder)
    model = f"{{provider: local, url: {server.url}/tiny-bert.tgz, bundled: true}}"
    assert embeddings(model) == embeddings(str(encoder))
    assert (tmp_path / "xdg" / "models" / "tiny-bert" / "config.json").is_file()
    assert leftovers(tmp_path / "xdg" / "models") == ["tiny-bert"]


def test_a_single_top_folder_is_kept_as_model_compose_keeps_it(server, encoder, tmp_path):
    from mc_jupyter.config.schema import LocalSource
    from mc_jupyter.drivers.fetch import ensure_local

    server.files["/wrapped.tar.gz"] = tar_gz(encoder, top="inner")
    local = LocalSource.model_validate({"url": server.url + "/wrapped.tar.gz", "bundled": True,
                                        "path": str(tmp_path / "w")})
    assert ensure_local(local) == str(tmp_path / "w")
    assert os.listdir(tmp_path / "w") == ["inner"] and (tmp_path / "w" / "inner" / "config.json").is_file()


@pytest.fixture(scope="module")
def gguf_file(models, tmp_path_factory):
    pytest.importorskip("llama_cpp")
    return tiny_models.build_gguf(models["causal"], tmp_path_factory.mktemp("gguf") / "tiny-llama.f32.gguf")


def generation_yaml(model: str) -> str:
    return f"""
components:
  - id: gen
    type: model
    task: text-generation
    driver: llamacpp
    model: {model}
    options: {{n_ctx: 128, n_threads: 2}}
    action:
      text: ${{input.prompt}}
      params: {{max_output_length: 8, temperature: 0}}
"""


def generated(model: str) -> str:
    reg = Registry()
    mc.compose(generation_yaml(model), registry=reg)
    try:
        return mc.run(inputs={"prompt": "The sky is blue"}, registry=reg).output
    finally:
        reg.down()


def test_a_single_gguf_file_with_headers_and_a_post_body_lands_in_the_cache(server, gguf_file, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("MC_TEST_MODEL_TOKEN", "sekrit-token-123")
    server.files["/files/tiny.gguf"] = gguf_file.read_bytes()
    model = (f"{{provider: local, format: gguf, url: {{endpoint: '{server.url}/files/tiny.gguf', method: POST, "
             f"headers: {{Authorization: 'Bearer ${{env.MC_TEST_MODEL_TOKEN}}', X-Pack: tiny}}, "
             f"body: {{want: tiny}}, timeout: 30}}}}")
    expected = generated(f"{{provider: local, path: {gguf_file}, format: gguf}}")
    assert generated(model) == expected and expected
    (request,) = server.requests
    assert request["method"] == "POST" and request["path"] == "/files/tiny.gguf"
    assert request["headers"]["authorization"] == "Bearer sekrit-token-123"
    assert request["headers"]["x-pack"] == "tiny" and json.loads(request["body"]) == {"want": "tiny"}
    cached = tmp_path / "xdg" / "models" / "tiny.gguf"
    assert cached.read_bytes() == gguf_file.read_bytes()
    assert generated(model) == expected and len(server.requests) == 1


def test_dry_run_and_compose_planning_fetch_nothing(server, encoder, tmp_path):
    server.files["/tiny-bert.tar.gz"] = tar_gz(encoder)
    target = tmp_path / "later" / "tiny-bert"
    model = f"{{provider: local, url: {server.url}/tiny-bert.tar.gz, bundled: true, path: {target}}}"
    reg = Registry()
    mc.compose(embed_yaml(model), dry_run=True, registry=reg)
    assert server.requests == [] and not target.exists() and reg.snapshot() == []
    # a preload: false component composes without fetching; its first run fetches
    mc.compose(embed_yaml(model) + "    preload: false\n", registry=reg)
    assert server.requests == [] and not target.exists()
    out = mc.run(inputs={"text": TEXTS[0]}, registry=reg).output
    assert len(server.requests) == 1 and target.is_dir() and out["dimensions"] == 32
    reg.down()


def test_dry_run_does_not_refuse_a_model_still_to_fetch(server, tmp_path):
    model = f"{{provider: local, url: {server.url}/tiny-bert.tar.gz, bundled: true, path: {tmp_path / 'x'}}}"
    view = str(mc.compose(embed_yaml(model), dry_run=True, registry=Registry()))
    assert "would refuse" not in view and server.requests == []


def test_pending_fetch_says_what_the_first_load_does(server, tmp_path, monkeypatch):
    from mc_jupyter.drivers.sources import pending_fetch, resolve_source

    monkeypatch.setenv("MC_TEST_MODEL_TOKEN", "sekrit-token-789")
    model = {"provider": "local", "url": server.url + "/m.gguf?key=${env.MC_TEST_MODEL_TOKEN}",
             "path": str(tmp_path / "m.gguf")}
    assert pending_fetch(model) == f"local: {tmp_path / 'm.gguf'} (fetched from {server.url}/m.gguf?key=*** on first load)"
    source = resolve_source(model, "text-generation")          # outside a load: nothing fetched, nothing checked
    assert source.location == str(tmp_path / "m.gguf") and source.is_local and server.requests == []
    assert pending_fetch({"provider": "local", "path": str(tmp_path)}) is None and pending_fetch("gpt2") is None


def failing_compose(model: str, reg: Registry) -> str:
    with pytest.raises(ModelLoadError) as info:
        mc.compose(embed_yaml(model), registry=reg)
    assert reg.snapshot() == []
    return str(info.value)


def test_a_404_says_what_where_and_how_and_leaves_nothing(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MC_TEST_MODEL_TOKEN", "sekrit-token-456")
    reg = Registry()
    target = tmp_path / "m" / "missing"
    model = (f"{{provider: local, bundled: true, path: {target}, url: {{endpoint: '{server.url}/missing.zip', "
             f"headers: {{Authorization: 'Bearer ${{env.MC_TEST_MODEL_TOKEN}}'}}}}}}")
    text = failing_compose(model, reg)
    assert "component `emb`" in text and f"{server.url}/missing.zip" in text and "HTTP 404" in text
    assert f"unpack it into {target}" in text and "sekrit" not in text
    assert leftovers(tmp_path / "m") == []
    # a plain file: the same, and nothing written either
    text = failing_compose(f"{{provider: local, path: {tmp_path / 'm' / 'x.bin'}, url: {server.url}/x.bin}}", reg)
    assert "HTTP 404" in text and f"download it yourself to {tmp_path / 'm' / 'x.bin'}" in text
    assert leftovers(tmp_path / "m") == []


def test_connection_refused_timeout_and_a_corrupt_archive(server, tmp_path):
    reg = Registry()
    with socket.socket() as s:         # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = failing_compose(f"{{provider: local, path: {tmp_path / 'a'}, url: 'http://127.0.0.1:{port}/a.bin'}}", reg)
    assert "the request failed (ConnectError" in text and f"http://127.0.0.1:{port}/a.bin" in text

    server.files["/slow.bin"] = b"x" * 10
    server.delay = 1.5
    text = failing_compose(f"{{provider: local, path: {tmp_path / 'slow'}, "
                           f"url: {{endpoint: '{server.url}/slow.bin', timeout: 0.3}}}}", reg)
    assert "timed out after 0.3 s" in text
    server.delay = 0.0

    server.files["/bad.tar.gz"] = b"this is not a tar file at all" * 10
    text = failing_compose(f"{{provider: local, path: {tmp_path / 'bad'}, bundled: true, "
                           f"url: '{server.url}/bad.tar.gz'}}", reg)
    assert "not a valid tar archive" in text
    assert leftovers(tmp_path) == []


def test_an_archive_entry_escaping_the_folder_is_refused(server, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("../evil", "gotcha")
    server.files["/evil.zip"] = buf.getvalue()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tf.addfile(info)
    server.files["/link.tar.gz"] = buf.getvalue()
    reg = Registry()
    base = tmp_path / "dl"
    text = failing_compose(f"{{provider: local, path: {base / 'evil'}, bundled: true, url: '{server.url}/evil.zip'}}",
                           reg)
    assert "`../evil`, which would be written outside the model's folder" in text
    text = failing_compose(f"{{provider: local, path: {base / 'link'}, bundled: true, url: '{server.url}/link.tar.gz'}}",
                           reg)
    assert "a link `link` -> `../../etc/passwd`, which points outside" in text
    assert leftovers(base) == [] and not (tmp_path / "evil").exists()


def test_default_path_is_model_composes(monkeypatch, tmp_path):
    from mc_jupyter.config.schema import LocalSource
    from mc_jupyter.drivers.fetch import default_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for url, bundled, name in (("https://h/p/antelopev2.zip", True, "antelopev2"),
                               ("https://h/p/pack.TAR.GZ", True, "pack"), ("https://h/p/pack.tgz", True, "pack"),
                               ("https://h/p/pack.tar", True, "pack"), ("https://h/p/pack.zip", False, "pack.zip"),
                               ("https://h/p/m.gguf?download=1", False, "m.gguf")):
        local = LocalSource.model_validate({"url": url, "bundled": bundled})
        assert default_path(local) == str(tmp_path / "models" / name)
    monkeypatch.delenv("XDG_CACHE_HOME")
    local = LocalSource.model_validate({"url": "https://h/m.gguf"})
    assert default_path(local) == os.path.expanduser("~/.cache/models/m.gguf")
    assert default_path(LocalSource.model_validate({"url": "https://h/m.gguf", "path": "/x/y"})) == "/x/y"
    with pytest.raises(ModelLoadError, match="names no file"):
        default_path(LocalSource.model_validate({"url": "https://h/"}))


def test_a_face_pack_zip_wrapped_in_its_own_folder_is_read_as_model_compose_reads_it(server, tmp_path, monkeypatch):
    """InsightFace's antelopev2.zip holds antelopev2/*.onnx: unpacked to ~/.cache/models/antelopev2/antelopev2/,
    read from the inner folder (model-compose's InsightFace driver flattens it the same way)."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from tests import tiny_faces

    pack = tiny_faces.build_pack(tmp_path / "src" / "antelopev2")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(pack.iterdir()):
            zf.write(path, f"antelopev2/{path.name}")
    server.files["/v0.7/antelopev2.zip"] = buf.getvalue()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    image = Image.fromarray(tiny_faces.image_with_faces((64, 48, 1)))

    def faces(model):
        reg = Registry()
        mc.compose(f"""
components:
  - id: faces
    type: model
    task: face-embedding
    model: {model}
    action:
      image: ${{input.image as image}}
""", registry=reg)
        try:
            return mc.run(inputs={"image": image}, registry=reg).output
        finally:
            reg.down()

    fetched = faces(f"{{provider: local, url: '{server.url}/v0.7/antelopev2.zip', bundled: true}}")
    assert fetched == faces(f"{{provider: local, path: {pack}}}") and len(fetched) == 1
    assert (tmp_path / "xdg" / "models" / "antelopev2" / "antelopev2" / "det_10g.onnx").is_file()
    assert len(server.requests) == 1


def test_a_download_cut_short_leaves_nothing(server, encoder, tmp_path):
    server.files["/cut.tar.gz"] = tar_gz(encoder)
    server.cut.add("/cut.tar.gz")
    reg = Registry()
    text = failing_compose(f"{{provider: local, path: {tmp_path / 'dl' / 'cut'}, bundled: true, "
                           f"url: '{server.url}/cut.tar.gz'}}", reg)
    assert "could not fetch the model of component `emb`" in text and "Nothing was written" in text
    assert ("RemoteProtocolError" in text or "stopped after" in text) and leftovers(tmp_path / "dl") == []
