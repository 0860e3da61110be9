"""``%mc unload ID...``: free components' models (a managed server is stopped)."""

from __future__ import annotations

from argparse import Namespace

from .. import api
from .parser import CommandParser, Say

NAME = "unload"
SUMMARY = "free components' models (or stop their servers)"


def arguments(parser: CommandParser) -> None:
    parser.add_argument("ids", metavar="ID", nargs="+")


def run(args: Namespace, parser: CommandParser, say: Say) -> None:
    ids = list(dict.fromkeys(args.ids))
    api.unload(ids)            # every id is checked before any is freed
    say(f"unloaded {', '.join(ids)}")
