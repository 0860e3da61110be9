"""model-compose's whole binding grammar (issue #17): every form parses at compose time, and means
something when it runs. The YAML is written here in model-compose's shape (``components:`` with
``action:``, ``workflows:`` with ``jobs:``); an echo model (``driver: custom``, its ``run`` returns the
fields it was given) shows what each binding rendered, and the real all-MiniLM runs the operators.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest

import mc_jupyter as mc
from mc_jupyter.binding import InputField, Scope, compile_value, input_fields, parse_template, render
from mc_jupyter.config.positions import Positions
from mc_jupyter.errors import BindingError, ConfigError
from mc_jupyter.media import Audio, Markdown

ECHO = '''
class Echo:
    """Returns the fields it is given: what the bindings rendered."""
    def __init__(self, settings):
        pass
    def load(self):
        pass
    def run(self, fields):
        return fields["text"]
'''


@pytest.fixture
def echo_dir(tmp_path):
    (tmp_path / "echo.py").write_text(ECHO)
    return tmp_path


def echo_component(folder, action: str, cid: str = "echo") -> str:
    """A component in model-compose's list shape whose ``text:`` mapping holds the bindings under test."""
    return f"""
  - id: {cid}
    type: model
    task: text-generation
    driver: custom
    model: {folder}
    class: {folder / 'echo.py'}:Echo
    action:
      text:
{action}"""


def compose_echo(registry, folder, action: str, workflows: str = "") -> None:
    mc.compose(f"components:{echo_component(folder, action)}\n{workflows}", registry=registry)


def run(registry, target, inputs):
    return mc.run(target, inputs, registry=registry, namespace={}).output


# ------------------------------------------------------------------------------------------------
# 1. Every form parses


@pytest.mark.parametrize("text,expected", [
    ("${result[0]}", dict(source="result", path=(0,))),
    ("${result[1:5]}", dict(source="result", path=(slice(1, 5),))),
    ("${input[-1]}", dict(source="input", path=(-1,))),
    ("${input.items[1:3].name}", dict(source="input", path=("items", slice(1, 3), "name"))),
    ("${result[].text}", dict(source="result[]", path=("text",))),
    ("${input.x[*].y}", dict(source="input", path=("x", "*", "y"))),
    ("${input.model as select/a,b,c | a}", dict(type="select", subtype="a,b,c", choices=("a", "b", "c"), default="a")),
    ("${input.tags as text[]}", dict(type="text", is_list=True)),
    ("${input.rows as object[]/id,meta.name}", dict(type="object", is_list=True, subtype="id,meta.name")),
    ("${output as stream/text}", dict(source="output", type="stream", subtype="text")),
    ("${input.image as image/png}", dict(type="image", subtype="png")),
    ("${input.image as image;base64}", dict(type="image", format="base64", type_arg="base64")),
    ("${output as audio/mp3;base64}", dict(type="audio", subtype="mp3", format="base64")),
    ("${input.v as audio/pcm[sample_rate=16000,channels=1];data-uri}",
     dict(type="audio", subtype="pcm", attrs=(("sample_rate", "16000"), ("channels", "1")), format="data-uri")),
    ("${input.m as model-3d/glb;path}", dict(type="model-3d", subtype="glb", format="path")),
    ("${context.run_id}", dict(source="context", path=("run_id",))),
    ("${item.score}", dict(source="item", path=("score",))),
    ("${index}", dict(source="index", path=())),
    ("${error.message}", dict(source="error", path=("message",))),
    ("${input.x @(description Message to send)}", dict(annotations=(("description", "Message to send"),),
                                                       description="Message to send")),
    ("${input.x as text | hi @(description Say it (kindly)) @(label Greeting)}",
     dict(default="hi", annotations=(("description", "Say it (kindly)"), ("label", "Greeting")))),
    ("${input.x @(description Don't stop)}", dict(description="Don't stop")),
    (r"${input.q | costs \$5 \@ \{x\}}", dict(default="costs $5 @ {x}")),
    ("${input.n as integer | 3}", dict(type="integer", default=3)),
])
def test_every_form_of_the_grammar_parses_into_its_parts(text, expected):
    e = parse_template(text).single
    for key, want in expected.items():
        assert getattr(e, key) == want, (key, getattr(e, key))


