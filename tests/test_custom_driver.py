"""driver: custom — a user's class in the registry, and the shipped ONNX models against torch."""

import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

import mc_jupyter as mc
from mc_jupyter.engine import StreamSink
from mc_jupyter.errors import UserError


def export_onnx(model, tokenizer, path, output_name):
    enc = tokenizer(["a short example", "another one"], return_tensors="pt", padding=True)
    torch.onnx.export(model, (enc["input_ids"], enc["attention_mask"]), str(path), dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=[output_name],
                      dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                    "attention_mask": {0: "batch", 1: "sequence"}, output_name: {0: "batch"}})
    return path


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class _Hidden(_Logits):
    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def test_an_onnx_classifier_gives_what_its_torch_model_gives(registry, models, tmp_path):
    folder = models["classifier"]
    torch_model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    onnx_path = export_onnx(_Logits(torch_model).eval(), tokenizer, tmp_path / "model.onnx", "logits")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    mc.compose(f"""
component:
  id: sst2
  type: model
  task: text-classification
  driver: custom
  model: {{provider: local, path: {onnx_path}, format: onnx}}
  class: mc_jupyter.custom.onnx:OnnxTextClassifier
  options: {{tokenizer: {folder}}}
  text: ${{input.text}}
""", registry=registry)
    texts = ["I love this movie, it is wonderful", "this is boring and bad", "a lovely, beautiful film"]
    out = mc.run(inputs={"text": texts}, registry=registry).output
    with torch.inference_mode():
        probs = torch.softmax(torch_model(**tokenizer(texts, return_tensors="pt", padding=True)).logits, -1)
    assert [o["label"] for o in out] == ["POSITIVE", "NEGATIVE", "POSITIVE"]
    assert np.allclose([[o["scores"]["NEGATIVE"], o["scores"]["POSITIVE"]] for o in out], probs.numpy(), atol=1e-5)
    row = registry.snapshot()[0]
    assert row["driver"] == "custom" and row["device"] == "onnxruntime · cpu" and row["state"] == "ready"


def test_an_onnx_embedder_gives_what_the_huggingface_driver_gives(registry, models, tmp_path):
    folder = models["encoder"]
    torch_model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    onnx_path = export_onnx(_Hidden(torch_model).eval(), AutoTokenizer.from_pretrained(folder), tmp_path / "enc.onnx",
                            "last_hidden_state")
    mc.compose(f"""
components:
  - id: onnx
    type: model
    task: text-embedding
    driver: custom
    model: {{provider: local, path: {onnx_path}, format: onnx}}
    class: mc_jupyter.custom.onnx:OnnxTextEmbedding
    options: {{tokenizer: {folder}}}
    text: ${{input.text}}
  - id: torch
    type: model
    task: text-embedding
    model: {folder}
    text: ${{input.text}}
""", registry=registry)
    texts = ["cat", "a kitten plays", "the car would not start"]
    ours = np.array([o["embedding"] for o in mc.run("onnx", {"text": texts}, registry=registry).output])
    reference = np.array([o["embedding"] for o in mc.run("torch", {"text": texts}, registry=registry).output])
    assert ours.shape == (3, 32) and np.abs(ours - reference).max() < 1e-5


def test_a_users_own_class_from_a_file_next_to_the_notebook_plugs_in_and_streams(registry, tmp_path, monkeypatch):
    (tmp_path / "shouty.py").write_text(textwrap.dedent('''
        from mc_jupyter.drivers.custom import CustomModel

        class Shouty(CustomModel):
            """Upper-cases its text: the smallest model there is."""
            loads = 0

            def load(self):
                Shouty.loads += 1
                self.suffix = self.options.get("suffix", "!")

            def run(self, fields):
                return fields["text"].upper() + self.suffix

            def stream(self, fields, stop):
                for word in fields["text"].split():
                    yield word.upper() + " "

            def info(self):
                return {"device": "cpu", "parameters": 0}
    '''))
    monkeypatch.chdir(tmp_path)
    text = """
component:
  id: shout
  type: model
  task: text-generation
  driver: custom
  class: ./shouty.py:Shouty
  options: {suffix: "?!"}
  text: ${input.text}
"""
    mc.compose(text, registry=registry)
    assert mc.run(inputs={"text": "hello there"}, registry=registry).output == "HELLO THERE?!"
    mc.compose(text.replace("  text:", "  streaming: true\n  text:"), registry=registry)
    chunks = []

    class Sink(StreamSink):
        def chunk(self, t, tokens=None):
            chunks.append(t)

    assert mc.run(inputs={"text": "a b c"}, stream=Sink(), registry=registry).output == "A B C "
    assert chunks == ["A ", "B ", "C "]
    assert registry.entries["shout"].load_count == 1     # streaming: true is an action field: no reload


@pytest.mark.parametrize("target,fragment", [
    ("./nowhere.py:X", "does not exist"),
    ("mc_jupyter.custom.onnx:NoSuchClass", "has no `NoSuchClass`"),
    ("no_such_module_xyz:Thing", "cannot import `no_such_module_xyz`"),
    ("builtins:dict", "has no `load()` method"),
])
@pytest.mark.slow
def test_a_bad_class_is_a_clear_error_and_changes_nothing(registry, target, fragment):
    with pytest.raises(UserError) as info:
        mc.compose(f"component:\n  task: text-classification\n  driver: custom\n  class: {target}\n", registry=registry)
    assert fragment in str(info.value)
    assert registry.snapshot() == []


def test_class_without_the_custom_driver_is_explained():
    with pytest.raises(UserError) as info:
        mc.read_config("component:\n  task: text-classification\n  class: a:B\n")
    assert "`class:` names a custom model class, but the driver is `huggingface`" in str(info.value)
