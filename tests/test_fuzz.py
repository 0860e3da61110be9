"""Fuzzing the parsers (issue #11, part 1): whatever a user types, only a ``UserError`` comes out.

(a) ``read_config`` (the YAML loader and the schema) on arbitrary text, on YAML-ish text, and on
    structured YAML built from the dialect's own keys and names mixed with random ones;
(b) ``parse_template`` (the ``${...}`` grammar) on arbitrary text around ``${``: only a
    ``BindingError``; and rendering what parses against random scopes: only a ``UserError``.

Derandomized, so CI sees the same examples every run. Every escaping exception hypothesis found is
kept as an explicit ``@example`` (the lead's bug list: see the report of issue #11).
"""

from __future__ import annotations

import typing

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings, strategies as st
from pydantic import BaseModel

import mc_jupyter
from mc_jupyter import secrets
from mc_jupyter.binding import IMAGE_FORMATS, SOURCES, TYPES, Scope, Template, parse_template, render
from mc_jupyter.config import schema
from mc_jupyter.catalog import ARCHITECTURES, COMPONENT_TYPES, DRIVER_NAMES, FORMAT_NAMES, TASKS
from mc_jupyter.errors import BindingError, UserError

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
FUZZ_TEXT = settings(FUZZ, max_examples=1000)   # text that mostly fails early is cheap: try more of it


@pytest.fixture(autouse=True)
def keep_the_secret_list():
    """``${env.X}`` remembers every value it reads as a secret to mask: leave the list as it was."""
    saved = set(secrets._secrets)
    yield
    with secrets._secrets_lock:
        secrets._secrets.clear()
        secrets._secrets.update(saved)


def only_user_errors(text: str) -> None:
    try:
        mc_jupyter.read_config(text)
    except UserError:
        pass


# ------------------------------------------------------------------------------------------------
# (a) the YAML loader and the schema


def _keys_of(cls: typing.Any, seen: set) -> set:
    """Every YAML key the schema knows, from the pydantic classes reachable from ``cls``."""
    if cls in seen:
        return set()
    seen.add(cls)
    keys = set()
    for name, f in cls.model_fields.items():
        keys.add(f.alias or name)
        stack = [f.annotation]
        while stack:
            a = stack.pop()
            stack.extend(typing.get_args(a))
            if isinstance(a, type) and issubclass(a, BaseModel):
                keys |= _keys_of(a, seen)
    return keys


SCHEMA_KEYS = sorted(set().union(*(_keys_of(c, set()) for c in (
    schema.ModelComponent, schema.HttpComponent, schema.Workflow, schema.HubSource, schema.LocalSource,
    schema.PeftAdapter, schema.ManageConfig))) | set(schema.TOP_LEVEL))
NAMES = sorted(set(TASKS) | set(DRIVER_NAMES) | set(FORMAT_NAMES) | set(COMPONENT_TYPES) | set(SOURCES)
               | {a for archs in ARCHITECTURES.values() for a in archs}
               | {"huggingface", "local", "lora", "gpt2", "float16", "fp16", "nf4", "int3", "cuda", "cpu", "auto",
                  "single", "GET", "FETCH", "json", "user", "bot", "default", "clf", "a", "b", "/no/such/path",
                  "./model", "~/x", "C:\\models", "${input.text}", "${inptu.text}", "${input.x as number | 0.7}",
                  "${result[]}", "${jobs.a.output}", "${env.MC_JUPYTER_FUZZ_UNSET}", "${input.text", "2024-02-30"})

random_key = st.text(max_size=8)
key = st.sampled_from(SCHEMA_KEYS) | random_key | st.integers(-2, 3)
scalar = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
          | st.sampled_from(NAMES))
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=5),
                     max_leaves=15)
ids = st.sampled_from(["a", "b", "clf", "default", "job", "job-1"]) | st.text(max_size=4)


def mapping(fixed: dict) -> st.SearchStrategy:
    """A mapping with some likely keys (each optional) and some random ones."""
    return st.builds(lambda known, extra: {**extra, **known}, st.fixed_dictionaries({}, optional=fixed),
                     st.dictionaries(key, value, max_size=4))


component = mapping({"id": ids, "type": st.sampled_from(sorted(COMPONENT_TYPES)) | value,
                     "task": st.sampled_from(sorted(TASKS)) | value, "driver": st.sampled_from(DRIVER_NAMES) | value,
                     "model": st.sampled_from(NAMES) | mapping({"provider": st.sampled_from(["huggingface", "local"]),
                                                               "repository": value, "path": value,
                                                               "format": st.sampled_from(FORMAT_NAMES)}) | value,
                     "params": st.dictionaries(key, value, max_size=4) | value,
                     "actions": st.lists(mapping({"id": ids, "text": value, "params": value}), max_size=3) | value,
                     "peft_adapters": st.lists(mapping({"name": ids, "model": value, "weight": value}), max_size=3)
                     | value,
                     "manage": mapping({"start": value, "ready_timeout": value, "install": value}) | value})
