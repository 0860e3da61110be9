"""The building blocks every part of the schema shares: strict models, and the value shapes that may
be a literal or a ``${...}`` binding evaluated at run time."""

from __future__ import annotations

from typing import Annotated, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict

from .positions import clip


def _binding_text(value: str) -> str:
    if "${" not in value:
        raise ValueError(f"expected a number or a `${{...}}` expression, not the text {clip(repr(value))}")
    return value


Binding = Annotated[str, AfterValidator(_binding_text)]
Number = Union[int, float, Binding]   # a number, or a ${...} that gives one at run time
Flag = Union[bool, str]               # true/false, or a ${...} that gives one


class Strict(BaseModel):
    """Unknown keys are errors; a validated model is frozen: what the backends read is what was checked."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Named(Strict):
    """What names a component, a job or a workflow."""

    id: Optional[str] = None
    title: Optional[str] = None
    description: Optional[str] = None


class ActionHeader(Strict):
    """What names an action in a list of them (``actions:``)."""

    id: str = "default"
    default: bool = False
    title: Optional[str] = None
    description: Optional[str] = None
