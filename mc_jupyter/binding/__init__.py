r"""The ``${...}`` binding grammar: our dialect §4 and the whole of model-compose's.

Expressions are parsed once, at ``%%compose`` time (:func:`compile_value`), so a malformed one fails
with its YAML line; they are evaluated at run time against a :class:`Scope` (:func:`render`).

The full form is model-compose's (``VariableRenderer``)::

    ${key[index].path as type[]/subtype[attrs];format | default @(name value) @(name value)}

    ${input.prompt}                 a value of the run's input; ${input} the whole input
    ${result.scores[0]}             index into the component's result; ${result[1:3]} a slice
    ${jobs.embed.output.vector}     a finished job's output
    ${input.t as number | 0.7}      converted, with a default (parsed as a YAML scalar)
    ${input.x | ${input.y}}         a default that is itself an expression (escapes: \$ \@ \{ \})
    ${env.HUGGINGFACE_TOKEN}        read when the cell runs; never shown (see :func:`scrub`)
    ${result[]}                     each chunk of a stream
    ${context.run_id}               this run's id (uuid4 hex); also task_id, workflow_id
    ${item} ${index}                the element (and its position) inside a map ``*`` or split ``|``
    ${input.m as select/a,b,c | a}  one of the choices (checked when it runs; the default at compose)
    ${input.x @(description Text)}  an annotation: forms and help show it (:func:`input_fields`)
    ${input.v as audio/wav;base64}  base64 text read into an :class:`~mc_jupyter.media.Audio`
    ${output as image/png;base64}   an image written out as base64 of its PNG bytes

Types (model-compose's ``WorkflowVariableType``): string, text, integer, number, boolean, list,
object, json, base64, markdown, image, audio, video, model-3d, file, stream, select, any, none;
``type[]`` is a list of that type; ``object[]/a,b.c`` projects each element. Formats: path, url
(``data:`` URLs, and for images http too), data-uri, base64.

Structural operators (model-compose's ``_render_element``), compiled here and rendered per run:
``{"?": [conditions]}``, ``{"+": [...]}`` (join), ``{"&": {...}}`` (zip), ``{"*": source, key: ...}``
(map, with ``where``), ``{"|": source, key: ...}`` (split), ``...: ${x}`` (spread into a mapping)
and ``- ...${x}`` (spread into a list).

A string that is exactly one expression yields the typed value (a list, an image); text around
expressions interpolates them.
"""

from __future__ import annotations

from ..secrets import leaks_secret, read_env, scrub
from .grammar import (CONTEXT_KEYS, Expr, FORMATS, IMAGE_FORMATS, MEDIA_TYPES, OLDER_STREAM_FORMATS, OPERATORS,
                      SOURCES, STREAM_FORMATS, STREAM_SOURCES, TYPES, Template, parse_template, path_text)
from .convert import convert
from .structure import Cond, Condition, Join, Map, Op, Split, Spread, Zip, compile_value, streams, templates_in
from .fields import InputField, input_fields
from .evaluate import Scope, render, resolve_settings
from .guard import env_fields, guard_secrets, secret_safe

__all__ = [
    "CONTEXT_KEYS", "Cond", "Condition", "Expr", "FORMATS", "IMAGE_FORMATS", "InputField", "Join",
    "MEDIA_TYPES", "Map", "OLDER_STREAM_FORMATS", "OPERATORS", "Op", "SOURCES", "STREAM_FORMATS",
    "STREAM_SOURCES", "Scope", "Split", "Spread", "TYPES", "Template", "Zip", "compile_value", "convert",
    "env_fields", "guard_secrets", "input_fields", "leaks_secret", "parse_template", "path_text", "read_env",
    "render", "resolve_settings", "scrub", "secret_safe", "streams", "templates_in",
]
