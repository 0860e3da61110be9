"""The notebook's web UI: ``mc.form`` / ``%mc form`` and ``mc.inputs`` / ``%mc inputs`` (issue #17).

Compose files in model-compose's shape whose inputs carry ``select/``, ``@(description ...)``, defaults,
``integer``, ``number``, ``boolean`` and ``image``; the form is built in-process and driven from Python
(values set, the Run button clicked); the outputs, the validation messages, the ``%%run`` body round
trip and the inputs table are asserted. The classifier is the tiny stand-in of tests/tiny_models.py.
"""

from __future__ import annotations

import io
import textwrap

import pytest
import yaml
from IPython.core.error import UsageError
from PIL import Image

from mc_jupyter import api
from mc_jupyter.drivers.custom import CustomModel
from mc_jupyter.errors import InputError, McJupyterError
from mc_jupyter.secrets import read_env
from tests import reference
from tests.conftest import run_cell


class Echo(CustomModel):
    """Answers with the mapping its ``text`` field was given (what the form sent, after the bindings)."""

    def load(self):
        pass

    def run(self, fields):
        value = fields["text"]
        if isinstance(value, dict) and "image" in value:
            image = value["image"]
            value = dict(value, image=[image.size, image.mode, image.getpixel((0, 0))])
        if isinstance(value, dict) and "clip" in value:
            value = dict(value, clip=[type(value["clip"]).__name__, value["clip"].mime, value["clip"].data])
        if isinstance(value, dict) and value.get("text") == "boom":
            raise ValueError("the echo refuses `boom`")
        return value

    def info(self):
        return {"device": "cpu", "parameters": 0}


SETTINGS = """
components:
  - id: echo
    type: model
    task: text-classification
    driver: custom
    class: tests.test_form:Echo
    text: ${input}
workflows:
  - id: settings
    default: true
    jobs:
      - id: echo
        component: echo
        input:
          text: ${input.text @(description Message to send)}
          model: ${input.model as select/small,large | small}
          n: ${input.n as integer | 3}
          flag: ${input.flag as boolean | false}
          scale: ${input.scale as number | 0.5}
          tags: ${input.tags as list | [a, b]}
          size: ${input.options.size as integer | 2}
  - id: picture
    jobs:
      - id: echo
        component: echo
        input:
          image: ${input.image as image @(description A photo)}
          note: ${input.note | none}
          clip: ${input.clip as audio @(description A short recording)}
"""


def wav_bytes() -> bytes:
    """A tenth of a second of a 440 Hz tone, 16-bit mono WAV."""
    import math
    import struct
    import wave
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
                               for i in range(800)))
    return buffer.getvalue()


def classifier_yaml(models) -> str:
    return textwrap.dedent(f"""
        components:
          - id: sentiment
            type: model
            task: text-classification
            model: {models['classifier']}
            action:
              text: ${{input.review @(description The review to classify, a paragraph or two)}}
        workflow:
          title: Classify a review
          jobs:
            - id: classify
              component: sentiment
              output:
                label: ${{output.label}}
                score: ${{output.score}}
        """)


@pytest.fixture
def settings(registry):
    api.compose(SETTINGS, registry=registry)
    return registry


def widget_kind(field) -> str:
    return type(field.widget).__name__


# -- inputs_of and the inputs table --------------------------------------------------------------------
def test_the_inputs_of_a_workflow_are_its_jobs_input_bindings_in_the_order_written(settings):
    table = api.inputs("settings", registry=settings)
    assert [r["name"] for r in table.rows] == ["text", "model", "n", "flag", "scale", "tags", "options.size"]
    rows = {r["name"]: r for r in table.rows}
    assert rows["text"] == {"name": "text", "type": "string", "choices": [], "default": None,
                            "description": "Message to send", "required": True}
    assert rows["model"]["type"] == "select" and rows["model"]["choices"] == ["small", "large"]
    assert rows["model"]["default"] == "small" and rows["model"]["required"] is False
    assert rows["n"]["type"] == "integer" and rows["n"]["default"] == 3
    assert rows["flag"]["default"] is False and rows["scale"]["default"] == 0.5
    assert rows["tags"]["default"] == ["a", "b"] and rows["options.size"]["default"] == 2
    text = repr(table)
    assert text.splitlines()[0] == "Inputs of `settings`:"
    assert text.splitlines()[1].split() == ["name", "type", "choices", "default", "description", "required"]
    assert text.splitlines()[2:5] == [
        "text          string                          Message to send  yes",
        "model         select   small, large  small                     no",
        "n             integer                3                         no"]
    html = table._repr_html_()
    assert "<th" in html and "Message to send" in html and "small, large" in html


def test_a_component_run_directly_reads_its_actions_fields(registry, models):
    api.compose(classifier_yaml(models), registry=registry)
    rows = api.inputs("sentiment", registry=registry).rows
    assert [(r["name"], r["description"], r["required"]) for r in rows] == [
        ("review", "The review to classify, a paragraph or two", True)]
    # a job without `input:` passes the whole input on: the component's fields say what it reads
    assert api.inputs(registry=registry).rows == rows


