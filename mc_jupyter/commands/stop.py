"""``%mc stop ID...``: stop managed servers (``type: http-server``); a model is refused, pointing at
``%mc unload``."""

from __future__ import annotations

from argparse import Namespace

from .. import api
from .parser import CommandParser, Say

NAME = "stop"
SUMMARY = "stop managed servers (type: http-server)"


def arguments(parser: CommandParser) -> None:
    parser.add_argument("ids", metavar="ID", nargs="+")


def run(args: Namespace, parser: CommandParser, say: Say) -> None:
    ids = list(dict.fromkeys(args.ids))
    api.stop(ids)              # every id is checked (a server, loaded, idle) before any is stopped
    say(f"stopped {', '.join(ids)}")
