"""model-compose 0.4.120's own keys for the model tasks we have (issue #17): files written in its shape
compose unchanged, and run on the tiny stand-ins with the values model-compose's meaning gives.

The YAML here is ours, written in model-compose's shape (``components:`` list, ``action:``, ``family:``,
``peft_adapter:``, ``return_probabilities`` on the action...), not copied from its examples.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mc_jupyter as mc
from mc_jupyter.api import read_config
from mc_jupyter.errors import ConfigError
from tests import tiny_upscalers
from tests.test_image_upscale import direct, published_rrdb


def compose(registry, text: str):
    return mc.compose(text, registry=registry)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        read_config(text)
    return str(info.value)


def test_return_probabilities_on_the_action_adds_model_composes_probabilities_list(registry, models):
    compose(registry, """
components:
  - id: sentiment
    type: model
    task: text-classification
    driver: huggingface
    model: distilbert-base-uncased-finetuned-sst-2-english
    action:
      text: ${input.text}
      return_probabilities: ${input.probs as boolean | true}
      batch_size: 2
""")
    out = mc.run("sentiment", {"text": ["I love this movie, it is wonderful", "this is boring and bad"]},
                 registry=registry).output
    assert [o["label"] for o in out] == ["POSITIVE", "NEGATIVE"]
    for o in out:
        assert o["probabilities"] == pytest.approx(list(o["scores"].values()), abs=1e-7)
        assert o["label_id"] == int(np.argmax(o["probabilities"]))
    plain = mc.run("sentiment", {"text": "I love this movie", "probs": False}, registry=registry).output
    assert "probabilities" not in plain and plain["label"] == "POSITIVE"


def test_text_embedding_pooling_under_params_on_the_action_matches_cls_pooling(registry, models):
    from transformers import AutoModel, AutoTokenizer
    compose(registry, f"""
components:
  - id: embedder
    type: model
    task: text-embedding
    model: {models['encoder']}
    fast_tokenizer: true
    max_seq_length: 128
    action:
      text: ${{input.text}}
      batch_size: 4
      params:
        pooling: cls
        normalize: false
""")
    out = mc.run("embedder", {"text": ["a b c", "d"]}, registry=registry).output
    tok = AutoTokenizer.from_pretrained(models["encoder"])
    model = AutoModel.from_pretrained(models["encoder"])
    enc = tok(["a b c", "d"], return_tensors="pt", padding=True)
    cls = model(**enc).last_hidden_state[:, 0].detach().numpy()
    assert np.abs(np.array([o["embedding"] for o in out]) - cls).max() < 1e-5


def test_noted_keys_compose_with_one_note_and_change_nothing(models):
    config = read_config(f"""
components:
  - id: chat
    type: model
    task: chat-completion
    model: {models['causal']}
    on_demand: {{priority: high, idle_timeout: 5m}}
    runtime_spec: {{vram: 2048, ram: 1024}}
    reasoning_parser: {{start_tag: <think>, end_tag: </think>}}
    action:
      messages: ${{input.messages}}
      params: {{num_beams: 1, temperature: 0.5}}
""")
    note = next(n for n in config.notes if "component `chat`" in n)
    for key in ("on_demand", "runtime_spec", "reasoning_parser"):
        assert f"`{key}`" in note
    action = config.components["chat"].actions[config.components["chat"].default_action]
    assert action.fields["params"] == {"num_beams": 1, "temperature": 0.5}


def test_image_upscaling_with_family_and_component_scale_runs_our_real_esrgan(registry, tmp_path, monkeypatch):
    hub = Path(os.environ["HF_HOME"]) / "hub"
    weights = tiny_upscalers.build_all(tmp_path / "weights", hub)
    monkeypatch.setenv("MC_JUPYTER_WEIGHTS", str(weights["x4"].parent))
    compose(registry, """
components:
  - id: upscaler
    type: model
    task: image-upscaling
    driver: custom
    family: real-esrgan
    model: RealESRGAN_x4plus
    scale: 4
    action:
      image: ${input.image as image}
      params:
        tile_size: 0
        tile_pad_size: 10
        half_precision: false