def test_an_unknown_target_is_a_clear_error_listing_what_there_is(settings):
    with pytest.raises(McJupyterError) as info:
        api.inputs("setings", registry=settings)
    message = str(info.value)
    assert "no workflow or component `setings` (did you mean `settings`?)" in message
    assert "Workflows: `picture`, `settings`; components: `echo`." in message
    with pytest.raises(InputError, match="takes the id of a workflow or component"):
        api.form(3, registry=settings)


# -- the form's widgets ----------------------------------------------------------------------------------
def test_the_form_has_a_widget_per_input_by_its_type_with_defaults_and_help(settings):
    form = api.form("settings", registry=settings)
    kinds = {name: widget_kind(f) for name, f in form.fields.items()}
    assert kinds == {"text": "Textarea", "model": "Dropdown", "n": "IntText", "flag": "Checkbox",
                     "scale": "FloatText", "tags": "Textarea", "options.size": "IntText"}
    f = form.fields
    assert f["model"].widget.options == ("small", "large") and f["model"].widget.value == "small"
    assert f["n"].widget.value == 3 and f["flag"].widget.value is False and f["scale"].widget.value == 0.5
    assert yaml.safe_load(f["tags"].widget.value) == ["a", "b"]
    assert f["text"].widget.description == "text *" and f["model"].widget.description == "model"   # required: *
    assert f["text"].widget.tooltip == "Message to send" and "Message to send" in f["text"].help.value
    assert form.values == {"model": "small", "n": 3, "flag": False, "scale": 0.5, "tags": ["a", "b"],
                           "options": {"size": 2}}      # the required text is empty: not sent, not valid


def test_run_sends_the_values_and_shows_the_output_below(settings):
    form = api.form("settings", registry=settings)
    form.set("text", "hello")
    form.set("model", "large")
    form.fields["n"].widget.value = 7
    form.fields["flag"].widget.value = True
    form.fields["tags"].widget.value = "[x, y, z]"
    form.button.click()
    result = form.wait(30)
    assert result.output == {"text": "hello", "model": "large", "n": 7, "flag": True, "scale": 0.5,
                             "tags": ["x", "y", "z"], "size": 2}
    assert not form.button.disabled and "Done in" in form.status.value
    (shown,) = form.output.outputs
    assert shown["data"]["text/html"] == result._repr_mimebundle_()["text/html"]
    assert "large" in shown["data"]["text/html"]
    static = form._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in static
    assert "hello" in static["text/html"] and "large" in static["text/html"]      # the fields and the output
    assert "text * (string): hello" in static["text/plain"]


def test_as_run_body_reads_back_through_run_to_the_same_result(ip, registry):
    run_cell(ip, "%%compose\n" + SETTINGS)
    form = api.form("settings")
    form.set("text", "$not_a_variable and more")      # typed text: a literal $, as %%run writes it ($$)
    form.set("model", "large")
    form.set("options.size", 9)
    body = form.as_run_body()
    assert yaml.safe_load(body) == {"text": "$$not_a_variable and more", "model": "large", "n": 3, "flag": False,
                                    "scale": 0.5, "tags": ["a", "b"], "options": {"size": 9}}
    direct = form.run(timeout=30).output
    through_run = run_cell(ip, "%%run settings\n" + body).output
    assert through_run == direct == {"text": "$not_a_variable and more", "model": "large", "n": 3, "flag": False,
                                     "scale": 0.5, "tags": ["a", "b"], "size": 9}


def test_a_value_outside_the_choices_or_a_missing_required_field_shows_its_message_and_does_not_run(settings):
    runs = []
    form = api.form("settings", values={"model": "huge"}, registry=settings)
    original = form._runner
    form._runner = lambda values, sink: runs.append(values) or original(values, sink)
    assert form.fields["model"].widget.value is None
    assert "`huge` is not one of the choices: small, large." in form.fields["model"].message.value
    form.button.click()
    assert form.wait() is None and runs == []
    assert form.errors() == {"text": "required: give a value.",
                             "model": "`huge` is not one of the choices: small, large."}
    assert "required: give a value." in form.fields["text"].message.value
    assert "cannot run:\n  text: required: give a value.\n  model: `huge`" in form.status.value
    with pytest.raises(InputError) as info:
        form.run()
    assert str(info.value) == ("the form of `settings` cannot run:\n  text: required: give a value.\n"
                               "  model: `huge` is not one of the choices: small, large.")
    form.fields["tags"].widget.value = "[unclosed"
    assert form.errors()["tags"] == ("this is not YAML (line 1): expected ',' or ']', but got '<stream end>'. "
                                       "Write e.g. `[a, b]` or `{key: value}`.")
    form.set("text", "fixed")
    form.set("model", "small")
    form.fields["tags"].widget.value = ""                 # optional, left empty: the binding's default applies
    assert form.errors() == {} and form.fields["model"].message.value == ""
    assert form.run(timeout=30).output["tags"] == ["a", "b"] and len(runs) == 1