job = mapping({"id": ids, "component": ids, "action": ids, "input": value, "output": value,
               "depends_on": st.lists(ids, max_size=3) | value})
workflow = mapping({"id": ids, "jobs": st.lists(job, max_size=4) | value, "job": job | value, "output": value})
document = mapping({"component": component | value, "components": st.lists(component, max_size=3) | value,
                    "workflow": workflow | value, "workflows": st.lists(workflow, max_size=3) | value})

YAMLISH = st.lists(st.sampled_from(
    list("abc:-[]{}&*!|>'\"#%@`,? \n\t.$0129") +
    ["  ", "\n  ", "\n    ", "- ", ": ", "component", "components", "workflow", "jobs", "task", "id", "type",
     "text-classification", "model", "params", "${", "}", "!!int ", "!!bool ", "!!float ", "!!timestamp ",
     "!!binary ", "!!set ", "!!omap ", "&a ", "*a", "<<: ", "---\n", "...\n", "2024-02-30", "~", "null", "true"]),
    max_size=40).map("".join)


@pytest.mark.slow
@FUZZ_TEXT
@given(st.text(max_size=200))
@example("\x00")                                                  # a NUL (a bad paste): yaml's ReaderError
@example("component:\n  id: \x1b[31m\n")                          # an ANSI colour code: yaml's ReaderError
@example("component:\n  id: 2024-02-30\n")                        # an impossible date: ValueError
def test_read_config_on_arbitrary_text_raises_only_user_errors(text):
    only_user_errors(text)


@FUZZ_TEXT
@given(YAMLISH)
@example("component:\n  id: !!int x\n")                           # ValueError from PyYAML's int constructor
@example("component:\n  id: !!float x\n")                         # ValueError
@example("component:\n  id: !!bool maybe\n")                      # KeyError
@example("component:\n  id: !!timestamp x\n")                     # AttributeError
@example("!!float ")                                              # IndexError
@example("!!float x: 1\n")                                        # ValueError building a key
@example("a: &a [*a]\n")                                          # a recursive alias: RecursionError
@example("component: &a\n  options: *a\n")                        # RecursionError
@example("[" * 5000)                                              # RecursionError in PyYAML's composer
@example("a: &a\n  <<: *a\n")                                    # RecursionError in PyYAML's merge of a loop
@example("component:\n  <<: [*x]\n")                              # an undefined alias in a merge
@example("component: !!python/name:os.system x\n")                # an unknown tag
@example("{on: 1, ~: 2}")                                         # YAML 1.1 boolean and null keys
@example("component:\n")                                         # AttributeError: 'NoneType' ... 'get'
@example("component: hello\n")                                    # AttributeError: 'str' object has no attribute 'get'
@example("component: [a]\n")                                      # AttributeError on a list
@example("components: [a]\n")                                     # AttributeError
@example("component:\n  task: [a]\n")                             # TypeError: unhashable type
@example("component:\n  type: {a: 1}\n")                          # TypeError: unhashable type
@example("component:\n  task: text-classification\n  actions: 5\n")   # TypeError: 'int' object is not iterable
def test_read_config_on_yaml_like_text_raises_only_user_errors(text):
    only_user_errors(text)


@pytest.mark.slow
@FUZZ
@given(document)
@example({"component": {"task": "text-classification", "actions": 0}})
@example({"component": {"task": ["text-classification"]}})
@example({"component": "text-classification"})
@example({"component": None})
@example({"component": {"task": "text-generation", "id": "2024-02-30"}})
@example({"component": {"task": "text-classification", True: 1, None: 2, 1.5: 3}})   # non-text keys
def test_read_config_on_structured_yaml_raises_only_user_errors(data):
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return
    only_user_errors(text)


@pytest.mark.slow
@FUZZ
@given(document)
@example({"component": None})                                     # AttributeError: 'NoneType' ... 'get'
@example({"components": [["a"]]})                                 # AttributeError on a list
@example({"component": {"type": {"a": 1}}})                       # TypeError: unhashable type
@example({"component": {"task": "text-classification", "options": {1: [None]}, 3: 1}})
@example({"component": {"[": None}})                              # IndexError: a key like pydantic's markers
def test_the_schema_on_the_same_structures_raises_only_user_errors(data):
    """The schema alone (no YAML round trip): parse_compose with no positions known."""
    from mc_jupyter.config.loader import Positions
    try:
        schema.parse_compose(data, Positions())
    except UserError:
        pass


# ------------------------------------------------------------------------------------------------
# (b) the ${...} grammar: parsing, then rendering


