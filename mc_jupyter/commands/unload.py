"""``%mc unload ID...``: free components' models (a managed server is stopped)."""

from __future__ import annotations

from argparse import Namespace

from .. import api
from .parser import CommandParser, Say, component_ids, each_once

NAME = "unload"
SUMMARY = "free components' models (or stop their servers)"
arguments = component_ids


def run(args: Namespace, parser: CommandParser, say: Say) -> None:
    api.unload(each_once(args.ids))    # every id is checked before any is freed
    say(f"unloaded {', '.join(each_once(args.ids))}")