def test_attributes_and_defaults_may_hold_expressions():
    e = parse_template("${input.v as audio/pcm[sample_rate=${input.rate | 8000}];base64 | ${input.w}}").single
    (name, rate), = e.attrs
    assert name == "sample_rate" and repr(rate) == "${input.rate | 8000}"
    assert repr(e.default) == "${input.w}"
    assert render(parse_template(r"${input.q | \${not an expression}}"), Scope({"input": {}})) == "${not an expression}"


@pytest.mark.parametrize("text,fragment,hint", [
    ("${input.x as imgae}", "unknown type `imgae` (did you mean `image`?)", "Valid types after `as`"),
    ("${contxt.run_id}", "unknown source `contxt` (did you mean `context`?)", "Valid sources"),
    ("${context.run}", "`context` has no `run` (did you mean `run_id`?)", "`run_id`, `task_id`, `workflow_id`"),
    ("${input.x as audio;base46}", "`;base46` is not a format of `audio` (did you mean `base64`?)", "`data-uri`"),
    ("${input.x as select}", "`select` needs its choices", "select/small,base,large"),
    ("${input.x as select/a,b | c}", "the default `c` is not one of the choices `a`, `b`", "| a"),
    ("${output as stream/xml}", "`stream/xml` is not a stream encoding", "`json`, `text`"),
    ("${input.x as audio[rate=1]}", "attributes come after a subtype", "audio/pcm[sample_rate=16000"),
    ("${input.x as audio/pcm[rate]}", "the attribute `rate` is not `name=value`", "[sample_rate=16000"),
    ("${input.x @(description Message}", "has no closing `)`", "@(description Message to send)"),
    ("${input.x @(description}", "`@(description` is not an annotation", "Write annotations last"),
    ("${index.x}", "`index` is a number and has no keys", "${index}"),
    ("${gateway:8080.public_url}", "gateways", "public address"),
    ("${input.x[1:b]}", "is not an index", "[1:3]"),
])
def test_a_malformed_form_fails_at_compose_time_with_its_line_and_a_hint(registry, echo_dir, text, fragment, hint):
    with pytest.raises(BindingError) as info:
        compose_echo(registry, echo_dir, f"        v: \"{text}\"")
    message = str(info.value)
    assert message.startswith("line 10, at `components[0].action.text.v`: "), message
    assert fragment in message and hint in message
    assert registry.entries == {}   # nothing was loaded


# ------------------------------------------------------------------------------------------------
# 2. Each form means something when it runs


def test_select_checks_the_value_against_its_choices_and_lists_them(registry, echo_dir):
    compose_echo(registry, echo_dir, "        model: ${input.model as select/small,base,large | base}")
    assert run(registry, "echo", {}) == {"model": "base"}
    assert run(registry, "echo", {"model": "large"}) == {"model": "large"}
    with pytest.raises(BindingError) as info:
        run(registry, "echo", {"model": "huge"})
    assert "`${input.model as select/small,base,large | base}`: `'huge'` is not one of the choices " \
           "`small`, `base`, `large`" in str(info.value)
    assert "line 10, at `components[0].action.text.model`" in str(info.value)


def test_context_run_id_is_a_fresh_uuid4_hex_per_run_in_every_scope(registry, echo_dir):
    compose_echo(registry, echo_dir, "        run: ${context.run_id}\n        flow: ${context.workflow_id}",
                 """
workflows:
  - id: traced
    jobs:
      - id: first
        component: echo
        input: {tag: "${context.run_id}"}
    output:
      job: ${output.run}
      flow: ${output.flow}
      workflow: ${context.workflow_id}
      task: ${context.task_id}
""")
    one, two = run(registry, "traced", {}), run(registry, "traced", {})
    assert re.fullmatch(r"[0-9a-f]{32}", one["job"]) and re.fullmatch(r"[0-9a-f]{32}", two["job"])
    assert one["job"] != two["job"]
    assert one["task"] == one["job"] and one["workflow"] == one["flow"] == "traced"
    assert run(registry, "echo", {})["flow"] == "echo"   # a component run directly


