"""``%mc status``: the loaded components, their device, memory and state."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

from .. import api
from .parser import CommandParser, Say

NAME = "status"
SUMMARY = "the loaded components, their device, memory and state"


def arguments(parser: CommandParser) -> None:
    """No arguments."""


def run(args: Namespace, parser: CommandParser, say: Say) -> Any:
    return api.status()