PIECES = ["input", "result", "result[]", "response", "response[]", "jobs", "env", "output", "inptu", "job", "",
          ".", ".text", ".a-b", ".0", "[0]", "[-1]", "[*]", "[abc]", "['k']", "[\"k\"]", "[", "]", "[]",
          " as ", "as", "text", "number", "integer", "boolean", "json", "base64", "image", "image;path", "image;url",
          "image;jpeg", ";", "object[]", "object[]/a,b.c", "object[]x", " | ", "|", "0.7", "false", '"x"', "'", '"',
          "${", "}", "{", "2024-02-30", "!!int x", "!!bool x", "&a", "*a", "[1, 2]", "{a: 1}", ":", " ", "\n", "#",
          "\\", "$", "context", "item", "index", "error", "string", "list", "object", "markdown", "audio", "video",
          "model-3d", "file", "stream", "select", "any", "none", "stream/text", "select/a,b", "audio/wav;base64",
          "image/png;data-uri", "[1:3]", "@(description x)", "\\$"]
expr_text = st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=14).map("".join)
template_text = st.builds(lambda before, body, after: before + "${" + body + after, st.text(max_size=6), expr_text,
                          st.text(max_size=6))


@FUZZ_TEXT
@given(template_text)
@example("${input.x | 2024-02-30}")                                # ValueError from the YAML default
@example("${input.x | !!int x}")                                  # ValueError
@example("${input.x | !!bool x}")                                 # KeyError
@example("${input.x | ${input.y | 2024-13-01}}")                  # ValueError, nested
def test_parse_template_raises_only_binding_errors(text):
    try:
        parse_template(text)
    except BindingError:
        pass


@FUZZ
@given(st.text(max_size=60).filter(lambda t: "${" in t) | st.text(alphabet="${}|. as[]0*'\"inputjob", max_size=30))
def test_parse_template_on_arbitrary_text_raises_only_binding_errors(text):
    try:
        parse_template(text)
    except BindingError:
        pass


KEYS = ["text", "a", "b", "k", "a-b", "a_b", "0", "label", "output", "input"]
path_part = st.sampled_from([f".{k}" for k in KEYS] + ["[0]", "[1]", "[-1]", "[*]", "['k']"])
RENDER_TYPES = [t for t in TYPES if t != "object[]"] + ["object[]", "object[]/a,b.c", "object[]/text"] + \
               [f"image;{f}" for f in IMAGE_FORMATS if f != "url"]    # no network from a fuzz test
default_scalar = st.sampled_from(["0.7", "false", '"x"', "x y", "", "[1, 2]", "{a: 1}", "null", "-1", "'quoted'"])


def _wellformed(default: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(
        lambda src, path, kind, dflt: "${" + src + "".join(path) + (f" as {kind}" if kind else "") +
        (f" | {dflt}" if dflt is not None else "") + "}",
        st.sampled_from(["input", "result", "result[]", "response", "jobs", "output", "env"]),
        st.lists(path_part, min_size=0, max_size=3), st.none() | st.sampled_from(RENDER_TYPES), st.none() | default)


expression = _wellformed(_wellformed(default_scalar) | default_scalar)
template = st.lists(expression | st.text(alphabet="ab :-", max_size=4), min_size=1, max_size=3).map("".join)

json_key = st.sampled_from(KEYS) | st.integers(0, 2)
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                          | st.text(alphabet="ab01.-/ ", max_size=8) | st.binary(max_size=8),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_key, inner, max_size=4),
                          max_leaves=12)
scope = st.builds(
    lambda inp, result, jobs, lenient, extra: Scope({"input": inp, "result": result, "response": result,
                                                     "jobs": jobs, **extra}, lenient=lenient),
    json_value, json_value,
    st.dictionaries(st.sampled_from(["a", "b", "job"]),
                    st.fixed_dictionaries({"output": json_value, "input": json_value}), max_size=2),
    st.booleans(),
    st.fixed_dictionaries({}, optional={"output": json_value, "result[]": json_value}))


def _render(text: str, values: Scope) -> None:
    try:
        parsed = parse_template(text)
    except BindingError:   # `${env}`, `${env.a.b}`: refused at parse time, as they should be
        return
    assert isinstance(parsed, Template) or "${" not in text
    try:
        render(parsed, values)
    except UserError:
        pass


@FUZZ
@given(template, scope)
@example("${input.text}", Scope({"input": {0: "a", "b": 2}}))          # TypeError sorting int and str keys
@example("${input.a.b}", Scope({"input": {"a": {1: 2, "x": 3}}}))       # the same, one level down
@example("${input.image as image}", Scope({"input": {"image": "/"}}))   # IsADirectoryError
@example("${env[0]}", Scope({}))                                        # TypeError: os.environ.get(0)
def test_rendering_a_parsed_template_raises_only_user_errors(text, values):
    _render(text, values)


def test_the_fuzzers_know_the_dialect():
    """The strategies draw from the schema's real keys and the grammar's real sources and types."""
    for k in ("component", "workflows", "task", "peft_adapters", "ready_timeout", "depends_on", "repository", "class"):
        assert k in SCHEMA_KEYS, k
    assert set(SOURCES) <= set(PIECES) and set(TYPES) <= set(PIECES)