def test_output_in_a_workflow_output_is_the_last_jobs_output(registry, echo_dir):
    compose_echo(registry, echo_dir, "        said: ${input.text}", """
workflows:
  - id: two
    jobs:
      - id: a
        component: echo
        input: {text: first}
      - id: b
        component: echo
        input: {text: second}
        depends_on: [a]
    output:
      last: ${output.said}
      whole: ${output}
      a: ${jobs.a.output.said}
""")
    assert run(registry, "two", {}) == {"last": "second", "whole": {"said": "second"}, "a": "first"}


def _wav_base64(samples: np.ndarray, rate: int) -> str:
    return base64.b64encode(Audio.from_array(samples, rate).data).decode()


def test_an_audio_wav_base64_input_becomes_an_audio_with_the_same_samples(registry, echo_dir):
    compose_echo(registry, echo_dir, "        voice: ${input.voice as audio/wav;base64}")
    samples = np.sin(np.linspace(0, 40, 1600)) * 0.5
    voice = run(registry, "echo", {"voice": _wav_base64(samples, 16000)})["voice"]
    assert isinstance(voice, Audio) and voice.mime == "audio/wav" and voice.sample_rate == 16000
    got, rate = voice.samples()
    assert rate == 16000 and got.shape == samples.shape
    assert np.abs(got - samples).max() < 1.0 / 32767 + 1e-9
    html = voice._repr_html_()
    assert html.startswith('<audio controls src="data:audio/wav;base64,') and voice.base64() in html


def test_audio_from_samples_pcm_with_attributes_and_data_uris(registry, echo_dir):
    compose_echo(registry, echo_dir, "        pcm: ${input.pcm as audio/pcm[sample_rate=${input.rate},channels=1]}\n"
                                     "        uri: ${input.uri as audio;data-uri}\n"
                                     "        out: ${input.back as audio/wav;base64}")
    samples = np.array([0, 1000, -1000, 32767], dtype=np.int16)
    wav = Audio.from_array(np.array([0.0, 0.25]), 8000)
    out = run(registry, "echo", {"pcm": samples.tobytes(), "rate": 22050, "uri": wav.data_uri(), "back": wav})
    assert out["pcm"].mime == "audio/pcm" and out["pcm"].sample_rate == 22050
    got, rate = out["pcm"].samples()
    assert rate == 22050 and np.allclose(got * 32768, samples)
    assert out["uri"] == wav
    assert base64.b64decode(out["out"]) == wav.data   # an Audio written out as base64
    with pytest.raises(Exception) as info:
        run(registry, "echo", {"pcm": b"", "rate": 1, "uri": "data:audio/wav;base64,QUJD", "back": wav})
    assert "not WAV audio (no RIFF header)" in str(info.value) and "`${input.uri as audio;data-uri}`" in str(info.value)


def test_an_image_written_out_as_png_base64_decodes_to_the_same_pixels(registry, echo_dir, tmp_path):
    from PIL import Image
    pixels = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    compose_echo(registry, echo_dir, "        image: ${input.image as image/png}", """
workflows:
  - id: pic
    jobs:
      - component: echo
    output:
      b64: ${output.image as image/png;base64}
      uri: ${output.image as image/png;data-uri}
""")
    out = run(registry, "pic", {"image": str(tmp_path / "in.png")})
    decoded = Image.open(io.BytesIO(base64.b64decode(out["b64"])))
    assert decoded.format == "PNG" and np.array_equal(np.asarray(decoded), pixels)
    assert out["uri"] == "data:image/png;base64," + out["b64"]


