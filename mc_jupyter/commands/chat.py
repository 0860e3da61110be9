"""``%mc chat ID [ID ...]``: a chat widget on a composed chat-completion component (a pane per ID)."""

from __future__ import annotations

from argparse import Namespace

from .. import api
from .parser import CommandParser, Say, each_once

NAME = "chat"
SUMMARY = "a chat widget: multi-turn, streaming, Stop (several IDs: a pane each)"


def arguments(parser: CommandParser) -> None:
    parser.add_argument("ids", metavar="ID", nargs="+")
    parser.add_argument("--system", default=None, metavar="TEXT", help="the system prompt")


def run(args: Namespace, parser: CommandParser, say: Say):
    ids = each_once(args.ids)
    return api.chat(ids[0] if len(ids) == 1 else ids, system=args.system)
