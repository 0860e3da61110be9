"""A corpus of user mistakes, each run through a real IPython shell (issue #11, part 1).

Every row is one bad input: a ``%%compose`` cell, a ``%%run`` cell or a magic line. Each must end
as an IPython ``UsageError`` (the magics turn a ``UserError`` into one: a message, no traceback)
whose text names where the mistake is (the YAML line, the flag, the input, the path) AND how to fix
it (the valid choices, the missing key, the command to run). And each must leave the kernel exactly
as it was: the registry's snapshot, its workflows and default target, the loaded model object (one
tiny classifier, loaded once for the whole module) and the running server process (one managed
``http-server``, started once), and no process left behind.

Rows are ``(id, input, fragments)``; ``@NAME@`` tokens are filled in at run time (paths, ports).
Line numbers count as the notebook shows them: the ``%%compose`` line is line 1.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from IPython.core.error import UsageError

import mc_jupyter as mc
from tests.conftest import run_cell

SERVER = str(Path(__file__).resolve().parent / "model_server.py")


def c(body: str, flags: str = "") -> str:
    """A %%compose cell: its first body line is line 2."""
    return f"%%compose{(' ' + flags) if flags else ''}\n" + textwrap.dedent(body).lstrip("\n")


def r(line: str, body: str = "") -> str:
    """A %%run cell."""
    return f"%%run{(' ' + line) if line else ''}\n" + textwrap.dedent(body).lstrip("\n")


# A new classifier component named `probe`: its own id, so a mistake in it never touches `clf`.
PROBE = """
component:
  id: probe
  type: model
  task: text-classification
  model: @CLF@
  text: {text}
"""


def probe(text: str) -> str:
    """A cell whose only mistake is the ``text:`` field (line 7)."""
    return c(PROBE.replace("{text}", text))


BASE = c("""
components:
  - id: clf
    type: model
    task: text-classification
    model: @CLF@
    text: ${input.text}
  - id: srv
    type: http-server
    manage:
      start: [@PY@, @SERVER@, --port, @PORT@]
      ready_timeout: 30
    port: @PORT@
    path: /api/generate
    body: {prompt: "${input.prompt}", stream: false}
    output: ${response.response}
    actions:
      - id: missing
        path: /no/such/route
        body: {prompt: hi}
  - id: closed
    type: http-client
    endpoint: http://127.0.0.1:@CLOSED@/v1/completions
    body: {prompt: "${input.prompt}"}
    timeout: 5
  - id: pics
    type: http-client
    endpoint: http://127.0.0.1:@CLOSED@/images
    body: {image: "${input.image as image}"}
  - id: pics64
    type: http-client
    endpoint: http://127.0.0.1:@CLOSED@/images
    body: {image: "${input.image as image;base64}"}
  - id: noend
    type: http-client
    body: {prompt: hi}
workflows:
  - id: typed
    jobs:
      - component: clf
        input: {text: "${input.n as integer}"}
  - id: numbers
    jobs:
      - component: clf
        input: {text: "${input.x as number}"}
  - id: flags
    jobs:
      - component: clf
        input: {text: "${input.flag as boolean}"}
  - id: parsed
    jobs:
      - component: clf
        input: {text: "${input.doc as json}"}
  - id: early
    jobs:
      - id: first
        component: clf
        input: {text: "${jobs.second.output.label}"}
      - id: second
        component: clf
  - id: notfound
    job: {component: srv, action: missing}
  - id: secret
    job: {component: clf, input: {text: "${env.MC_JUPYTER_TEST_NEVER_SET}"}}
  - id: deep
    job: {component: clf, input: {text: "${input.doc.title}"}}
""")

# The line of each part of BASE (asserted by test_base_lines_are_where_the_rows_say).
BASE_LINES = {"clf.text": 7, "typed.input": 41, "numbers.input": 45, "flags.input": 49, "parsed.input": 53,
              "early.first.input": 58, "secret.input": 64, "deep.input": 66}

SLEEPER = c("""
component:
  id: sleeper
  type: http-server
  manage:
    start: [sleep, "30"]
    ready_timeout: 1
  port: @FREE@
  path: /api/generate