def test_text_types_stream_markdown_list_and_object_shapes(registry, echo_dir, tmp_path):
    (tmp_path / "note.txt").write_text("from a file")
    compose_echo(registry, echo_dir, """        stream: ${input.chunks as stream/text}
        events: ${input.events as stream/json}
        md: ${input.md as markdown}
        items: ${input.items as list}
        picked: ${input.obj as object/id,meta.name}
        file: ${input.path as text;path}
        n: ${input.n as number}
        s: ${input.obj as string}
        anything: ${input.items as any}""")
    out = run(registry, "echo", {"chunks": ["Hel", "lo"], "events": ['{"a": 1}', '{"b": 2}'], "md": "# Title",
                                 "items": "[1, 2]", "obj": {"id": 7, "meta": {"name": "x"}, "z": 0},
                                 "path": str(tmp_path / "note.txt"), "n": "2.5"})
    assert out["stream"] == "Hello" and out["events"] == [{"a": 1}, {"b": 2}]
    assert isinstance(out["md"], Markdown) and out["md"]._repr_markdown_() == "# Title"
    assert out["items"] == [1, 2] and out["picked"] == {"id": 7, "name": "x"}
    assert out["file"] == "from a file" and out["n"] == 2.5 and out["anything"] == "[1, 2]"
    assert out["s"] == '{"id": 7, "meta": {"name": "x"}, "z": 0}'
    with pytest.raises(BindingError) as info:
        run(registry, "echo", {"chunks": "", "events": "[]", "md": "", "items": {"a": 1}, "obj": {}, "path":
                               str(tmp_path / "note.txt"), "n": 1})
    assert "`${input.items as list}`: cannot convert `{'a': 1}` to `list`: a list is expected, got a dict" \
        in str(info.value)


def test_an_audio_result_displays_as_a_player_with_a_static_fallback():
    from mc_jupyter.display import renderers
    audio = Audio.from_array(np.zeros(80), 8000)
    bundle = renderers.render(audio)
    assert bundle["text/html"].startswith(f'<figure style="margin:0"><audio controls src="{audio.data_uri()}">')
    assert "audio/wav · 8000 Hz" in bundle["text/html"] and bundle["text/plain"] == repr(audio)
    both = renderers.render([audio, audio])
    assert both["text/html"].count("<audio controls") == 2
    assert renderers.render(Markdown("*hi*"))["text/markdown"] == "*hi*"


# ------------------------------------------------------------------------------------------------
# 3. Input discovery, for forms and help


def test_input_fields_collects_types_choices_defaults_and_descriptions_in_written_order(registry, echo_dir):
    compose_echo(registry, echo_dir, """        prompt: ${input.prompt @(description Message to send)}
        model: ${input.model as select/small,base | base @(description Which size)}
        size: ${input.options.size as integer | 512}
        again: ${input.prompt as text | hello}
        voice: ${input.voice as audio/wav;base64 | ${input.fallback as audio}}""")
    entry = registry.entries["echo"]
    fields = input_fields(entry.actions[entry.spec.default_action].fields)
    assert [f.name for f in fields] == ["prompt", "model", "options.size", "voice", "fallback"]
    prompt, model, size, voice, fallback = fields
    assert prompt == InputField("prompt", description="Message to send", annotations=(("description",
                                "Message to send"),), has_default=True, default="hello",
                                yaml_path="components[0].action.text.prompt", line=10)
    assert (model.type, model.choices, model.default, model.description) == ("select", ("small", "base"), "base",
                                                                             "Which size")
    assert (size.type, size.has_default, size.default) == ("integer", True, 512)
    assert (voice.type, voice.subtype, voice.format, voice.default) == ("audio", "wav", "base64",
                                                                        "${input.fallback as audio}")
    assert fallback.type == "audio" and not fallback.has_default


# ------------------------------------------------------------------------------------------------
# 4. Structural operators


def compiled(value):
    return compile_value(value, ("output",), Positions())


