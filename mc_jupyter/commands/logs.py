"""``%mc logs ID [N]``: the last N (50) lines a managed server printed."""

from __future__ import annotations

from argparse import Namespace

from .. import api
from ..config.positions import clip
from .parser import CommandParser, Say

NAME = "logs"
SUMMARY = "the last N (50) lines a managed server printed"
DEFAULT_LINES = 50


def arguments(parser: CommandParser) -> None:
    parser.add_argument("id", metavar="ID")
    parser.add_argument("lines", metavar="N", nargs="?", default=str(DEFAULT_LINES))


def lines(parser: CommandParser, text: str) -> int:
    """``N``: a whole number written in ASCII digits (0: none)."""
    if not (text.isascii() and text.isdigit()):
        parser.refuse(f"%mc logs: `{clip(text, 40)}` is not a number of lines.")
    return int(text)


def run(args: Namespace, parser: CommandParser, say: Say) -> None:
    count = lines(parser, args.lines)
    text = "\n".join(api.logs(args.id, count))
    if text:
        say(text)
