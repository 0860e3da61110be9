"""``%mc down``: free everything and stop every server."""

from __future__ import annotations

from argparse import Namespace

from .. import api
from .parser import CommandParser, Say

NAME = "down"
SUMMARY = "free everything and stop every server"


def arguments(parser: CommandParser) -> None:
    """No arguments."""


def run(args: Namespace, parser: CommandParser, say: Say) -> None:
    freed = api.down()
    say(f"unloaded {', '.join(freed)}" if freed else "nothing was loaded")
