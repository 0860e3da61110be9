"""The task layer owns inputs, single-or-list, batches and the result's shape, whatever the backend:
a list run in batches equals each input run alone and the raw library; one input gives one result; an
empty list gives an empty list; a non-text item is one InputError for every text task."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

import mc_jupyter as mc
from mc_jupyter.config.loader import load_yaml
from mc_jupyter.config.schema import parse_compose
from mc_jupyter.errors import InputError

TEXTS = ["I love this movie, it is wonderful", "this is boring and bad", "a lovely, beautiful film",
         "the worst thing I have seen", "ok"]


def _compose(registry, models, task, extra=""):
    key = "classifier" if task == "text-classification" else "encoder"
    mc.compose(f"""
component:
  id: c
  type: model
  task: {task}
  model: {models[key]}
  text: ${{input.text}}
  batch_size: 2
{extra}""", registry=registry)


def _values(task, out):
    if task == "text-classification":
        return np.array([[o["scores"]["NEGATIVE"], o["scores"]["POSITIVE"]] for o in out])
    return np.array([o["embedding"] for o in out])


def _raw(task, models, texts):
    """What the library itself gives, one text at a time."""
    if task == "text-classification":
        folder = models["classifier"]
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    else:
        folder = models["encoder"]
        model = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    rows = []
    with torch.inference_mode():
        for text in texts:
            enc = tok([text], return_tensors="pt", truncation=True)
            if task == "text-classification":
                rows.append(torch.softmax(model(**enc).logits.float(), -1)[0].numpy())
            else:
                hidden = model(**enc).last_hidden_state.float()
                mask = enc["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1)[0].numpy())
    return np.array(rows)


@pytest.mark.parametrize("task", ["text-classification", "text-embedding"])
def test_a_list_in_batches_equals_each_input_alone_and_the_raw_library(registry, models, task, monkeypatch):
    _compose(registry, models, task, "  params: {pooling: mean, normalize: true}" if task == "text-embedding" else "")
    driver = registry.entries["c"].driver
    sizes = []
    original = type(driver).generate

    def counting(self, items, params):
        sizes.append(len(items))
        return original(self, items, params)

    monkeypatch.setattr(type(driver), "generate", counting)
    together = mc.run(inputs={"text": TEXTS}, registry=registry).output
    assert isinstance(together, list) and len(together) == 5
    assert sizes == [2, 2, 1]                          # batch_size: 2, owned by the task layer
    alone = [mc.run(inputs={"text": t}, registry=registry).output for t in TEXTS]
    assert all(isinstance(one, dict) for one in alone)   # one input: one result, not a list of one
    assert np.abs(_values(task, together) - _values(task, alone)).max() < 1e-5
    assert np.abs(_values(task, together) - _raw(task, models, TEXTS)).max() < 1e-5
    if task == "text-classification":
        assert [o["label"] for o in together] == [o["label"] for o in alone]
        assert [o["label"] for o in together[:2]] == ["POSITIVE", "NEGATIVE"]
    else:
        assert {o["dimensions"] for o in together} == {32}


@pytest.mark.parametrize("task", ["text-classification", "text-embedding"])
def test_an_empty_list_gives_an_empty_list(registry, models, task):
    _compose(registry, models, task)
    assert mc.run(inputs={"text": []}, registry=registry).output == []


@pytest.mark.parametrize("bad,where", [({"a": 1}, "item 1 of `text:` is a dict"), (None, "item 1 of `text:` is a NoneType"),
                                       (["x"], "item 1 of `text:` is a list")])
def test_a_non_text_item_is_the_same_input_error_for_classification_and_embedding(registry, models, bad, where):
    messages = []
    for task in ("text-classification", "text-embedding"):
        _compose(registry, models, task)
        with pytest.raises(InputError) as info:
            mc.run(inputs={"text": ["fine", bad]}, registry=registry)
        messages.append(str(info.value).replace(task, "TASK"))
        assert f"{task} takes text, but {where}" in str(info.value)
    assert messages[0] == messages[1]


def test_numbers_as_text_stay_text_as_before(registry, models):
    _compose(registry, models, "text-classification")
    out = mc.run(inputs={"text": [5, 2.5]}, registry=registry).output
    assert len(out) == 2 and {o["label"] for o in out} <= {"POSITIVE", "NEGATIVE"}


def test_a_custom_class_that_fills_generate_gets_lists_batches_and_the_result_shape(registry, tmp_path, monkeypatch):
    (tmp_path / "counting.py").write_text(textwrap.dedent('''
        from mc_jupyter.drivers.custom import CustomModel

        class Lengths(CustomModel):
            batches = []

            def load(self):
                self.labels = ["short", "long"]

            def generate(self, texts, params):
                Lengths.batches.append(list(texts))
                return [[0.75, 0.25] if len(t) < 4 else [0.25, 0.75] for t in texts]
    '''))
    monkeypatch.chdir(tmp_path)
    mc.compose("""
component:
  id: lengths
  type: model
  task: text-classification
  driver: custom
  class: ./counting.py:Lengths
  text: ${input.text}
  params: {batch_size: 2}
""", registry=registry)
    out = mc.run(inputs={"text": ["a", "abcdef", "ab"]}, registry=registry).output
    assert [o["label"] for o in out] == ["short", "long", "short"]
    assert out[1] == {"label": "long", "score": 0.75, "label_id": 1, "scores": {"short": 0.25, "long": 0.75}}
    one = mc.run(inputs={"text": "abcdef"}, registry=registry).output
    assert one["label"] == "long"
    module = sys.modules[type(registry.entries["lengths"].driver.impl).__module__]
    assert module.Lengths.batches == [["a", "abcdef"], ["ab"], ["abcdef"]]
    with pytest.raises(InputError, match="text-classification got no text"):
        mc.run(inputs={"text": None}, registry=registry)


@pytest.mark.parametrize("yaml_text", [
    """
component:
  id: a
  type: model
  task: text-classification
  driver: custom
  model: {provider: local, path: ./m.onnx, format: onnx}
  class: mc_jupyter.custom.onnx:OnnxTextClassifier
  options: {tokenizer: ./tok, nested: {x: [1, 2]}}
  labels: {0: bad, 1: good}
  text: ${input.text}
""",
    """
component:
  type: model
  task: text-generation
  driver: custom
  class: ./shouty.py:Shouty
  device: cuda
  precision: float16
  max_memory: {0: 10GiB, cpu: 20GiB}
  peft_adapters: [{name: a, model: ./lora}]
  trust_remote_code: true
  preload: false
  prompt: ${input.text}
  params: {max_output_length: 5}
""",
    """
components:
  - id: b
    task: text-embedding
    driver: custom
    class: x:Y
    model: sentence-transformers/all-MiniLM-L6-v2
    action: {text: "${input.text}"}
"""])
def test_a_custom_class_gets_the_settings_as_written(yaml_text):
    """The plain dict a user's class receives, rebuilt from the typed config, is ComponentSpec.settings."""
    from mc_jupyter.drivers.custom import user_settings
    spec = next(iter(parse_compose(*load_yaml(yaml_text)).components.values()))
    settings = user_settings(spec.config)
    assert settings == spec.settings
    assert all(type(v) in (str, bool, int, float, dict, list) for v in settings.values())


def test_the_task_modules_import_no_torch():
    code = ("import sys; import mc_jupyter.tasks.classification, mc_jupyter.tasks.embedding, "
            "mc_jupyter.tasks.image_to_text, mc_jupyter.tasks.image_generation, mc_jupyter.tasks.upscale, "
            "mc_jupyter.tasks.face_embedding; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"
