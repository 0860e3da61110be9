"""``%mc form [TARGET]``: a form on a workflow's inputs, with a Run button (model-compose's web UI, in the notebook)."""

from __future__ import annotations

from argparse import Namespace

from .. import api
from .parser import CommandParser, Say

NAME = "form"
SUMMARY = "a form on a workflow's inputs, a Run button and the output below"


def arguments(parser: CommandParser) -> None:
    parser.add_argument("target", metavar="TARGET", nargs="?", default=None)


def run(args: Namespace, parser: CommandParser, say: Say):
    return api.form(args.target)
