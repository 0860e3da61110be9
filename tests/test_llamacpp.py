"""driver: llamacpp — a tiny Llama written as GGUF, run by llama.cpp, against transformers on the same weights."""

import pytest

import mc_jupyter as mc
from mc_jupyter.engine import StreamSink
from mc_jupyter.errors import UserError
from tests import reference, tiny_models

pytest.importorskip("llama_cpp", reason="the llamacpp extra (llama-cpp-python) is installed by .ci/run")


@pytest.fixture(scope="module")
def gguf_file(models, tmp_path_factory):
    path = tiny_models.build_gguf(models["causal"], tmp_path_factory.mktemp("gguf") / "tiny-llama.f32.gguf")
    return path


def transformers_text(models, prompt, n):
    # llama.cpp drops the bytes of a token that are not valid UTF-8 on their own; transformers shows U+FFFD
    return reference.generate(models["causal"], prompt, n).replace("\ufffd", "")


def test_greedy_generation_equals_transformers_on_the_same_weights(registry, models, gguf_file):
    mc.compose(f"""
component:
  type: model
  task: text-generation
  driver: llamacpp
  model:
    provider: local
    path: {gguf_file}
    format: gguf
  options: {{n_ctx: 256, n_threads: 2}}
  text: ${{input.prompt}}
  params: {{max_output_length: 16, temperature: 0}}
""", registry=registry)
    for prompt in ("The sky is blue", "Hello world! How are you?"):
        assert mc.run(inputs={"prompt": prompt}, registry=registry).output == transformers_text(models, prompt, 16)
    row = registry.snapshot()[0]
    assert row["driver"] == "llamacpp" and row["device"] == "llama.cpp · cpu" and row["dtype"] == "gguf"


def test_a_hub_repository_with_a_filename_and_streaming(registry, models, gguf_file, hub_cache, tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "tiny.Q4_K_M.gguf").write_bytes(gguf_file.read_bytes())
    tiny_models.place_in_hub_cache(hub_cache, "TheBloke/Tiny-GGUF", folder)
    mc.compose("""
component:
  type: model
  task: text-generation
  driver: llamacpp
  device: cpu
  model: {provider: huggingface, repository: TheBloke/Tiny-GGUF, filename: tiny.Q4_K_M.gguf}
  streaming: true
  text: ${input.prompt}
  params: {max_output_length: 12, temperature: 0}
""", registry=registry)
    chunks = []

    class Sink(StreamSink):
        def chunk(self, text, tokens=None):
            chunks.append(text)

    out = mc.run(inputs={"prompt": "The sky is blue"}, stream=Sink(), registry=registry).output
    assert out == "".join(chunks) == transformers_text(models, "The sky is blue", 12) and len(chunks) > 1


def test_chat_completion_uses_the_chat_template_in_the_gguf(registry, models, gguf_file):
    mc.compose(f"""
component:
  type: model
  task: chat-completion
  driver: llamacpp
  model: {gguf_file}
  options: {{n_ctx: 256}}
  messages:
    - role: user
      content: ${{input.prompt}}
  params: {{max_output_length: 10, temperature: 0}}
""", registry=registry)
    out = mc.run(inputs={"prompt": "Hello"}, registry=registry).output
    prompt = reference.chat_prompt(models["causal"], [{"role": "user", "content": "Hello"}])
    expected = reference.generate(models["causal"], prompt, 10, add_special_tokens=False).replace("\ufffd", "")
    assert out == expected


def test_a_file_that_is_not_gguf_is_a_clear_error(registry, tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(UserError) as info:
        mc.compose(f"component:\n  task: text-generation\n  driver: llamacpp\n  model: {bad}\n", registry=registry)
    assert "llama.cpp could not load" in str(info.value)
    assert registry.snapshot() == []


@pytest.mark.slow
def test_llama_cpp_s_own_server_as_a_managed_http_server(registry, models, gguf_file):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is installed by .ci/run")
    import sys
    from tests.test_servers import free_port, gone
    port = free_port()
    mc.compose(f"""
components:
  - id: server
    type: http-server
    manage:
      start: [{sys.executable}, -m, llama_cpp.server, --model, {gguf_file}, --port, {port}, --n_ctx, 256]
      health_path: /v1/models
      ready_timeout: 60
    port: {port}
    path: /v1/chat/completions
    body:
      messages: [{{role: user, content: "${{input.prompt}}"}}]
      max_tokens: 10
      temperature: 0
      repeat_penalty: 1.0     # the server's default is 1.1; the Python API's is 1.0
      stream: true
    stream_format: json
    output: ${{response[].choices[0].delta.content}}
  - id: local
    type: model
    task: chat-completion
    driver: llamacpp
    model: {gguf_file}
    options: {{n_ctx: 256}}
    messages: [{{role: user, content: "${{input.prompt}}"}}]
    params: {{max_output_length: 10, temperature: 0}}
""", registry=registry)
    served = mc.run("server", {"prompt": "Hello"}, registry=registry).output
    assert served == mc.run("local", {"prompt": "Hello"}, registry=registry).output and served
    pid = registry.entries["server"].driver.process.pid
    registry.unload("server")
    assert gone(pid)
