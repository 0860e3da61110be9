"""The dialect's parser: strict, with the YAML line, the valid choices and a did-you-mean."""

import pytest

from mc_jupyter import read_config
from mc_jupyter.catalog import DRIVERS, TASKS, DRIVER_NAMES
from mc_jupyter.config.schema import Params
from mc_jupyter.errors import ConfigError


def error_of(text: str, first_line: int = 1) -> str:
    with pytest.raises(ConfigError) as info:
        read_config(text, first_line=first_line)
    return str(info.value)


def test_a_single_component_gets_the_id_default_and_its_top_level_fields_form_the_default_action():
    config = read_config("component:\n  type: model\n  task: text-generation\n  model: gpt2\n  text: hi\n")
    spec = config.components["default"]
    assert spec.default_action == "default"
    assert spec.actions["default"].fields == {"text": "hi"}
    assert spec.settings["model"] == "gpt2"


def test_model_compose_shape_with_actions_list_and_prompt_is_accepted():
    config = read_config("""
components:
  - id: writer
    type: model
    task: text-generation
    model: gpt2
    actions:
      - id: short
        prompt: ${input.p}
        max_output_length: 5
      - id: long
        prompt: ${input.p}
workflows:
  - id: w
    job:
      component: writer
      action: long
""")
    assert list(config.components["writer"].actions) == ["short", "long"]
    assert config.components["writer"].default_action == "short"
    assert config.workflows["w"].jobs[0].action == "long"


def test_an_unknown_key_names_line_path_and_the_closest_valid_key():
    message = error_of("component:\n  type: model\n  task: text-generation\n  params:\n    temprature: 0.7\n",
                       first_line=2)
    assert message.startswith("line 6, at `component.params.temprature`: task `text-generation` takes no parameter "
                              "`temprature` (did you mean `temperature`?)")


def test_a_misplaced_max_output_length_under_a_wrong_key_is_an_error_not_dropped():
    message = error_of("component:\n  type: model\n  task: text-generation\n  max_output_lenght: 10\n")
    assert "line 4, at `component.max_output_lenght`: unknown key `max_output_lenght` (did you mean " \
           "`max_output_length`?)" in message


def test_a_bad_task_lists_the_valid_tasks():
    message = error_of("component:\n  type: model\n  task: text-gen\n")
    assert message.splitlines()[0] == ("line 3, at `component.task`: unknown task `text-gen` "
                                       "(did you mean `text-generation`?)")
    assert "`text-embedding`" in message


def test_a_bad_precision_lists_the_allowed_values():
    message = error_of("component:\n  task: text-generation\n  precision: fp16\n")
    assert message.splitlines()[0].startswith("line 3, at `component.precision`: `fp16` is not a valid value for "
                                              "`precision`")
    assert "'float16'" in message


def test_a_yaml_syntax_error_gives_its_line_and_an_indentation_hint():
    message = error_of("component:\n  type: model\n   task: x\n")
    assert message.startswith("line 3: the YAML cannot be parsed")
    assert "indentation" in message


def test_a_duplicate_key_is_an_error():
    assert "the key `task` appears twice" in error_of("component:\n  task: text-generation\n  task: chat-completion\n")


def test_an_unknown_section_suggests_the_right_one():
    assert "unknown section `componets` (did you mean `components`?)" in error_of("componets: []\n")


def test_gguf_with_the_huggingface_driver_is_an_impossible_combination():
    message = error_of("component:\n  task: text-generation\n  model:\n    provider: local\n    path: /m.gguf\n"
                       "    format: gguf\n")
    assert "line 6, at `component.model.format`: format `gguf` does not fit the `huggingface` driver" in message
    assert "`llamacpp`" in message


def test_a_driver_that_does_not_do_the_task_says_which_do():
    message = error_of("component:\n  task: image-to-text\n  driver: llamacpp\n")
    assert "the `llamacpp` driver does not do task `image-to-text`" in message


def test_controller_and_webui_are_accepted_and_noted():
    config = read_config("controller:\n  type: http-server\n  port: 8080\nwebui:\n  port: 8081\n"
                         "component:\n  task: text-embedding\n")
    assert any("controller" in n for n in config.notes) and any("webui" in n for n in config.notes)


def test_streaming_on_a_task_that_cannot_stream_is_an_error():
    assert "task `text-embedding` does not stream" in error_of("component:\n  task: text-embedding\n  streaming: true\n")


def test_every_task_param_is_a_field_of_the_params_schema_and_every_task_has_a_driver():
    for task, spec in TASKS.items():
        assert set(spec.params) <= set(Params.model_fields), task
        assert any(t == task for _, t in DRIVERS), task
    assert set(DRIVER_NAMES) == {"huggingface", "unsloth", "vllm", "llamacpp", "custom"}