""")
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (13, 19, 3), dtype=np.uint8))
    out = mc.run("upscaler", {"image": picture}, registry=registry).output
    assert out.size == (76, 52)
    assert np.array_equal(np.asarray(out), direct(published_rrdb(weights["x4"]), picture))
    spec = registry.get("upscaler").spec
    assert spec.config.architecture == "real-esrgan" and spec.config.driver == "huggingface"


def test_llamacpp_context_length_is_the_context_window(models):
    config = read_config("""
components:
  - id: llm
    type: model
    task: chat-completion
    driver: llamacpp
    model: {provider: local, path: ./model.gguf, format: gguf}
    context_length: 4096
    options: {n_gpu_layers: 0}
    action:
      messages: ${input.messages}
""")
    assert dict(config.components["llm"].config.options) == {"n_ctx": 4096, "n_gpu_layers": 0}


def test_peft_adapter_singular_and_quantization_mapping_are_ours(models):
    config = read_config(f"""
components:
  - id: tuned
    type: model
    task: text-generation
    model: {models['causal']}
    quantization: {{type: nf4, compute_dtype: bfloat16, double_quant: true}}
    peft_adapter:
      type: lora
      model: {models['lora_alpaca']}
      weight: 0.5
    device: cuda:0
    action:
      prompt: ${{input.prompt}}
      max_output_length: 8
      min_output_length: 1
      num_return_sequences: 1
""")
    c = config.components["tuned"].config
    assert c.quantization == "nf4" and c.device == "cuda:0"
    assert [(a.name, a.weight) for a in c.peft_adapters] == [("adapter_1", 0.5)]
    assert any("`quantization.compute_dtype`" in n and "`quantization.double_quant`" in n for n in config.notes)


def test_image_generation_spellings_are_aliases(models):
    config = read_config("""
components:
  - id: painter
    type: model
    task: image-generation
    architecture: sdxl
    model: stabilityai/sdxl-turbo
    action:
      prompt: ${input.prompt}
      params: {inference_steps: 2, width: 64, height: 64}
      num_return_images: 2
""")
    fields = config.components["painter"].actions["default"].fields
    assert fields["params"] == {"num_inference_steps": 2, "width": 64, "height": 64}
    assert fields["num_images"] == 2


@pytest.mark.parametrize("yaml,expected", [
    ("  task: text-generation\n  precision: float8_e4m3\n", "`precision: float8_e4m3` is model-compose's, but not supported here"),
    ("  task: text-generation\n  quantization: fp4\n", "`quantization: fp4` is model-compose's, but not supported here"),
    ("  task: image-upscaling\n  family: waifu2x\n", "unknown family `waifu2x` for task `image-upscale`"),
    ("  task: text-generation\n  family: qwen\n", "names one of model-compose's built-in custom models"),
    ("  task: text-classification\n  text: x\n  return_probabilty: true\n", "did you mean `return_probabilities`?"),
    ("  task: text-classification\n  text: x\n  pooling: cls\n", "task `text-classification` takes no parameter `pooling`"),
    ("  task: text-generation\n  quantization: {type: nf4, bits: 4}\n", "unknown key `bits` in `quantization:`"),
    ("  task: text-generation\n  model: {name: v6-small}\n", "`provider: named`"),
    ("  task: text-generation\n  model: {provider: local}\n", "a local model needs `path:` or `url:`"),
])
def test_what_neither_source_knows_is_still_an_error_with_help(yaml, expected):
    assert expected in error_of("component:\n" + yaml)


def test_a_task_parameter_on_the_action_is_checked_like_under_params():
    message = error_of("component:\n  task: text-embedding\n  text: x\n  temperature: 0.3\n")
    assert "takes no parameter `temperature`" in message and "`pooling`" in message


def test_the_device_index_is_checked_against_the_gpus_here(registry, models):
    compose(registry, f"component:\n  id: g\n  task: text-generation\n  model: {models['causal']}\n"
                      f"  device: cuda:{torch.cuda.device_count()}\n  prompt: ${{input.p}}\n  preload: false\n")
    with pytest.raises(Exception) as info:
        mc.run("g", {"p": "hi"}, registry=registry)
    assert f"`device: cuda:{torch.cuda.device_count()}` was asked for" in str(info.value)


def test_max_input_length_keeps_the_prompts_first_tokens(registry, models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    compose(registry, f"""
component:
  type: model
  task: text-generation
  model: {models['causal']}
  prompt: ${{input.text}}
  params: {{max_input_length: 4, max_output_length: 6, do_sample: false}}
