"""Components without ``task:`` (spec 8.7): the task comes from the model's files, offline.

Real files only: the tiny models of tests/tiny_models.py (in local folders and in the temporary hub cache
under real ids), the real all-MiniLM-L6-v2 folder, a tiny GGUF, and config files written the way
transformers / diffusers write them. Each inferred task is checked in the plan's note and, for the models
that run here, by a real compose and run whose output equals plain transformers' (tests/reference.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import mc_jupyter as mc
from mc_jupyter.config.infer_task import infer_task
from mc_jupyter.config.positions import Positions
from mc_jupyter.errors import ConfigError
from tests import reference, tiny_models

ALL_TASKS = ("`text-generation`", "`chat-completion`", "`text-classification`", "`text-embedding`",
             "`image-to-text`", "`image-generation`", "`image-upscale`", "`face-embedding`")


def plan_of(yaml: str, registry):
    view = mc.compose(yaml, registry=registry, dry_run=True)
    assert registry.snapshot() == []
    return view


def notes_of(view) -> list:
    return [line for line in repr(view).splitlines() if line.startswith("note:")]


def task_of(view, cid: str = "default") -> str:
    return view.plan.components[cid].settings["task"]


def write_config(folder: Path, name: str, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data))
    return folder


def infer(raw: dict):
    notes: list = []
    return infer_task(raw, ("component",), Positions(), notes), notes


# ------------------------------------------------------------------------------------------------
# What each kind of file says


def test_a_causal_lm_folder_is_text_generation_and_the_plan_says_from_which_file(registry, models):
    view = plan_of(f"component:\n  type: model\n  model: {models['causal']}\n  device: cpu\n", registry)
    assert task_of(view) == "text-generation"
    [note] = notes_of(view)
    assert note == (f"note: component `default` has no `task:`: `text-generation`, from config.json "
                    f"(architectures: LlamaForCausalLM) of `{models['causal']}` (`task: chat-completion` fits "
                    f"too if it has a chat template).")
    assert "would load `default`: text-generation · huggingface" in repr(view)


def test_a_hub_id_is_read_from_the_offline_cache_at_its_revision(registry, models, hub_cache):
    view = plan_of("component:\n  model: gpt2\n", registry)
    assert task_of(view) == "text-generation" and "of `gpt2`" in notes_of(view)[0]
    tagged = plan_of("component:\n  model:\n    repository: meta-llama/Llama-2-7b-hf\n    revision: v1.0\n", registry)
    assert task_of(tagged) == "text-generation"
    with pytest.raises(ConfigError) as failure:   # a revision the cache does not hold
        plan_of("component:\n  model:\n    repository: gpt2\n    revision: v9.9\n", registry)
    message = str(failure.value)
    assert f"not in the local Hugging Face cache ({hub_cache}, revision v9.9)" in message
    assert "huggingface-cli download gpt2 --revision v9.9" in message


def test_the_model_cache_dir_is_where_a_hub_id_is_looked_up(registry, models, tmp_path):
    cache = tmp_path / "cache"
    tiny_models.place_in_hub_cache(cache, "c20/only-here", models["classifier"])
    view = plan_of(f"component:\n  model:\n    provider: huggingface\n    repository: c20/only-here\n"
                   f"    cache_dir: {cache}\n", registry)
    assert task_of(view) == "text-classification"
    assert "config.json (architectures: DistilBertForSequenceClassification) of `c20/only-here`" in repr(view)
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):   # not in the default cache
        plan_of("component:\n  model: c20/only-here\n", registry)


def test_a_sentence_transformers_folder_is_text_embedding(registry, models):
    folder = tiny_models.minilm_folder()
    view = plan_of(f"component:\n  model: {folder}\n", registry)
    assert task_of(view) == "text-embedding"
    assert "from modules.json (a sentence-transformers model)" in notes_of(view)[0]


def test_config_sentence_transformers_alone_is_enough(tmp_path):
    folder = write_config(tmp_path / "st", "config_sentence_transformers.json", {"__version__": {}})
    write_config(folder, "config.json", {"architectures": ["BertModel"], "model_type": "bert"})
    task, [note] = infer({"model": str(folder)})
    assert task == "text-embedding" and "config_sentence_transformers.json" in note


def test_a_base_encoder_without_a_head_is_text_embedding(models):
    task, [note] = infer({"model": str(models["encoder"])})
    assert task == "text-embedding" and "architectures: BertModel" in note


def test_a_diffusers_folder_is_image_generation_and_an_upscaling_pipeline_image_upscale(registry, tmp_path):
    sdxl = write_config(tmp_path / "sdxl", "model_index.json",
                        {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.30.0",
                         "unet": ["diffusers", "UNet2DConditionModel"]})
    view = plan_of(f"component:\n  model: {sdxl}\n", registry)
    assert task_of(view) == "image-generation"
    assert "from model_index.json (a diffusers StableDiffusionXLPipeline)" in notes_of(view)[0]
    ldsr = write_config(tmp_path / "ldsr", "model_index.json", {"_class_name": "LDMSuperResolutionPipeline"})
    assert infer({"model": str(ldsr)})[0] == "image-upscale"


@pytest.mark.parametrize("config,task", [
    ({"architectures": ["VisionEncoderDecoderModel"], "model_type": "vision-encoder-decoder"}, "image-to-text"),
    ({"architectures": ["BlipForConditionalGeneration"], "model_type": "blip"}, "image-to-text"),
    ({"architectures": ["GitForCausalLM"], "model_type": "git"}, "image-to-text"),
    ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}, "text-generation"),
    ({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}, "text-generation"),
    ({"architectures": ["RobertaForSequenceClassification"], "model_type": "roberta"}, "text-classification"),
    ({"architectures": ["BertForSequenceClassification"], "model_type": "bert", "id2label": {"0": "LABEL_0"},
      "sbert_ce_default_activation_function": "torch.nn.modules.activation.Sigmoid"}, "text-reranking"),
    ({"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper"}, "speech-to-text"),
    ({"architectures": ["MarianMTModel"], "model_type": "marian"}, "text-to-text"),
    ({"architectures": ["T5ForConditionalGeneration"], "model_type": "t5"}, "text-to-text"),
    ({"architectures": ["Idefics3ForConditionalGeneration"], "model_type": "idefics3"}, "image-text-to-text"),
    ({"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava"}, "image-text-to-text"),
    ({"architectures": ["Dinov2Model"], "model_type": "dinov2"}, "image-embedding"),
    ({"architectures": ["YolosForObjectDetection"], "model_type": "yolos"}, "object-detection"),
    ({"architectures": ["DepthAnythingForDepthEstimation"], "model_type": "depth_anything"}, "depth-estimation"),
    ({"architectures": ["SegformerForSemanticSegmentation"], "model_type": "segformer"}, "image-segmentation"),
    ({"architectures": ["SamModel"], "model_type": "sam"}, "image-segmentation"),
])
def test_architectures_in_config_json(tmp_path, config, task):
    folder = write_config(tmp_path / "m", "config.json", config)
    got, [note] = infer({"model": str(folder), "id": "m"})
    assert got == task
    assert note.startswith(f"component `m` has no `task:`: `{task}`, from config.json (architectures: "
                           f"{config['architectures'][0]})")


def test_a_gguf_file_is_text_generation_and_the_note_names_its_driver(registry, models, tmp_path):
    gguf = tiny_models.build_gguf(models["causal"], tmp_path / "tiny.gguf")
    view = plan_of(f"component:\n  driver: llamacpp\n  model: {gguf}\n", registry)
    assert task_of(view) == "text-generation"
    assert notes_of(view) == [f"note: component `default` has no `task:`: `text-generation`, from the GGUF file "
                              f"`{gguf}` (a llama.cpp model; `task: chat-completion` or `task: text-embedding` "
                              f"also run on it)."]
    task, [note] = infer({"model": str(gguf)})                      # without the driver: the note says it
    assert task == "text-generation" and note.endswith("; it needs `driver: llamacpp`.")
    task, _ = infer({"driver": "llamacpp", "model": {"provider": "local", "path": str(gguf), "format": "gguf"}})
    assert task == "text-generation"
    # a hub repository's GGUF file, by its name
    task, [note] = infer({"driver": "llamacpp", "model": {"repository": "c20/gguf", "filename": "m.Q4_K_M.gguf"}})
    assert task == "text-generation" and "the GGUF file `m.Q4_K_M.gguf` of `c20/gguf`" in note
    # a folder of GGUF files
    folder = tmp_path / "ggufs"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(gguf.read_bytes())
    task, [note] = infer({"driver": "llamacpp", "model": str(folder)})
    assert task == "text-generation" and "the GGUF file `model.gguf`" in note


def test_an_architecture_word_names_its_task_without_reading_files():
    assert infer({"architecture": "sdxl"}) == ("image-generation", [
        "component `default` has no `task:`: `image-generation`, from `architecture: sdxl`."])
    assert infer({"architecture": "real-esrgan", "model": "RealESRGAN_x4plus"})[0] == "image-upscale"
    assert infer({"architecture": "blip", "model": "c20/not-cached"})[0] == "image-to-text"


def test_no_model_keeps_the_plain_missing_task_message(registry):
    assert infer({"type": "model"}) == (None, [])
    with pytest.raises(ConfigError) as failure:
        plan_of("component:\n  type: model\n  device: cpu\n", registry)
    assert "the required key `task` is missing" in str(failure.value)


# ------------------------------------------------------------------------------------------------
# Files that do not say: a clear error at the component, nothing composed


def test_a_masked_lm_fits_two_tasks_and_the_error_lists_both(registry, tmp_path):
    folder = write_config(tmp_path / "mlm", "config.json", {"architectures": ["BertForMaskedLM"], "model_type": "bert"})
    mc.compose("component:\n  id: kept\n  task: text-generation\n  model: gpt2\n", registry=registry,
               dry_run=True)
    with pytest.raises(ConfigError) as failure:
        mc.compose(f"components:\n  - id: a\n    model: gpt2\n  - id: mlm\n    type: model\n    model: {folder}\n",
                   registry=registry)
    error = failure.value
    assert error.path == "components[1]" and error.line == 4
    assert error.bare_message == (f"the required key `task` is missing, and config.json (architectures: "
                                  f"BertForMaskedLM) of `{folder}` fits more than one task: `text-embedding` or "
                                  f"`text-classification`")
    assert error.hint == "Add `task: text-embedding` (or `task: text-classification`)."
    assert registry.snapshot() == []


def test_clip_fits_image_and_text_embedding_and_the_error_lists_both(tmp_path):
    folder = write_config(tmp_path / "clip", "config.json", {"architectures": ["CLIPModel"], "model_type": "clip"})
    with pytest.raises(ConfigError) as e:
        infer({"model": str(folder), "id": "c"})
    assert "`image-embedding`" in str(e.value) and "`text-embedding`" in str(e.value)


def test_two_architectures_of_different_tasks_are_ambiguous(tmp_path):
    folder = write_config(tmp_path / "two", "config.json",
                          {"architectures": ["LlamaForCausalLM", "LlamaForSequenceClassification"]})
    with pytest.raises(ConfigError, match="fits more than one task: `text-generation` or `text-classification`"):
        infer({"model": str(folder)})


def test_an_architecture_no_task_runs_lists_every_task(tmp_path):
    folder = write_config(tmp_path / "vit", "config.json",
                          {"architectures": ["ViTForImageClassification"], "model_type": "vit"})
    with pytest.raises(ConfigError) as failure:
        infer({"model": str(folder)})
    assert "config.json (architectures: ViTForImageClassification)" in failure.value.bare_message
    assert "names no model that a task here runs" in failure.value.bare_message
    assert all(t in failure.value.hint for t in ALL_TASKS) and failure.value.hint.startswith("Add `task:`")


def test_the_driver_narrows_the_candidates(models):
    with pytest.raises(ConfigError) as failure:
        infer({"driver": "llamacpp", "model": str(models["classifier"])})
    assert "says `text-classification`, which `driver: llamacpp` does not do" in failure.value.bare_message
    assert failure.value.hint == ("Add `task: text-classification`, with a driver that does it instead of "
                                  "`driver: llamacpp`.")
    # vllm does text-generation and chat-completion: the causal LM's one candidate is among them
    assert infer({"driver": "vllm", "model": str(models["causal"])})[0] == "text-generation"


def test_a_model_not_in_the_cache_says_its_files_could_not_be_read_offline_fast(registry, hub_cache):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as failure:
        plan_of("component:\n  type: model\n  model: c20/never-downloaded\n", registry)
    assert time.perf_counter() - start < 5          # no network retries
    error = failure.value
    assert error.path == "component" and error.line == 1
    assert error.bare_message == ("the required key `task` is missing, and the files of `c20/never-downloaded` "
                                  "could not be read offline to infer it: it is not in the local Hugging Face "
                                  f"cache ({hub_cache}, revision main), and composing never downloads")
    assert all(t in error.hint for t in ALL_TASKS)
    assert "(`huggingface-cli download c20/never-downloaded`)" in error.hint


def test_a_local_path_that_is_not_there(tmp_path):
    with pytest.raises(ConfigError) as failure:
        infer({"model": {"provider": "local", "path": str(tmp_path / "gone")}})
    assert f"the local path `{tmp_path / 'gone'}` does not exist" in failure.value.bare_message
    assert "huggingface-cli" not in failure.value.hint


def test_a_binding_in_model_cannot_be_read_while_composing(monkeypatch):
    monkeypatch.setenv("C20_MODEL", "gpt2")
    with pytest.raises(ConfigError, match=r"`model:` is a `\$\{...\}` binding, known only when it runs"):
        infer({"model": "${env.C20_MODEL}"})


def test_a_config_that_is_not_json(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config.json \(not valid JSON\)"):
        infer({"model": str(folder)})


def test_a_folder_without_any_model_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="could not be read offline"):
        infer({"model": str(tmp_path / "empty")})


# ------------------------------------------------------------------------------------------------
# Composed for real: the inferred task runs


def test_an_inferred_text_generation_component_runs_like_generate(registry, models):
    mc.compose(f"component:\n  model: {models['causal']}\n  device: cpu\n  text: ${{input.prompt}}\n"
               f"  params:\n    max_output_length: 8\n",
               registry=registry)
    [row] = registry.snapshot()
    assert row["task"] == "text-generation" and row["state"] == "ready"
    out = mc.run(inputs={"prompt": "Once upon a time"}, registry=registry).output
    assert out == reference.generate(models["causal"], "Once upon a time", 8)


def test_an_inferred_classifier_from_the_hub_cache_runs_like_transformers(registry, models):
    mc.compose("component:\n  model: distilbert-base-uncased-finetuned-sst-2-english\n  device: cpu\n"
               "  text: ${input.text}\n",
               registry=registry)
    out = mc.run(inputs={"text": "I love this movie, it is wonderful"}, registry=registry).output
    label, score = reference.classify(models["classifier"], "I love this movie, it is wonderful")
    assert out["label"] == label == "POSITIVE" and out["score"] == pytest.approx(score, abs=1e-5)


@pytest.mark.slow
def test_an_inferred_minilm_embeds_like_sentence_transformers(registry):
    mc.compose(f"component:\n  model: {tiny_models.minilm_folder()}\n  device: cpu\n  text: ${{input.text}}\n",
               registry=registry)
    out = mc.run(inputs={"text": "Local models run on your own machine."}, registry=registry).output
    vector = out["embedding"] if isinstance(out, dict) else out
    assert vector == pytest.approx(reference.minilm_embedding("Local models run on your own machine."), abs=1e-5)


def test_a_single_pth_file_is_an_upscaler_and_another_lone_file_says_nothing(tmp_path):
    weights = tmp_path / "RealESRGAN_x4plus.pth"
    weights.write_bytes(b"\0" * 16)
    task, [note] = infer({"model": str(weights)})
    assert task == "image-upscale"
    assert note == (f"component `default` has no `task:`: `image-upscale`, from the weights file `{weights}` "
                    f"(.pth: an upscaler's).")
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\0" * 16)
    with pytest.raises(ConfigError) as failure:
        infer({"model": str(other)})
    assert failure.value.bare_message == (f"the required key `task` is missing, and the file `{other}` names no "
                                          f"model that a task here runs")
