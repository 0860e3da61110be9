"""The ${...} grammar: parsed once (errors with their line), evaluated per scope."""

import pytest

from mc_jupyter.binding import Scope, Template, parse_template, render, scrub
from mc_jupyter.errors import BindingError


def value(text, **scope):
    return render(parse_template(text), Scope(scope))


def test_a_whole_expression_yields_the_typed_value_and_text_around_it_interpolates():
    assert value("${input.items}", input={"items": [1, 2]}) == [1, 2]
    assert value("n=${input.n}!", input={"n": 3}) == "n=3!"


def test_paths_with_dashes_indexes_negative_indexes_and_stars():
    data = {"a-b": [{"x": 1}, {"x": 2}, {"x": 3}]}
    assert value("${input.a-b[0].x}", input=data) == 1
    assert value("${input.a-b[-1].x}", input=data) == 3
    assert value("${input.a-b[*].x}", input=data) == [1, 2, 3]


@pytest.mark.parametrize("expr,expected", [
    ("${input.t as number | 0.7}", 0.7), ("${input.n as integer | 5}", 5), ("${input.b as boolean | false}", False),
    ('${input.s | "x"}', "x"), ("${input.s as text | 12}", "12"),
])
def test_defaults_are_yaml_scalars_and_the_conversion_applies_to_them(expr, expected):
    assert value(expr, input={}) == expected


def test_conversions_of_given_values():
    assert value("${input.t as number}", input={"t": "0.25"}) == 0.25
    assert value("${input.t as integer}", input={"t": "7"}) == 7
    assert value("${input.t as boolean}", input={"t": "yes"}) is True
    assert value("${input.t as json}", input={"t": '{"a": 1}'}) == {"a": 1}
    assert value("${input.t as base64}", input={"t": "hi"}) == "aGk="
    assert value("${input.t as object[]/id,meta.name}", input={"t": [{"id": 1, "meta": {"name": "a"}, "z": 0}]}) == \
        [{"id": 1, "name": "a"}]


def test_a_default_can_itself_be_an_expression():
    assert value("${input.a | ${input.b}}", input={"b": "fallback"}) == "fallback"


def test_a_missing_variable_without_default_names_it_and_what_was_there():
    with pytest.raises(BindingError) as info:
        value("${input.prompt}", input={"text": "x"})
    assert str(info.value).startswith("`${input.prompt}`: `input` has no `prompt`")
    assert "`input` has: `text`" in str(info.value)


def test_reading_a_job_that_has_not_run_is_an_error_naming_the_jobs_that_did():
    with pytest.raises(BindingError) as info:
        value("${jobs.later.output}", input={}, jobs={"first": {"output": 1}})
    assert "job `later` has not run before this point" in str(info.value)
    assert "`first`" in str(info.value)


@pytest.mark.parametrize("text,fragment", [
    ("${inptu.x}", "unknown source `inptu` (did you mean `input`?)"),
    ("${input.x as nubmer}", "unknown type `nubmer` (did you mean `number`?)"),
    ("${input.x", "has no closing `}`"),
    ("${input.x[abc]}", "is not an index"),
    ("${input.x as text;jpeg}", "`;jpeg` is not a format of `text`"),
])
def test_malformed_expressions_fail_at_parse_time_with_their_line(text, fragment):
    with pytest.raises(BindingError) as info:
        parse_template(text, ("component", "text"), line=7)
    assert str(info.value).startswith("line 7, at `component.text`: ")
    assert fragment in str(info.value)


def test_a_bad_conversion_names_the_value_and_the_type():
    with pytest.raises(BindingError) as info:
        value("${input.t as number}", input={"t": "warm"})
    assert "cannot convert `'warm'` to `number`" in str(info.value)


def test_env_values_are_read_at_run_time_and_masked_everywhere(monkeypatch):
    monkeypatch.setenv("MCJ_TEST_SECRET", "s3cr3t-marker-value")
    t = parse_template("${env.MCJ_TEST_SECRET}")
    assert isinstance(t, Template) and "s3cr3t" not in repr(t)
    assert render(t, Scope()) == "s3cr3t-marker-value"
    assert scrub("token=s3cr3t-marker-value") == "token=***"
    monkeypatch.setenv("MCJ_TEST_SECRET", "x")
    with pytest.raises(BindingError) as info:
        value("${env.MCJ_TEST_SECRET as number}")
    assert "the secret value" in str(info.value)


def test_an_unset_env_variable_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv("MCJ_NOT_SET", raising=False)
    with pytest.raises(BindingError) as info:
        value("${env.MCJ_NOT_SET}")
    assert "the environment variable `MCJ_NOT_SET` is not set" in str(info.value)


def test_a_default_yaml_cannot_read_as_a_scalar_stays_text():
    assert value("${input.day | 2024-02-30}", input={}) == "2024-02-30"
