"""``%mc compare ID ID [ID ...] --prompt TEXT``: one prompt to several components, the replies side by side."""

from __future__ import annotations

from argparse import Namespace

from .. import api
from .parser import CommandParser, Say, each_once

NAME = "compare"
SUMMARY = "one prompt to several components, replies streaming side by side"


def arguments(parser: CommandParser) -> None:
    parser.add_argument("ids", metavar="ID", nargs="+")
    parser.add_argument("--prompt", "-p", default=None, metavar="TEXT", help="the prompt sent to every component")


def run(args: Namespace, parser: CommandParser, say: Say):
    ids = each_once(args.ids)
    if len(ids) < 2:
        parser.refuse("%mc compare needs at least two component ids.")
    return api.compare(ids, prompt=args.prompt)
