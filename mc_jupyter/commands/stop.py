"""``%mc stop ID...``: stop managed servers (``type: http-server``); a model is refused, pointing at
``%mc unload``."""

from __future__ import annotations

from argparse import Namespace

from .. import api
from .parser import CommandParser, Say, component_ids, each_once

NAME = "stop"
SUMMARY = "stop managed servers (type: http-server)"
arguments = component_ids


def run(args: Namespace, parser: CommandParser, say: Say) -> None:
    api.stop(each_once(args.ids))      # every id is checked (a server, loaded, idle) before any is stopped
    say(f"stopped {', '.join(each_once(args.ids))}")