""")
    prompt = "one two three four five six seven eight nine ten"
    out = mc.run(inputs={"text": prompt}, registry=registry).output
    tok = AutoTokenizer.from_pretrained(models["causal"])
    model = AutoModelForCausalLM.from_pretrained(models["causal"])
    enc = tok([prompt], return_tensors="pt", truncation=True, max_length=4)
    assert enc["input_ids"].shape[1] == 4
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out == tok.decode(ids[0, 4:], skip_special_tokens=True)


def test_a_workflow_without_jobs_is_one_job_on_the_component(registry, models):
    compose(registry, """
controller:
  type: http-server
  port: 8080
  webui: {driver: gradio, port: 8081}
workflow:
  title: Classify text
  description: One job, model-compose's shorthand
  input: ${input}
  output:
    predicted: ${output.label}
component:
  type: model
  task: text-classification
  model: distilbert-base-uncased-finetuned-sst-2-english
  max_concurrent_count: 1
  text: ${input.text}
  params:
    return_probabilities: true
""")
    assert mc.run(inputs={"text": "I love this movie, it is wonderful"}, registry=registry).output == \
        {"predicted": "POSITIVE"}


def test_llamacpp_engine_keys_on_the_component_go_to_options():
    config = read_config("""
component:
  type: model
  task: text-generation
  driver: llamacpp
  model: {provider: local, path: ./m.gguf, format: gguf}
  context_length: 2048
  n_batch: 256
  prompt: ${input.prompt}
""")
    assert dict(config.components["default"].config.options) == {"n_ctx": 2048, "n_batch": 256}


def test_a_model_compose_task_not_built_here_says_so():
    message = error_of("component:\n  task: text-to-speech\n  family: vibevoice\n")
    assert "task `text-to-speech` is model-compose's, and not built here yet" in message
    assert "`text-generation`" in message


def test_qwen_image_and_hunyuan_image_name_their_diffusers_pipelines(registry, tmp_path):
    from mc_jupyter.drivers.diffusers_generation import PIPELINES
    import diffusers
    assert all(hasattr(diffusers, PIPELINES[a]) for a in ("qwen-image", "hunyuan-image"))
    config = read_config("component:\n  task: image-generation\n  architecture: qwen-image\n  model: Qwen/Qwen-Image\n"
                         "  prompt: ${input.prompt}\n")
    assert config.components["default"].config.architecture == "qwen-image"


def test_chat_template_on_the_component_is_the_template_the_prompt_goes_through(registry, models):
    from tests import reference
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]"
    compose(registry, f"""
components:
  - id: chat
    type: model
    task: chat-completion
    model: {models['causal']}
    chat_template: "{template}"
    action:
      messages:
        - role: system
          content: Be brief.
        - role: user
          content: ${{input.question}}
      params: {{max_output_length: 5, do_sample: false}}
""")
    out = mc.run("chat", {"question": "What is 2+2?"}, registry=registry).output
    text = "[system] Be brief.\n[user] What is 2+2?\n[assistant]"
    assert out == reference.generate(models["causal"], text, 5, add_special_tokens=False)


def test_chat_template_through_llamacpp_is_refused_with_the_reason():
    message = error_of("component:\n  task: chat-completion\n  driver: llamacpp\n  chat_template: x\n")
    assert "llama.cpp applies the GGUF's own template" in message


def test_beam_search_params_reach_generate(registry, models):
    from tests import reference
    compose(registry, f"""