def test_operators_render_lists_and_mappings():
    scope = Scope({"input": {"texts": ["a", "bb", "ccc"], "scores": [0.2, 0.9, 0.5], "extra": {"k": 1},
                             "more": [4, 5], "flag": "on"}})
    value = compiled({
        "joined": {"+": ["${input.more}", [6]]},
        "merged": {"+": [{"a": 1}, "${input.extra}"]},
        "text": {"+": ["x", "${input.flag}"]},
        "pairs": {"&": {"t": "${input.texts}", "s": "${input.scores}"}},
        "mapped": {"*": "${input.texts}", "text": "${item}", "n": "${index}"},
        "kept": {"*": {"input": "${input.scores}", "where": {"input": "${item}", "operator": "gt", "value": 0.4}}},
        "both": {"*": {"input": "${input.texts}", "where": {"all": [{"input": "${index}", "operator": "gte",
                                                                     "value": 1},
                                                                    {"not": {"input": "${item}", "value": "ccc"}}]}}},
        "split": {"|": [{"t": "a", "s": 1}, {"t": "b", "s": 2}], "texts": "${item.t}", "scores": "${item.s}"},
        "choice": {"?": [{"input": "${input.flag}", "operator": "eq", "value": "off", "if_true": "was off"},
                         {"input": "${input.flag}", "operator": "in", "value": ["on", "yes"], "if_true": "was on"}]},
        "else": {"?": {"input": "${input.flag}", "operator": "starts-with", "value": "x", "if_true": 1,
                       "if_false": 2}},
        "spread": {"...": "${input.extra}", "own": True},
        "listed": ["first", "...${input.more}", "last"],
        "sibling": {"a": 1, "?": {"input": "${input.flag}", "value": "on", "if_true": {"b": 2}}},
    })
    assert render(value, scope) == {
        "joined": [4, 5, 6], "merged": {"a": 1, "k": 1}, "text": "xon",
        "pairs": [{"t": "a", "s": 0.2}, {"t": "bb", "s": 0.9}, {"t": "ccc", "s": 0.5}],
        "mapped": [{"text": "a", "n": 0}, {"text": "bb", "n": 1}, {"text": "ccc", "n": 2}],
        "kept": [0.9, 0.5], "both": ["bb"],
        "split": {"texts": ["a", "b"], "scores": [1, 2]},
        "choice": "was on", "else": 2,
        "spread": {"k": 1, "own": True}, "listed": ["first", 4, 5, "last"], "sibling": {"a": 1, "b": 2},
    }


@pytest.mark.parametrize("value,fragment", [
    ({"?": {"input": 1, "operator": "equals", "value": 1}}, "unknown operator `equals`"),
    ({"?": {"input": 1, "then": 2}}, "a `?` condition has no key `then`"),
    ({"|": "${input.x}"}, "`|` (split) needs at least one output key"),
    ({"&": {}}, "`&` (zip) takes a non-empty mapping"),
    ({"*": {"source": "${input.x}"}}, "`*` (map) as a mapping takes `input:` and `where:`; not `source`"),
])
def test_a_malformed_operator_fails_at_compose_time(value, fragment):
    with pytest.raises(BindingError) as info:
        compiled(value)
    assert fragment in str(info.value)


def test_a_map_over_a_non_list_says_what_it_got():
    with pytest.raises(BindingError) as info:
        render(compiled({"*": "${input.x}", "v": "${item}"}), Scope({"input": {"x": 5}}))
    assert "`*` (map) takes a list, got `5`" in str(info.value)
    with pytest.raises(BindingError) as info:
        render(compiled({"v": "${item}"}), Scope({"input": {}}))
    assert "`item` is not available here (only inside a `*` map or `|` split)" in str(info.value)


def test_real_minilm_embeddings_zipped_and_mapped_by_a_workflow_output(registry):
    mc.compose("""
components:
  - id: embedder
    type: model
    task: text-embedding
    model: sentence-transformers/all-MiniLM-L6-v2
    action:
      text: ${input.texts as text[] @(description Sentences to embed)}
workflows:
  - id: ranked
    jobs:
      - component: embedder
    output:
      rows:
        "&":
          text: ${input.texts}
          vector: ${output}
      dims:
        "*": ${output}
        n: ${index}
        size: ${item.embedding as list}
""", registry=registry)
    texts = ["cat", "kitten", "car"]
    out = run(registry, "ranked", {"texts": texts})
    from tests import reference
    assert [r["text"] for r in out["rows"]] == texts
    for row in out["rows"]:
        vector = row["vector"]["embedding"]
        assert vector == pytest.approx(reference.minilm_embedding(row["text"]), abs=1e-5)
    assert [d["n"] for d in out["dims"]] == [0, 1, 2] and [len(d["size"]) for d in out["dims"]] == [384] * 3
    entry = registry.entries["embedder"]
    (field,) = input_fields(entry.actions[entry.spec.default_action].fields)
    assert (field.name, field.type, field.is_list, field.description) == ("texts", "text", True, "Sentences to embed")


def test_bad_input_loses_nothing_the_compose_stays(registry, echo_dir):
    compose_echo(registry, echo_dir, "        model: ${input.model as select/a,b}")
    with pytest.raises(ConfigError):
        compose_echo(registry, echo_dir, "        model: ${input.model as select/a,b | c}")
    assert run(registry, "echo", {"model": "a"}) == {"model": "a"}