""")


def _row(id_, text, *fragments, marks=()):
    return pytest.param(text, list(fragments), id=id_, marks=marks)


_NO_LLAMACPP = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                  reason="the llamacpp extra (llama-cpp-python) is not installed")

ROWS = [
    # -- YAML syntax, indentation, tabs -------------------------------------------------------------
    _row("yaml-bad-indentation", c("""
        component:
          type: model
           task: text-classification
        """), "line 4: the YAML cannot be parsed", "Check the indentation"),
    _row("yaml-tab-indentation", "%%compose\ncomponent:\n\ttask: text-classification\n",
         "line 3: the YAML cannot be parsed", "tabs", "use spaces"),
    _row("yaml-unclosed-flow-mapping", c("""
        component: {id: a, task: text-classification
        """), "the YAML cannot be parsed", "line 3", "Check the indentation"),
    _row("yaml-unclosed-quote", c("""
        component:
          id: "abc
          task: text-classification
        """), "the YAML cannot be parsed", "line 5", "Check the indentation"),
    _row("yaml-two-documents", c("""
        component: {task: text-classification}
        ---
        component: {task: text-embedding}
        """), "line 3", "the YAML cannot be parsed", "single document"),
    _row("yaml-duplicate-key", c("""
        component:
          task: text-classification
          task: text-embedding
        """), "line 4, at `component.task`: the key `task` appears twice", "Remove one of them"),
    _row("yaml-non-scalar-key", c("""
        component:
          ? [a, b]
          : 1
        """), "line 3", "a mapping key must be a plain word"),
    _row("yaml-impossible-date", c("""
        component:
          id: 2024-02-30
          task: text-classification
        """), "line 3", "2024-02-30", "quote"),
    _row("yaml-bad-int-tag", c("""
        component:
          id: probe
          task: text-classification
          batch_size: !!int many
        """), "line 5", "many", "integer"),
    _row("yaml-bad-bool-tag", c("""
        component:
          id: probe
          task: text-classification
          low_cpu_mem_usage: !!bool maybe
        """), "line 5", "maybe", "true or false"),
    _row("yaml-control-character", "%%compose\ncomponent:\n  id: probe\n  task: text-classification\x1b[0m\n",
         "line 4", "the YAML cannot be parsed", "#x001b"),
    _row("yaml-recursive-alias", c("""
        component: &loop
          id: probe
          task: text-classification
          options: *loop
        """), "line 5", "component.options", "alias"),
    _row("yaml-nested-thousands-deep", c("component: " + "[" * 5000 + "\n"),
         "line 2, at `component[0][0][0][0][0]…`: the YAML is nested deeper than 100 levels", "unclosed `[`"),
    _row("yaml-nested-mappings-deep", c("".join("  " * i + "a:\n" for i in range(150))),
         "line 102", "nested deeper than 100 levels", "flatten the structure"),
    _row("yaml-aliases-repeat-too-much", c("component:\n  options:\n    l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n" +
                                           "".join(f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n"
                                                   for i in range(1, 6))),
         "more than 100,000 values", "Write the repeated part once"),
    _row("yaml-merge-of-a-value", c("""
        component:
          <<: 5
          task: text-classification
        """), "line 3, at `component`: `<<:` merges mappings into this one, not a value", "<<: *anchor"),
    _row("yaml-merge-into-itself", c("""
        component: &loop
          <<: *loop
          task: text-classification
        """), "line 2, at `component`: a `<<:` merge refers to a mapping that contains it", "Remove the `*alias`"),
    _row("yaml-duplicate-key-beside-a-merge", c("""
        components:
          - &base {id: probe, task: text-classification}
          - <<: *base
            id: a
            id: b
        """), "line 6, at `components[1].id`: the key `id` appears twice", "Remove one of them"),
    _row("yaml-boolean-key", c("""
        component:
          id: probe
          task: text-classification
          options: {on: 1}
        """), "line 5, at `component.options.on`: the key `on` is read by YAML as the boolean true",
         'Quote it: `"on":`.'),
    _row("yaml-null-key", c("""
        component:
          id: probe
          task: text-classification
          ~: 1
        """), "line 5, at `component.~`: the key `~` is read by YAML as null", 'Quote it: `"~":`.'),
    _row("yaml-number-key", c("""
        component:
          id: probe
          task: text-classification
          0x1F: 1
        """), "line 5, at `component.0x1F`: unknown key `0x1F` (a number, not a word)", "Valid keys here:"),
    _row("yaml-number-key-in-options", c("""
        component:
          id: probe
          task: text-classification
          options: {7: x}
        """), "line 5, at `component.options.7`: the key `7` must be text here, not a number", 'Quote it: `"7":`.'),
    _row("yaml-unknown-python-tag", c("""
        component:
          id: probe
          task: !!python/name:os.system text-classification
        """), "line 4, at `component.task`: unknown tag `!!python/name:os.system`", "remove the tag"),
    _row("yaml-unknown-local-tag-on-a-mapping", c("""
        component:
          id: probe
          task: text-classification
          options: !secret {a: 1}
        """), "line 5, at `component.options`: unknown tag `!secret`", "quote the whole value"),
    _row("yaml-long-value-is-cut", c("component:\n  id: probe\n  task: " + "x" * 21000 + "\n"),
         "line 4, at `component.task`: unknown task `xxxxxxxxxx", "…(21,000 characters)`", "Valid tasks"),
    _row("yaml-long-key-is-cut", c("component:\n  id: probe\n  task: text-classification\n  " + "k" * 1000 + ": 1\n"),
         "line 5, at `component.kkkkkkkkkk", "…(1,000 characters)", "Valid keys here:"),
    _row("yaml-comment-only-cell", c("""
        # nothing but a comment
        """), "the cell is empty", "Write a `component:`"),
    _row("yaml-top-level-list", c("""
        - component
        - workflow
        """), "line 2: the top level must be a mapping of sections, not a list", "Valid sections"),
    _row("yaml-top-level-scalar", c("""
        just some words
        """), "line 2: the top level must be a mapping of sections, not a str", "`component`"),

    # -- unknown keys, at every level ---------------------------------------------------------------
    _row("unknown-section", c("""
        componets:
          - id: a
        """), "line 2, at `componets`: unknown section `componets` (did you mean `components`?)",
         "Valid sections"),
    _row("unknown-section-belongs-inside", c("""
        task: text-classification
        """), "line 2, at `task`: unknown section `task`", "`task:` belongs inside a `component:`"),
    _row("unknown-component-key", c("""
        component:
          id: probe
          task: text-classification
          max_output_lenght: 10
        """), "line 5, at `component.max_output_lenght`: unknown key `max_output_lenght` (did you mean "
              "`max_output_length`?)", "Valid keys here:"),
    _row("unknown-action-key", c("""
        component:
          id: probe
          task: text-classification
          action:
            id: classify
            txt: ${input.text}
        """), "line 7, at `component.action.txt`: unknown key `txt` (did you mean `text`?)", "Valid keys here:"),
    _row("unknown-actions-item-key", c("""
        components:
          - id: probe
            task: text-classification
            actions:
              - id: one
                txet: ${input.text}
        """), "line 7, at `components[0].actions[0].txet`: unknown key `txet` (did you mean `text`?)",
         "Valid keys here:"),
    _row("unknown-param-for-task", c("""
        component:
          id: probe
          task: text-classification
          params:
            temprature: 0.7
        """), "line 6, at `component.params.temprature`: task `text-classification` takes no parameter "
              "`temprature`", "Its parameters are `batch_size`, `max_input_length`, `return_probabilities`."),
    _row("unknown-param-anywhere", c("""
        component:
          id: probe
          task: text-generation
          params:
            max_tokens: 10
        """), "line 6, at `component.params.max_tokens`: task `text-generation` takes no parameter `max_tokens`",
         "`max_output_length`"),
    _row("unknown-hub-model-key", c("""
        component:
          id: probe
          task: text-classification
          model:
            repository: distilbert-base-uncased
            revison: main
        """), "line 7, at `component.model.revison`: unknown key `revison` (did you mean `revision`?)",
         "Valid keys here:"),
    _row("unknown-local-model-key", c("""
        component:
          id: probe
          task: text-classification
          model: {provider: local, path: @CLF@, fromat: pytorch}
        """), "line 5, at `component.model.fromat`: unknown key `fromat` (did you mean `format`?)",
         "Valid keys here:"),
    _row("unknown-peft-adapter-key", c("""
        component:
          id: probe
          task: text-generation
          peft_adapters:
            - name: alpaca
              model: tloen/alpaca-lora-7b
              wieght: 0.5
        """), "line 8, at `component.peft_adapters[0].wieght`: unknown key `wieght` (did you mean `weight`?)",
         "Valid keys here:"),
    _row("unknown-manage-key", c("""
        component:
          id: probe
          type: http-server
          manage:
            strat: [sleep, "30"]
          port: @FREE@
        """), "line 6, at `component.manage.strat`: unknown key `strat` (did you mean `start`?)",
         "Valid keys here:"),
    _row("unknown-http-key", c("""
        component:
          id: probe
          type: http-client
          endpoint: http://127.0.0.1:@CLOSED@/
          headrs: {a: b}
        """), "line 6, at `component.headrs`: unknown key `headrs` (did you mean `headers`?)", "Valid keys here:"),
    _row("unknown-workflow-key", c("""
        workflow:
          jbos:
            - component: clf
        """), "line 3, at `workflow.jbos`: unknown key `jbos` (did you mean `jobs`?)", "Valid keys here:"),
    _row("unknown-job-key", c("""
        workflow:
          jobs:
            - component: clf
              inptu: {text: hi}
        """), "line 5, at `workflow.jobs[0].inptu`: unknown key `inptu` (did you mean `input`?)",
         "Valid keys here:"),
    _row("unknown-chat-message-key", c("""
        component:
          id: probe
          task: chat-completion
          messages:
            - role: user
              contnet: hi
        """), "line 7, at `component.messages[0].contnet`: unknown key `contnet` (did you mean `content`?)",
         "Valid keys here:"),

    # -- wrong types --------------------------------------------------------------------------------
    _row("type-component-is-empty", c("""
        component:
        """), "line 2, at `component`", "expected a mapping", "`task:`"),
    _row("type-component-is-a-string", c("""
        component: text-classification
        """), "line 2, at `component`", "expected a mapping", "`task:`"),
    _row("type-component-is-a-list", c("""
        component:
          - task: text-classification
        """), "line 2, at `component`", "expected a mapping", "`components:`"),
    _row("type-components-item-is-a-string", c("""
        components:
          - clf
        """), "line 3, at `components[0]`", "expected a mapping"),
    _row("type-actions-is-a-number", c("""
        component:
          id: probe
          task: text-classification
          actions: 5
        """), "line 5, at `component.actions`", "a valid list"),
    _row("type-components-is-a-string", c("""
        components: clf
        """), "line 2, at `components`: `components:` must be a list"),
    _row("type-task-is-a-list", c("""
        component:
          id: probe
          task: [text-classification]
        """), "line 4, at `component.task`", "Valid tasks"),
    _row("type-type-is-a-list", c("""
        component:
          id: probe
          type: [model]
          task: text-classification
        """), "line 4, at `component.type`", "Valid types"),
    _row("type-peft-adapters-is-a-mapping", c("""
        component:
          id: probe
          task: text-generation
          peft_adapters: {name: alpaca, model: tloen/alpaca-lora-7b}
        """), "line 5, at `component.peft_adapters`", "a valid list"),
    _row("type-max-memory-is-a-list", c("""
        component:
          id: probe
          task: text-generation
          device_mode: auto
          max_memory: [20GiB]
        """), "line 6, at `component.max_memory`", "a valid dictionary"),
    _row("type-params-is-a-list", c("""
        component:
          id: probe
          task: text-classification
          params: [batch_size, 2]
        """), "line 5, at `component.params`", "a valid dictionary"),
    _row("type-low-cpu-mem-usage-not-a-boolean", c("""
        component:
          id: probe
          task: text-classification
          low_cpu_mem_usage: maybe
        """), "line 5, at `component.low_cpu_mem_usage`", "a valid boolean"),
    _row("type-id-is-a-list", c("""
        component:
          id: [a, b]
          task: text-classification
        """), "line 3, at `component.id`", "a valid string"),
    _row("type-jobs-is-a-mapping", c("""
        workflow:
          jobs: {component: clf}
        """), "line 3, at `workflow.jobs`", "a valid list"),
    _row("type-job-is-a-string", c("""
        workflow:
          jobs:
            - clf
        """), "line 4, at `workflow.jobs[0]`", "a valid dictionary"),
    _row("type-depends-on-is-a-string", c("""
        workflow:
          jobs:
            - id: a
              component: clf
            - id: b
              component: clf
              depends_on: a
        """), "line 8, at `workflow.jobs[1].depends_on`", "a valid list"),
    _row("type-start-is-a-mapping", c("""
        component:
          id: probe
          type: http-server
          manage:
            start: {cmd: serve}
          port: @FREE@
        """), "line 6, at `component.manage.start`", "a valid list"),
    _row("type-model-is-a-list", c("""
        component:
          id: probe
          task: text-classification
          model: [a, b]
        """), "line 5, at `component.model`: `model:` must be a hub id, a path, or a mapping, not a list"),
    _row("type-model-is-a-number", c("""
        component:
          id: probe
          task: text-classification
          model: 42
        """), "line 5, at `component.model`: `model:` must be a hub id, a path, or a mapping, not `42`"),
    _row("type-number-field-is-text", c("""
        component:
          id: probe
          type: http-client
          endpoint: http://127.0.0.1:@CLOSED@/
          timeout: soon
        """), "line 6, at `component.timeout`", "soon", "number"),
    _row("type-batch-size-is-text", c("""
        component:
          id: probe
          task: text-classification
          model: @CLF@
          batch_size: many
          text: ${input.text}
        """), "line 6, at `component.batch_size`", "many", "number"),
    _row("type-ready-timeout-is-text", c("""
        component:
          id: probe
          type: http-server
          manage:
            start: [sleep, "30"]
            ready_timeout: soon
          port: @FREE@
        """), "line 7, at `component.manage.ready_timeout`", "soon", "number"),
    _row("type-port-is-text", c("""
        component:
          id: probe
          type: http-server
          manage: {start: [sleep, "30"]}
          port: eighty
        """), "line 6, at `component.port`", "eighty", "port"),
    _row("type-port-out-of-range", c("""
        component:
          id: probe
          type: http-server
          manage: {start: [sleep, "30"]}
          port: 99999
        """), "line 6, at `component.port`", "99999", "65535"),

    # -- unknown names --------------------------------------------------------------------------------
    _row("unknown-task", c("""
        component:
          id: probe
          type: model
          task: text-classifcation
        """), "line 5, at `component.task`: unknown task `text-classifcation` (did you mean "
              "`text-classification`?)", "Valid tasks: "),
    _row("unknown-component-type", c("""
        component:
          id: probe
          type: http-srv
        """), "line 4, at `component.type`: unknown component type `http-srv` (did you mean `http-server`?)",
         "Valid types: `http-client`, `http-server`, `model`, `text-splitter`, `vector-store`."),
    _row("unknown-driver", c("""
        component:
          id: probe
          task: text-classification
          driver: hugginface
        """), "line 5, at `component.driver`: unknown driver `hugginface` (did you mean `huggingface`?)",
         "Valid drivers: "),
    _row("unknown-architecture", c("""
        component:
          id: probe
          task: image-to-text
          architecture: blipp
        """), "line 5, at `component.architecture`: unknown architecture `blipp` for task `image-to-text` "
              "(did you mean `blip`?)", "Valid architectures: `blip`, `git`, `vit-gpt2`."),
    _row("unknown-format", c("""
        component:
          id: probe
          task: text-classification
          model: {provider: local, path: @CLF@, format: safetensor}
        """), "line 5, at `component.model.format`: `safetensor` is not a valid value for `format`",
         "(did you mean `safetensors`?)", "Valid values:"),
    _row("unknown-provider", c("""
        component:
          id: probe
          task: text-classification
          model: {provider: s3, path: bucket/model}
        """), "line 5, at `component.model.provider`: unknown model provider `s3`", "Valid providers:"),
    _row("unknown-precision", c("""
        component:
          id: probe
          task: text-classification
          precision: fp16
        """), "line 5, at `component.precision`: `fp16` is not a valid value for `precision`", "'float16'"),
    _row("unknown-quantization", c("""
        component:
          id: probe
          task: text-classification
          quantization: int3
        """), "line 5, at `component.quantization`: `int3` is not a valid value for `quantization`",
         "Valid values:", "'nf4'"),
    _row("unknown-device", c("""
        component:
          id: probe
          task: text-classification
          device: gpu
        """), "line 5, at `component.device`: `gpu` is not a valid value for `device`", "'cuda'"),
    _row("unknown-device-mode", c("""
        component:
          id: probe
          task: text-classification
          device_mode: multi
        """), "line 5, at `component.device_mode`: `multi` is not a valid value for `device_mode`", "'auto'"),
    _row("unknown-pooling", c("""
        component:
          id: probe
          task: text-embedding
          params: {pooling: avg}
        """), "line 5, at `component.params.pooling`: `avg` is not a valid value for `pooling`", "'mean'"),
    _row("unknown-http-method", c("""
        component:
          id: probe
          type: http-client
          endpoint: http://127.0.0.1:@CLOSED@/
          method: FETCH
        """), "line 6, at `component.method`: `FETCH` is not a valid value for `method`", "'POST'"),
    _row("unknown-stream-format", c("""
        component:
          id: probe
          type: http-client
          endpoint: http://127.0.0.1:@CLOSED@/
          stream_format: xml
        """), "line 6, at `component.stream_format`: `xml` is not a valid value for `stream_format`", "'json'"),
    _row("unknown-chat-role", c("""
        component:
          id: probe
          task: chat-completion
          messages:
            - role: bot
              content: hi
        """), "line 6, at `component.messages[0].role`: `bot` is not a valid value for `role`", "'assistant'"),
    _row("unknown-adapter-type", c("""
        component:
          id: probe
          task: text-generation
          peft_adapters:
            - {type: qlora, name: a, model: tloen/alpaca-lora-7b}
        """), "line 6, at `component.peft_adapters[0].type`: `qlora` is not a valid value for `type`", "'lora'"),

    # -- impossible combinations ----------------------------------------------------------------------
    _row("combo-gguf-with-huggingface", c("""
        component:
          id: probe
          task: text-generation
          model:
            provider: local
            path: /models/llama.gguf
            format: gguf
        """), "line 8, at `component.model.format`: format `gguf` does not fit the `huggingface` driver",
         "`gguf` is read by `llamacpp`"),
    _row("combo-onnx-with-llamacpp", c("""
        component:
          id: probe
          task: text-generation
          driver: llamacpp
          model: {provider: local, path: /m.onnx, format: onnx}
        """), "line 6, at `component.model.format`: format `onnx` does not fit the `llamacpp` driver",
         "`custom`"),
    _row("combo-class-without-custom", c("""
        component:
          id: probe
          task: text-classification
          class: my_models:Classifier
        """), "line 5, at `component.class`: `class:` names a custom model class, but the driver is "
              "`huggingface`", "Add `driver: custom`"),
    _row("combo-streaming-on-embedding", c("""
        component:
          id: probe
          task: text-embedding
          streaming: true
        """), "line 5, at `component.streaming`: task `text-embedding` does not stream",
         "Streaming is for `chat-completion`, `image-text-to-text`, `speech-to-text`, `text-generation`, "
         "`text-to-text`."),
    _row("combo-architecture-on-text-task", c("""
        component:
          id: probe
          task: text-generation
          architecture: blip
        """), "line 5, at `component.architecture`: task `text-generation` takes no `architecture:`", "Remove it"),
    _row("combo-driver-without-the-task", c("""
        component:
          id: probe
          task: image-to-text
          driver: llamacpp
        """), "line 5, at `component.driver`: the `llamacpp` driver does not do task `image-to-text`",
         "Drivers for image-to-text: `custom`, `huggingface`."),
    _row("combo-text-on-chat", c("""
        component:
          id: probe
          task: chat-completion
          text: ${input.text}
        """), "line 5, at `component.text`: task `chat-completion` takes no `text:`", "Its inputs are `messages`."),
    _row("combo-image-on-text-generation", c("""
        component:
          id: probe
          task: text-generation
          image: ${input.image}
        """), "line 5, at `component.image`: task `text-generation` takes no `image:`", "`prompt`"),
    _row("combo-component-and-components", c("""
        component: {id: a, task: text-classification}
        components:
          - {id: b, task: text-classification}
        """), "line 3, at `components`: both `component:` and `components:` are given", "not both"),
    _row("combo-job-and-jobs", c("""
        workflow:
          job: {component: clf}
          jobs:
            - component: clf
        """), "line 4, at `workflow.jobs`: both `job:` and `jobs:` are given", "Use `job:` for one job"),
    _row("combo-adapter-name-twice", c("""
        component:
          id: probe
          task: text-generation
          peft_adapters:
            - {name: a, model: tloen/alpaca-lora-7b}
            - {name: a, model: plncmm/guanaco-lora-7b}
        """), "line 6, at `component.peft_adapters[0].name`: the adapter name `a` is used twice or reserved",
         "Give each adapter its own `name:`"),
    _row("combo-labels-do-not-match-the-model", c("""
        component:
          id: probe
          task: text-classification
          model: @CLF@
          labels: [bad, neutral, good]
        """), "`labels:` names 3 labels but the model has 2 outputs", "Give exactly 2 labels"),
    _row("combo-custom-without-class", c("""
        component:
          id: probe
          task: text-classification
          driver: custom
        """), "component `probe` uses `driver: custom` but names no `class:`", "Add `class: package.module:"),

    # -- missing or unreadable local paths, bad hub ids -------------------------------------------------
    _row("path-missing-local-model", c("""
        component:
          id: probe
          task: text-classification
          model: ./no/such/model
        """), "the local model path `./no/such/model` does not exist", "Check the path"),
    _row("path-missing-local-mapping", c("""
        component:
          id: probe
          task: text-classification
          model: {provider: local, path: /no/such/folder}
        """), "the local model path `/no/such/folder` does not exist", "Check the path"),
    _row("path-empty-folder", c("""
        component:
          id: probe
          task: text-classification
          model: @TMP@/empty
        """), "@TMP@/empty", "Check that the folder holds config.json"),
    _row("path-garbage-config", c("""
        component:
          id: probe
          task: text-classification
          model: @TMP@/garbage
        """), "@TMP@/garbage", "Check that the folder holds config.json"),
    _row("path-a-text-file", c("""
        component:
          id: probe
          task: text-classification
          model: @TMP@/notes.txt
        """), "@TMP@/notes.txt", "Check"),
    _row("path-missing-custom-class-file", c("""
        component:
          id: probe
          task: text-classification
          driver: custom
          class: ./no_such_file.py:Model
        """), "`class: ./no_such_file.py:Model`: the file", "does not exist", "relative to the notebook's folder"),
    _row("path-custom-class-not-importable", c("""
        component:
          id: probe
          task: text-classification
          driver: custom
          class: no_such_module_xyz:Model
        """), "`class: no_such_module_xyz:Model`: cannot import `no_such_module_xyz`", "check the module path"),
    _row("path-custom-class-file-has-a-syntax-error", c("""
        component:
          id: probe
          task: text-classification
          driver: custom
          class: @TMP@/broken.py:Model
        """), "@TMP@/broken.py", "SyntaxError"),
    _row("path-custom-class-missing-in-module", c("""
        component:
          id: probe
          task: text-classification
          driver: custom
          class: json:NoSuchClass
        """), "`class: json:NoSuchClass`: `json` has no `NoSuchClass`", "Classes there: "),
    _row("path-custom-class-without-colon", c("""
        component:
          id: probe
          task: text-classification
          driver: custom
          class: JustAName
        """), "`class: JustAName` is not of the form `module:Class` or `file.py:Class`"),
    _row("hub-id-not-in-the-offline-cache", c("""
        component:
          id: probe
          task: text-classification
          model: nobody-xyz/not-a-cached-model
        """), "`nobody-xyz/not-a-cached-model`", "offline", "huggingface-cli download nobody-xyz/not-a-cached-model"),
    _row("hub-revision-not-in-the-cache", c("""
        component:
          id: probe
          task: text-classification
          model: {repository: distilbert-base-uncased, revision: v9.9}
        """), "`distilbert-base-uncased`", "huggingface-cli download distilbert-base-uncased"),
    _row("hub-adapter-not-in-the-cache", c("""
        component:
          id: probe
          task: text-generation
          model: gpt2
          peft_adapters:
            - {name: a, model: nobody-xyz/no-such-lora}
        """), "nobody-xyz/no-such-lora", "Check that the folder or repository holds adapter_config.json"),
    _row("hub-gguf-filename-not-in-the-cache", c("""
        component:
          id: probe
          task: text-generation
          driver: llamacpp
          model: {repository: gpt2, filename: nope.Q4_K_M.gguf}
        """), "could not get `nope.Q4_K_M.gguf` of `gpt2`", "huggingface-cli download gpt2 nope.Q4_K_M.gguf",
         marks=_NO_LLAMACPP),
    _row("reload-of-clf-that-fails-keeps-the-old-model", c("""
        component:
          id: clf
          type: model
          task: text-classification
          model: /no/such/classifier
          text: ${input.text}
        """), "the local model path `/no/such/classifier` does not exist"),
    _row("all-or-nothing-a-good-component-beside-a-bad-one", c("""
        components:
          - id: good
            type: http-client
            endpoint: http://127.0.0.1:@CLOSED@/
          - id: bad
            task: text-classification
            model: /no/such/classifier
        """), "the local model path `/no/such/classifier` does not exist"),

    # -- bad ${...} expressions -----------------------------------------------------------------------
    _row("expr-unknown-source", probe("${inptu.text}"),
         "line 7, at `component.text`: `${inptu.text}`: unknown source `inptu` (did you mean `input`?)",
         "Valid sources: "),
    _row("expr-unknown-type", probe("${input.text as nubmer}"),
         "line 7, at `component.text`: `${input.text as nubmer}`: unknown type `nubmer` (did you mean `number`?)",
         "Valid types after `as`: "),
    _row("expr-unclosed", probe('"${input.text"'),
         "line 7, at `component.text`: the expression `${input.text` has no closing `}`",
         "Write it as `${source.path}`"),
    _row("expr-bad-index", probe("${input.items[abc]}"),
         "line 7, at `component.text`: `${input.items[abc]}`: `[abc]` is not an index", "Use `[0]`, `[-1]`, a slice `[1:3]` or `[*]`."),
    _row("expr-empty-index", probe("${input.items[]}"),
         "line 7, at `component.text`: `${input.items[]}`: `[]` is not an index", "Use `[0]`"),
    _row("expr-bad-image-format", probe("${input.photo as image;jpeg}"),
         "line 7, at `component.text`: `${input.photo as image;jpeg}`: `;jpeg` is not a format of `image`",
         "`base64`, `data-uri`, `path`, `url`"),
    _row("expr-format-on-text", probe("${input.text as text;upper}"),
         "line 7, at `component.text`: `${input.text as text;upper}`: `;upper` is not a format of `text`",
         "Formats (how a text value holds the data): `base64`, `data-uri`, `path`, `url`."),
    _row("expr-bad-projection", probe("${input.rows as object[]name}"),
         "line 7, at `component.text`: `${input.rows as object[]name}`: unexpected `name` after the type",
         "Write `as type[]/subtype[attrs];format`"),
    _row("expr-no-source", probe("${}"),
         "line 7, at `component.text`: `${}` does not start with a source", "Valid sources: "),
    _row("expr-env-with-a-path", probe("${env.HOME.dir}"),
         "line 7, at `component.text`: `${env.HOME.dir}`: write an environment variable as `${env.NAME}`"),
    _row("expr-env-with-an-index", probe("${env[0]}"),
         "line 7, at `component.text`: `${env[0]}`: write an environment variable as `${env.NAME}`"),
    _row("expr-trailing-garbage", probe("${input.text!}"),
         "line 7, at `component.text`: `${input.text!}`: unexpected `!`", "Write `${source.key[0] as type | default}`"),
    _row("expr-nothing-after-dot", probe("${input.}"),
         "line 7, at `component.text`: `${input.}`: expected a key after `.`"),
    _row("expr-bad-nested-default", probe("${input.text | ${inptu.other}}"),
         "line 7, at `component.text`", "unknown source `inptu` (did you mean `input`?)"),
    _row("expr-in-a-job-input", c("""
        workflow:
          id: w
          jobs:
            - component: clf
              input: {text: "${input.text as txt}"}
        """), "line 6, at `workflow.jobs[0].input.text`: `${input.text as txt}`: unknown type `txt` "
              "(did you mean `text`?)"),
    _row("expr-in-a-workflow-output", c("""
        workflow:
          id: w
          jobs:
            - id: only
              component: clf
          output: ${job.only.output}
        """), "line 7, at `workflow.output`: `${job.only.output}`: unknown source `job` (did you mean `jobs`?)"),
    _row("expr-in-an-http-header", c("""
        component:
          id: probe
          type: http-client
          endpoint: http://127.0.0.1:@CLOSED@/
          headers: {Authorization: "Bearer ${env}"}
        """), "line 6, at `component.headers.Authorization`: `${env}`: write an environment variable as "
              "`${env.NAME}`"),

    # -- jobs and workflows ---------------------------------------------------------------------------
    _row("job-unknown-component", c("""
        workflow:
          id: w
          jobs:
            - component: clff
        """), "line 5, at `workflow.jobs[0].component`: job `job` uses component `clff`, which is not defined "
              "(did you mean `clf`?)", "Defined components: "),
    _row("job-unknown-action", c("""
        workflow:
          id: w
          jobs:
            - component: srv
              action: mising
        """), "line 6, at `workflow.jobs[0].action`: component `srv` has no action `mising` (did you mean "
              "`missing`?)", "Its actions: `default`, `missing`."),
    _row("job-depends-on-unknown", c("""
        workflow:
          id: w
          jobs:
            - id: a
              component: clf
            - id: b
              component: clf
              depends_on: [c]
        """), "line 9, at `workflow.jobs[1].depends_on`: job `b` depends on `c`, which is not a job of this workflow",
         "Jobs here: `a`, `b`."),
    _row("job-depends-on-cycle", c("""
        workflow:
          id: w
          jobs:
            - id: a
              component: clf
              depends_on: [b]
            - id: b
              component: clf
              depends_on: [a]
        """), "at `workflow.jobs", ".depends_on`: the jobs depend on each other in a cycle: a -> b -> a",
         "Remove one of the `depends_on` entries"),
    _row("job-depends-on-itself", c("""
        workflow:
          id: w
          jobs:
            - id: a
              component: clf
              depends_on: [a]
        """), "line 7, at `workflow.jobs[0].depends_on`: the jobs depend on each other in a cycle: a -> a"),
    _row("job-names-no-component", c("""
        workflow:
          id: w
          jobs:
            - input: {text: hi}
        """), "line 5, at `workflow.jobs[0]`: the job names no `component:`", "Add `component: ID`"),
    _row("workflow-without-jobs", c("""
        workflow:
          id: w
          title: nothing to do
        """), "line 2, at `workflow`: the workflow has no jobs", "Add `jobs:`"),
    _row("duplicate-component-ids", c("""
        components:
          - {id: twin, type: http-client, endpoint: "http://127.0.0.1:@CLOSED@/"}
          - {id: twin, type: http-client, endpoint: "http://127.0.0.1:@CLOSED@/"}
        """), "line 4, at `components[1]`: two components share the id `twin`", "Give each component its own `id:`"),
    _row("duplicate-job-ids", c("""
        workflow:
          id: w
          jobs:
            - {id: a, component: clf}
            - {id: a, component: clf}
        """), "line 6, at `workflow.jobs[1]`: two jobs share the id `a`", "Give each job its own `id:`"),
    _row("duplicate-action-ids", c("""
        component:
          id: probe
          task: text-classification
          actions:
            - {id: a, text: x}
            - {id: a, text: y}
        """), "line 7, at `component.actions[1]`: two actions share the id `a`", "Give each action its own `id:`"),
    _row("duplicate-workflow-ids", c("""
        workflows:
          - {id: w, job: {component: clf}}
          - {id: w, job: {component: clf}}
        """), "line 4, at `workflows[1]`: two workflows share the id `w`", "Give each workflow its own `id:`"),
    _row("workflows-two-marked-default", c("""
        workflows:
          - {id: w1, default: true, job: {component: clf}}
          - {id: w2, default: true, job: {component: clf}}
        """), "line 4, at `workflows[1].default`: 2 workflows are marked `default: true` (`w1`, `w2`)",
         "Mark one of them"),
    _row("dry-run-reports-the-same-mistake", c("""
        component:
          id: probe
          task: text-classification
          precision: half
        """, flags="--dry-run"), "line 5, at `component.precision`: `half` is not a valid value for `precision`"),

    # -- run time: inputs, conversions, jobs ------------------------------------------------------------
    _row("run-missing-input", r("clf", "txt: a great film\n"),
         "line 7, at `components[0].text`: `${input.text}`: `input` has no `text`", "`input` has: `txt`",
         "Give `text:` in the %%run body"),
    _row("run-empty-body-missing-input", r("clf", "{}\n"),     # IPython refuses an empty cell body: `{}` is none
         "`${input.text}`: `input` has no `text`", "Give `text:` in the %%run body"),
    _row("run-missing-nested-input", r("deep", "doc: {name: x}\n"),
         "line 66, at `workflows[7].job.input.text`: `${input.doc.title}`: `input.doc` has no `title`",
         "`input.doc` has: `name`."),
    _row("run-as-integer-from-words", r("typed", "n: three\n"),
         "line 41, at `workflows[0].jobs[0].input.text`: `${input.n as integer}`: cannot convert `'three'` to "
         "`integer`", "Give a whole number such as 5."),
    _row("run-as-integer-from-a-fraction", r("typed", "n: 2.5\n"),
         "`${input.n as integer}`: cannot convert `2.5` to `integer`", "2.5 is not a whole number",
         "Give a whole number such as 5."),
    _row("run-as-integer-from-a-list", r("typed", "n: [1, 2]\n"),
         "line 41", "`${input.n as integer}`: cannot convert `[1, 2]` to `integer`", "Give a whole number"),
    _row("run-as-number-from-words", r("numbers", "x: lots\n"),
         "line 45, at `workflows[1].jobs[0].input.text`: `${input.x as number}`: cannot convert `'lots'` to "
         "`number`", "Give a number such as 0.7."),
    _row("run-as-number-from-a-boolean", r("numbers", "x: true\n"),
         "`${input.x as number}`: cannot convert `True` to `number`: a boolean is not a number",
         "Give a number such as 0.7."),
    _row("run-as-boolean-from-words", r("flags", "flag: perhaps\n"),
         "line 49, at `workflows[2].jobs[0].input.text`: `${input.flag as boolean}`: cannot convert `'perhaps'` "
         "to `boolean`", "Give true or false."),
    _row("run-as-json-from-bad-json", r("parsed", "doc: '{not json'\n"),
         "line 53, at `workflows[3].jobs[0].input.text`: `${input.doc as json}`: cannot convert", "to `json`",
         "Give valid JSON text or a mapping."),
    _row("run-job-read-before-it-ran", r("early", "text: hi\n"),
         "line 58, at `workflows[4].jobs[0].input.text`: `${jobs.second.output.label}`: job `second` has not run "
         "before this point", "add `depends_on: [second]`"),
    _row("run-env-variable-not-set", r("secret", "text: hi\n"),
         "line 64", "the environment variable `MC_JUPYTER_TEST_NEVER_SET` is not set",
         "os.environ['MC_JUPYTER_TEST_NEVER_SET']"),
    _row("run-missing-input-beside-a-numeric-key", r("clf", "1: one\ntxt: two\n"),
         "line 7, at `components[0].text`: `${input.text}`: `input` has no `text`", "Give `text:` in the %%run body"),
    _row("run-without-an-id-between-several-workflows", r("", "text: hi\n"),
         "the latest %%compose defines 8 workflows (`deep`, `early`", "marks none `default: true`",
         "Name one: `%%run typed`"),
    _row("run-unknown-target", r("clff", "text: hi\n"),
         "no workflow or component `clff` (did you mean `clf`?)", "Workflows: ", "components: "),

    # -- %%run bodies ---------------------------------------------------------------------------------
    _row("body-a-list", r("clf", "- a great film\n- an awful film\n"),
         "the %%run body must be a YAML mapping of inputs (`name: value`), not a list", "prompt: Why is the sky blue?"),
    _row("body-a-scalar", r("clf", "a great film\n"),
         "the %%run body must be a YAML mapping of inputs (`name: value`), not a str", "Example:"),
    _row("body-yaml-syntax-error", r("clf", "text: [a great film\n"),
         "the YAML cannot be parsed", "line 3", "Check the indentation"),
    _row("body-duplicate-key", r("clf", "text: a\ntext: b\n"),
         "line 3, at `text`: the key `text` appears twice", "Remove one of them"),
    _row("body-undefined-python-variable", r("clf", "text: $undefined_var_xyz\n"),
         "input `text`: the Python variable `undefined_var_xyz` is not defined", "write `$$undefined_var_xyz`"),
    _row("body-undefined-python-variable-in-a-list", r("clf", "text: [$undefined_var_xyz, ok]\n"),
         "input `text`: the Python variable `undefined_var_xyz` is not defined", "Define it in an earlier cell"),
    _row("body-control-character", r("clf", "text: \x00\n"),
         "line 2", "the YAML cannot be parsed", "#x0000"),
    _row("body-impossible-date", r("clf", "text: 2024-02-30\n"),
         "line 2", "2024-02-30", "quote"),

    _row("body-nested-thousands-deep", r("clf", "text: " + "[" * 5000 + "\n"),
         "line 2, at `text[0][0][0][0][0]…`: the YAML is nested deeper than 100 levels"),
    _row("body-boolean-key", r("clf", "yes: a great film\n"),
         "line 2, at `yes`: the key `yes` is read by YAML as the boolean true", 'Quote it: `"yes":`.'),
    _row("body-unknown-tag", r("clf", "text: !!python/object/apply:os.system [ls]\n"),
         "line 2, at `text`: unknown tag `!!python/object/apply:os.system`", "remove the tag"),

    # -- magic lines and flags --------------------------------------------------------------------------
    _row("flag-compose-bogus", c("""
        component: {id: probe, task: text-classification}
        """, flags="--bogus"), "--bogus", "--dry-run", "-f FILE"),
    _row("flag-run-too-many-arguments", r("a b c", "text: hi\n"), "b c", "WORKFLOW", "-o"),
    _row("flag-run-o-without-a-name", r("clf -o", "text: hi\n"), "-o/--output", "expected one argument"),
    _row("flag-mc-unknown-command", "%mc explode", "unknown %mc command `explode`",
         "%mc status ", "%mc unload ID [ID ...]", "%mc stop ID [ID ...]", "%mc logs ID [N]", "%mc down "),
    _row("flag-mc-status-with-extra-words", "%mc status now", "%mc status: unrecognized arguments: now",
         "Usage: %mc status"),
    _row("flag-mc-unload-unknown", "%mc unload clff", "no component `clff` is loaded (did you mean `clf`?)",
         "Loaded: "),
    _row("flag-mc-logs-of-a-model", "%mc logs clf", "component `clf` is a model, not a managed server"),
    _row("flag-mc-logs-count-not-a-number", "%mc logs srv many", "many", "%mc logs ID [N]"),
    _row("flag-compose-line-without-file-or-body", "%compose",
         "%compose needs YAML: write it in a %%compose cell, or use %compose -f FILE"),
    _row("flag-compose-empty-cell", "%%compose\n\n   \n",
         "%compose needs YAML: write it in a %%compose cell, or use %compose -f FILE"),
    _row("flag-compose-file-and-body", c("""
        component: {id: probe, task: text-classification}
        """, flags="-f @TMP@/good.yaml"), "give either -f FILE or a YAML cell body, not both"),
    _row("flag-compose-missing-file", "%compose -f @TMP@/no-such.yaml",
         "the compose file `@TMP@/no-such.yaml` does not exist"),
    _row("flag-compose-file-with-a-mistake", "%compose -f @TMP@/bad.yaml",
         "line 3, at `component.task`: unknown task `text-clasification` (did you mean `text-classification`?)"),

    _row("flag-run-o-not-a-variable-name", r("clf -o 1st", "text: hi\n"),
         "-o takes the name of a Python variable, not `1st`", "%%run -o answer"),
    _row("flag-mc-unload-a-known-and-an-unknown-id", "%mc unload clf clff",
         "no component `clff` is loaded (did you mean `clf`?)", "Nothing was unloaded"),
    _row("flag-mc-stop-a-server-and-a-model", "%mc stop srv clf",
         "component `clf` is a model, not a managed server", "%mc unload clf"),
    _row("flag-mc-stop-a-client", "%mc stop closed", "component `closed` is an http-client, not a managed server"),
    _row("flag-mc-unload-a-long-id", "%mc unload " + "z" * 5000, "no component `zzzz", "…(5,000 characters)"),
    _row("flag-compose-file-not-utf8", "%compose -f @TMP@/latin1.yaml",
         "line 3: the compose file `@TMP@/latin1.yaml` is not UTF-8 text: the byte 0xe9 at offset 35",
         "Save the file as UTF-8"),
    _row("flag-compose-file-a-folder", "%compose -f @TMP@/empty",
         "the compose file `@TMP@/empty` is a folder, not a YAML file", "Give the path of a .yaml file"),
    _row("flag-compose-file-a-device", "%compose -f /dev/null", "the compose file `/dev/null` is not a regular file"),
    _row("flag-compose-file-permission-denied", "%compose -f /proc/sys/vm/drop_caches",   # mode 0200: even root
         "the compose file `/proc/sys/vm/drop_caches` cannot be read: permission denied", "Check its permissions",
         marks=pytest.mark.skipif(not os.path.exists("/proc/sys/vm/drop_caches"), reason="Linux only")),

    # -- images -------------------------------------------------------------------------------------
    _row("image-corrupt-bytes", r("pics", "image: $corrupt_bytes\n"),
         "is not a readable image", "Check that it is a PNG, JPEG or WebP image", "`${input.image as image}`"),
    _row("image-corrupt-file", r("pics", "image: @TMP@/corrupt.png\n"),
         "is not a readable image", "@TMP@/corrupt.png", "`${input.image as image}`"),
    _row("image-missing-file", r("pics", "image: @TMP@/no-such-photo.png\n"),
         "image file not found: @TMP@/no-such-photo.png", "Give an existing path"),
    _row("image-a-folder", r("pics", "image: @TMP@\n"),
         "@TMP@", "`${input.image as image}`", "is a folder, not an image file", "Give the path of one image"),
    _row("image-a-number", r("pics", "image: 42\n"),
         "cannot read an image from 42 (a int)", "Give a path, URL, bytes", "`${input.image as image}`"),
    _row("image-bad-base64", r("pics64", "image: '***not base64***'\n"),
         "`${input.image as image;base64}`", "image"),
    _row("image-url-unreachable", r("pics", "image: http://127.0.0.1:@CLOSED@/cat.png\n"),
         "could not fetch the image at http://127.0.0.1:@CLOSED@/cat.png", "Check the address"),

    # -- servers and endpoints ------------------------------------------------------------------------
    _row("endpoint-closed-port", r("closed", "prompt: hi\n"),
         "cannot connect to http://127.0.0.1:@CLOSED@/v1/completions", "Is the server running and listening there?"),
    _row("endpoint-http-404", r("notfound", "{}\n"),
         "http://127.0.0.1:@PORT@/no/such/route answered HTTP 404", "Check the request body and path"),
    _row("endpoint-missing", r("noend", "{}\n"),
         "component `noend` has no `endpoint:`", "Add `endpoint: http://host:port/path`."),
    _row("server-never-ready", SLEEPER,
         "server `sleeper` was not ready on 127.0.0.1:@FREE@ within 1 s", "Raise `manage.ready_timeout`"),
    _row("server-exits-early", c("""
        component:
          id: quitter
          type: http-server
          manage:
            start: [@PY@, @SERVER@, --port, "@FREE@", --exit-early]
            ready_timeout: 20
          port: @FREE@
        """), "server `quitter` exited (code 2) before it was ready", "CUDA out of memory while loading the model"),
    _row("server-program-not-found", c("""
        component:
          id: nowhere
          type: http-server
          manage:
            start: [no-such-program-xyz, serve]
          port: @FREE@
        """), "server `nowhere`: cannot start `no-such-program-xyz serve`", "installed and on PATH"),
    _row("server-install-fails", c("""
        component:
          id: badinstall
          type: http-server
          manage:
            install: [@PY@, -c, "import sys; print('no wheel for you'); sys.exit(4)"]
            start: [sleep, "30"]
          port: @FREE@
        """), "server `badinstall`: the install command failed (exit 4)", "no wheel for you"),
    _row("server-port-already-in-use", c("""
        component:
          id: squatter
          type: http-server
          manage:
            start: [sleep, "30"]
          port: @PORT@
        """), "server `squatter`: port @PORT@ on 127.0.0.1 is already in use", "change `port:`"),
    _row("server-without-start", c("""
        component:
          id: nostart
          type: http-server
          port: @FREE@
        """), "http-server `nostart` has no `manage.start` command", "type: http-client"),
    _row("server-port-out-of-range", c("""
        component:
          id: farport
          type: http-server
          port: 70000
          manage:
            start: [sleep, "30"]
        """), "line 5, at `component.port`", "65535"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kernel(models, tmp_path_factory):
    """One shell, one loaded classifier, one running server: shared by every row."""
    from IPython.testing.globalipapp import get_ipython

    tmp = tmp_path_factory.mktemp("bad_input")
    (tmp / "empty").mkdir()
    (tmp / "garbage").mkdir()
    (tmp / "garbage" / "config.json").write_text("{this is not json")
    (tmp / "notes.txt").write_text("not a model\n")
    (tmp / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    (tmp / "broken.py").write_text("class Model(:\n    pass\n")
    (tmp / "good.yaml").write_text("component: {id: probe, task: text-classification}\n")
    (tmp / "bad.yaml").write_text("component:\n  id: probe\n  task: text-clasification\n")
    (tmp / "latin1.yaml").write_bytes("component:\n  id: probe\n  title: caf\xe9\n".encode("latin-1"))
    ctx = {"@CLF@": str(models["classifier"]), "@PY@": sys.executable, "@SERVER@": SERVER, "@TMP@": str(tmp),
           "@PORT@": str(free_port()), "@CLOSED@": str(free_port()), "@FREE@": str(free_port())}
    old_cache = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")   # install markers of the rows stay here
    shell = get_ipython()
    shell.run_line_magic("load_ext", "mc_jupyter")
    mc.down()
    shell.user_ns["corrupt_bytes"] = b"this is not an image at all"
    base = fill(BASE, ctx)
    run_cell(shell, base)
    state = {"shell": shell, "ctx": ctx, "base": base, "model": mc.REGISTRY.get("clf").driver.model,
             "pid": mc.REGISTRY.get("srv").driver.process.pid}
    yield state
    mc.down()
    for name in ("corrupt_bytes", "_"):
        shell.user_ns.pop(name, None)
    if old_cache is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old_cache


def fill(text: str, ctx: dict) -> str:
    for token, value in ctx.items():
        text = text.replace(token, value)
    return text


def children() -> set:
    """This process's live (not zombie) descendants."""
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def kernel_state() -> dict:
    reg = mc.REGISTRY
    with reg.lock:
        entries = dict(reg.entries)
        workflows = dict(reg.workflows)
        target = reg.default_target
    return {"snapshot": reg.snapshot(), "entries": {k: id(v) for k, v in entries.items()},
            "drivers": {k: id(v.driver) for k, v in entries.items()},
            "actions": {k: id(v.actions) for k, v in entries.items()},
            "workflows": {k: id(v) for k, v in workflows.items()}, "target": target,
            "loading": list(reg.loading)}


def settled_children(expected: set, within: float = 10.0) -> set:
    """The children once they equal ``expected`` (a stopped server's group may take a moment)."""
    deadline = time.monotonic() + within
    now = children()
    while now != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        now = children()
    return now


@pytest.mark.slow
@pytest.mark.parametrize("text, fragments", ROWS)
def test_a_bad_input_is_a_usage_error_that_says_where_and_how_and_changes_nothing(kernel, text, fragments):
    shell, ctx = kernel["shell"], kernel["ctx"]
    text, fragments = fill(text, ctx), [fill(f, ctx) for f in fragments]
    before, procs = kernel_state(), children()
    clf = mc.REGISTRY.get("clf").driver
    model, pid = clf.model, mc.REGISTRY.get("srv").driver.process.pid
    try:
        with pytest.raises(UsageError) as info:
            run_cell(shell, text)
        message = str(info.value)
        missing = [f for f in fragments if f not in message]
        assert not missing, f"missing {missing} in the message:\n{message}"
        assert "Traceback" not in message
        assert kernel_state() == before
        assert mc.REGISTRY.get("clf").driver is clf and clf.model is model
        assert mc.REGISTRY.get("srv").driver.process.pid == pid and psutil.pid_exists(pid)
        assert settled_children(procs) == procs
    finally:
        _restore(kernel, before)


def _restore(kernel, before: dict) -> None:
    """Put the shared state back if a row changed it (so one bug does not fail every later row)."""
    with mc.REGISTRY.lock:
        extra = [cid for cid in mc.REGISTRY.entries if cid not in before["entries"]]
    for cid in extra:
        mc.unload(cid)
    entry = mc.REGISTRY.entries.get("clf")
    if entry is None or entry.driver is None or entry.driver.model is not kernel["model"] \
            or kernel_state()["workflows"] != before["workflows"]:
        mc.down()
        run_cell(kernel["shell"], kernel["base"])
        kernel["model"] = mc.REGISTRY.get("clf").driver.model
        kernel["pid"] = mc.REGISTRY.get("srv").driver.process.pid
        kernel["restored"] = True


def test_the_corpus_is_large_and_every_id_is_unique():
    ids = [p.id for p in ROWS]
    assert len(ids) >= 70 and len(set(ids)) == len(ids)


def test_base_lines_are_where_the_rows_say():
    """The run-time rows quote BASE's line numbers: keep them honest if BASE is edited."""
    lines = BASE.splitlines()
    assert "text: ${input.text}" in lines[BASE_LINES["clf.text"] - 1]
    for key, needle in (("typed.input", "${input.n as integer}"), ("numbers.input", "${input.x as number}"),
                        ("flags.input", "${input.flag as boolean}"), ("parsed.input", "${input.doc as json}"),
                        ("early.first.input", "${jobs.second.output.label}"),
                        ("secret.input", "MC_JUPYTER_TEST_NEVER_SET"), ("deep.input", "${input.doc.title}")):
        assert needle in lines[BASE_LINES[key] - 1], key


def test_the_shared_model_and_server_were_never_reloaded_or_restarted(kernel):
    """Runs after the rows: the one classifier and the one server of the module are the originals."""
    entry = mc.REGISTRY.get("clf")
    assert not kernel.get("restored"), "a row changed the shared state, which was then composed again"
    assert entry.driver.model is kernel["model"] and entry.load_count == 1
    assert mc.REGISTRY.get("srv").driver.process.pid == kernel["pid"] and psutil.pid_exists(kernel["pid"])
    assert run_cell(kernel["shell"], "%%run clf\ntext: I love this movie, it is wonderful\n").output["label"] == \
        "POSITIVE"