component:
  type: model
  task: text-generation
  model: {models['causal']}
  prompt: ${{input.text}}
  params: {{max_output_length: 6, do_sample: false, num_beams: 3, length_penalty: 0.5, early_stopping: true}}
""")
    out = mc.run(inputs={"text": "The sky is"}, registry=registry).output
    assert out == reference.generate(models["causal"], "The sky is", 6, num_beams=3, length_penalty=0.5,
                                     early_stopping=True)


def test_a_component_marked_default_is_what_a_job_and_a_run_without_one_use(registry, models):
    compose(registry, f"""
components:
  - id: other
    type: model
    task: text-embedding
    model: {models['encoder']}
    text: ${{input.text}}
  - id: sentiment
    type: model
    task: text-classification
    default: true
    model: distilbert-base-uncased-finetuned-sst-2-english
    text: ${{input.text}}
""")
    assert mc.run(inputs={"text": "I love this movie, it is wonderful"}, registry=registry).output["label"] == "POSITIVE"
    config = read_config(f"""
components:
  - {{id: a, task: text-embedding, text: x}}
  - {{id: b, task: text-embedding, text: y, default: true}}
workflow:
  job:
    input: ${{input}}
""")
    assert config.workflows["default"].jobs[0].component == "b"
    assert "2 components are marked `default: true`" in error_of(
        "components:\n  - {id: a, task: text-embedding, default: true}\n  - {id: b, task: text-embedding, default: true}\n")


def test_model_composes_architecture_words(models):
    config = read_config(f"component:\n  task: text-embedding\n  architecture: sbert\n  model: {models['encoder']}\n"
                         f"  text: x\n")
    assert config.components["default"].config.architecture is None
    assert any("`architecture: sbert`" in n for n in config.notes)
    assert read_config("component:\n  task: text-generation\n  architecture: auto\n  prompt: x\n"
                       ).components["default"].config.architecture is None
    assert "BLIP-2 is not built here yet" in error_of("component:\n  task: image-to-text\n  architecture: blip2\n")


def test_components_actions_and_jobs_keyed_by_id_are_lists_with_those_ids(registry, models):
    compose(registry, f"""
components:
  sentiment:
    type: model
    task: text-classification
    model: distilbert-base-uncased-finetuned-sst-2-english
    actions:
      judge:
        text: ${{input.text}}
        output: ${{result.label}}
workflows:
  review:
    jobs:
      first:
        component: sentiment
        action: judge
        input: ${{input}}
""")
    assert mc.run("review", {"text": "I love this movie, it is wonderful"}, registry=registry).output == "POSITIVE"
    message = error_of("components:\n  a:\n    task: text-classification\n    txt: x\n")
    assert "line 4" in message and "unknown key `txt`" in message


@pytest.mark.parametrize("runtime,says", [
    ("docker", "model-compose would run it in a docker container; here it runs in this kernel"),
    ("{type: virtualenv, path: .venv/x}", "model-compose would run it in its own virtualenv; here it runs in this kernel"),
    ("process", "model-compose would run it in a separate process; here it runs in this kernel"),
])
def test_the_plan_says_what_runtime_does_here(registry, models, runtime, says):
    plan = mc.compose(f"component:\n  id: s\n  task: text-classification\n  runtime: {runtime}\n"
                      f"  model: distilbert-base-uncased-finetuned-sst-2-english\n  text: ${{input.text}}\n",
                      registry=registry)
    assert says in repr(plan)
    assert mc.run("s", {"text": "I love this movie"}, registry=registry).output["label"] == "POSITIVE"


def test_a_job_that_passes_the_whole_input_shows_its_components_inputs(registry, models):
    compose(registry, f"""
workflow:
  title: Compare sentences
  input: ${{input}}
  output:
    run: ${{context.run_id}}
    dimensions: ${{output[0].dimensions}}
components:
  - id: embedder
    type: model
    task: text-embedding
    model: {models['encoder']}
    action:
      text: ${{input.sentences @(description Sentences to compare)}}
      params:
        normalize: ${{input.normalize as boolean | true @(description Unit-length vectors)}}