def test_a_failed_run_shows_its_error_and_keeps_the_form(settings, monkeypatch):
    monkeypatch.setenv("MC_FORM_TOKEN", "sk-form-secret-77")
    read_env("MC_FORM_TOKEN")
    form = api.form("settings", registry=settings)
    form.set("text", "boom")
    form.button.click()
    with pytest.raises(McJupyterError) as info:
        form.wait(30)
    assert "the echo refuses `boom`" in str(info.value)
    assert "the echo refuses `boom`" in form.status.value and not form.button.disabled
    assert form.fields["text"].widget.value == "boom"          # nothing lost
    assert "the echo refuses" in form._repr_mimebundle_()["text/html"]
    form.set("text", "sk-form-secret-77")
    assert "sk-form-secret" not in form.as_run_body() and "sk-form-secret" not in form.static_html()
    assert form.run(timeout=30).output["text"] == "sk-form-secret-77"   # the value itself is sent as typed


def test_an_image_upload_reaches_the_run_as_a_pil_image(settings):
    form = api.form("picture", registry=settings)
    assert widget_kind(form.fields["image"]) == "FileUpload" and form.fields["image"].widget.accept == "image/*"
    assert widget_kind(form.fields["note"]) == "Text" and form.fields["note"].widget.value == "none"
    assert form.errors() == {"image": "required: give a value.", "clip": "required: give a value."}
    picture = Image.new("RGB", (5, 4), (200, 10, 30))
    png = io.BytesIO()
    picture.save(png, format="PNG")
    form.upload("image", png.getvalue(), filename="red.png", mime="image/png")
    assert form.fields["image"].preview.value == png.getvalue()
    clip = form.fields["clip"]
    assert widget_kind(clip) == "FileUpload" and clip.widget.accept == "audio/*" and clip.preview is None
    wav = wav_bytes()
    form.upload("clip", wav, filename="beep.wav", mime="audio/wav")
    result = form.run(timeout=30)
    assert result.output == {"image": [(5, 4), "RGB", (200, 10, 30)], "note": "none",
                             "clip": ["Audio", "audio/wav", wav]}
    body = form.as_run_body()
    assert "image: $image" in body and "form.values['image']" in body
    assert "red.png (" in form.static_html()
    with pytest.raises(InputError, match="not an image or audio upload"):
        form.upload("note", b"x")


def test_a_real_classifier_through_the_form_gives_the_models_label(registry, models):
    api.compose(classifier_yaml(models), registry=registry)
    form = api.form(registry=registry)
    field = form.fields["review"]
    assert widget_kind(field) == "Textarea"            # the description says a paragraph: long text
    assert "a paragraph or two" in field.help.value
    form.set("review", "A wonderful, moving film.")
    form.button.click()
    result = form.wait(120)
    label, score = reference.classify(models["classifier"], "A wonderful, moving film.")
    assert result.output["label"] == label and result.output["score"] == pytest.approx(score, abs=1e-5)
    assert label in form.output.outputs[0]["data"]["text/html"]
    assert yaml.safe_load(form.as_run_body()) == {"review": "A wonderful, moving film."}


def test_a_component_that_takes_its_whole_input_gets_one_yaml_field(settings):
    assert api.inputs("echo", registry=settings).rows[0]["name"] == "(the whole input)"
    form = api.form("echo", registry=settings)
    (field,) = form.fields.values()
    assert widget_kind(field) == "Textarea" and field.widget.description == "input (the whole input, YAML) *"
    field.widget.value = "[1, 2]"
    assert form.errors() == {"": "the whole input is a YAML mapping of inputs (`name: value`, one a line)."}
    field.widget.value = "a: 1\nb: [x, y]"
    assert form.run(timeout=30).output == {"a": 1, "b": ["x", "y"]}
    assert yaml.safe_load(form.as_run_body()) == {"a": 1, "b": ["x", "y"]}


# -- the magics ------------------------------------------------------------------------------------------
def test_mc_form_and_mc_inputs_through_the_magics(ip):
    run_cell(ip, "%%compose\n" + SETTINGS)
    table = run_cell(ip, "%mc inputs")
    assert type(table).__name__ == "InputsTable" and table.target == "settings"
    assert run_cell(ip, "%mc inputs picture").rows[0]["description"] == "A photo"
    form = run_cell(ip, "%mc form settings")
    assert type(form).__name__ == "FormWidget" and list(form.fields)[:2] == ["text", "model"]
    form.set("text", "via magic")
    assert form.run(timeout=30).output["text"] == "via magic"
    with pytest.raises(UsageError, match="no workflow or component `nope`"):   # the magics' user errors
        run_cell(ip, "%mc form nope")
    with pytest.raises(UsageError, match=r"%mc inputs: unrecognized arguments: b"):
        run_cell(ip, "%mc inputs a b")
