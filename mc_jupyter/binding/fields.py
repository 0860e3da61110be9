"""What a workflow's input is, for forms and help: every ``${input.*}`` with its type, choices, default and
description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..config.positions import format_path
from .convert import _SCALAR_TYPES, convert
from .grammar import Expr, Template, _MISSING, _exprs_deep, path_text
from .structure import templates_in


@dataclass(frozen=True)
class InputField:
    """One ``${input...}`` a value reads, as model-compose's ``WorkflowVariable`` describes it."""

    name: str                    # the path under `input`, e.g. "prompt", "options.size" ("" for the whole ${input})
    type: str = "string"         # model-compose's type word ("string" when no `as`)
    is_list: bool = False
    subtype: Optional[str] = None
    choices: Tuple[str, ...] = ()          # select/a,b,c
    format: Optional[str] = None           # path | url | data-uri | base64
    has_default: bool = False
    default: Any = None                    # converted by the type when it is a literal
    description: Optional[str] = None      # @(description ...)
    annotations: Tuple[Tuple[str, str], ...] = ()
    yaml_path: str = ""                    # where it is first written
    line: Optional[int] = None


def _field_of(e: Expr, t: Template) -> InputField:
    has_default = e.default is not _MISSING
    default = None
    if has_default:
        default = repr(e.default) if isinstance(e.default, Template) else e.default
        if not isinstance(e.default, Template) and e.type in _SCALAR_TYPES and default is not None:
            try:
                default = convert(default, e.type, is_list=e.is_list, subtype=e.subtype)
            except Exception:   # a default the type cannot read: shown as written; the run says why
                pass
    return InputField(path_text(e.path), e.type or "string", e.is_list, e.subtype, e.choices, e.format,
                      has_default, default, e.description, e.annotations, format_path(t.yaml_path), t.line)


def _input_exprs(value: Any):
    for t in templates_in(value):
        for e in _exprs_deep(t):
            if e.source == "input":
                yield e, t


def input_fields(*values: Any) -> List[InputField]:
    """Every ``${input...}`` in compiled ``values`` (Templates in mappings, lists and operators, and
    inside defaults), one field per name in the order written: the first mention wins, a later one
    fills in a missing description, default or choices."""
    fields: Dict[str, InputField] = {}
    for value in values:
        for e, t in _input_exprs(value):
            f = _field_of(e, t)
            first = fields.get(f.name)
            if first is None:
                fields[f.name] = f
                continue
            fill: Dict[str, Any] = {}
            if not first.description and f.description:
                fill.update(description=f.description, annotations=first.annotations + f.annotations)
            if not first.has_default and f.has_default:
                fill.update(has_default=True, default=f.default)
            if not first.choices and f.choices:
                fill["choices"] = f.choices
            if fill:
                from dataclasses import replace
                fields[f.name] = replace(first, **fill)
    return list(fields.values())