""")
    from mc_jupyter.workflows import inputs_of
    found = {f.name: f for f in inputs_of(registry)}
    assert found["sentences"].description == "Sentences to compare" and not found["sentences"].has_default
    assert found["normalize"].type == "boolean" and found["normalize"].default is True
    out = mc.run(inputs={"sentences": ["a b", "c"]}, registry=registry).output
    assert out["dimensions"] == 32 and len(out["run"]) == 32 and int(out["run"], 16) >= 0


@pytest.mark.parametrize("yaml,expected", [
    ("component:\n  task: text-generation\n  prompt: x\n  stream: true\n", "Write `streaming: true`"),
    ("component:\n  type: http-client\n  endpoint: http://x/y\n  response_type: buffer\n", "read by its content type"),
])
def test_keys_of_an_older_model_compose_say_what_to_write_instead(yaml, expected):
    message = error_of(yaml)
    assert "is a key of an older model-compose; 0.4.120 no longer reads it" in message and expected in message


def test_an_older_sse_text_format_is_todays_stream_text(registry, models):
    compose(registry, f"""
workflow:
  title: Summarize
  job:
    component: writer
    input: ${{input}}
    output: ${{output as text;sse-text}}
component:
  id: writer
  type: model
  task: text-generation
  model: {models['causal']}
  text: ${{input.text as text}}
  streaming: true
  params: {{max_output_length: 5, do_sample: false}}
""")
    from tests import reference
    out = mc.run(inputs={"text": "The sky is"}, registry=registry).output
    assert out == reference.generate(models["causal"], "The sky is", 5)
    from mc_jupyter.errors import UserError
    with pytest.raises(UserError) as info:
        mc.compose("component:\n  task: text-generation\n  prompt: ${input.x as text;sse-xml}\n", dry_run=True,
                   registry=registry)
    assert "`;sse-xml` is not a format" in str(info.value)


def test_gateways_and_tunnels_are_said_to_be_out_of_scope_when_composed():
    config = read_config("gateway:\n  type: ssh-tunnel\n  port: 8090\ncomponent:\n  task: text-embedding\n  text: x\n")
    assert any("`gateway:` is accepted and ignored: gateways and tunnels are out of scope here" in n
               for n in config.notes)
    from mc_jupyter.errors import UserError
    with pytest.raises(UserError) as info:
        mc.compose("component:\n  type: http-client\n  endpoint: http://x/y\n"
                   "  body: {callback: 'http://${gateway:8090.public_address}/cb'}\n", dry_run=True,
                   registry=__import__("mc_jupyter.registry", fromlist=["Registry"]).Registry())
    assert "gateway" in str(info.value) and "public address" in str(info.value)


def test_an_http_server_without_a_port_takes_model_composes_8000(registry):
    plan = repr(mc.compose("component:\n  id: s\n  type: http-server\n  start: [python, -m, http.server]\n"
                           "  path: /\n  method: GET\n", dry_run=True, registry=registry))
    assert "port 8000" in plan and "gives no `port:`: 8000, model-compose's default" in plan
    from mc_jupyter.drivers.http_components import DEFAULT_PORT
    assert DEFAULT_PORT == 8000


def test_family_sam_is_transformers_sam_and_yolo_says_what_to_write_instead():
    config = read_config("component:\n  type: model\n  task: image-segmentation\n  driver: custom\n  family: sam\n"
                         "  model: facebook/sam-vit-base\n  image: ${input.image as image}\n")
    assert config.components["default"].config.driver == "huggingface"
    message = error_of("component:\n  type: model\n  task: object-detection\n  driver: custom\n  family: yolo\n"
                       "  model: yolo11n.pt\n")
    assert "line 5" in message and "`family: yolo`" in message and "hustvl/yolos-tiny" in message
    message = error_of("component:\n  task: speech-to-text\n  driver: custom\n  family: faster-whisper\n")
    assert "openai/whisper-small" in message
