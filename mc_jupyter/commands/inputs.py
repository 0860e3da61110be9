"""``%mc inputs [TARGET]``: the inputs a run of a workflow (or component) reads: type, choices, default,
description, required."""

from __future__ import annotations

from argparse import Namespace

from .. import api
from .parser import CommandParser, Say

NAME = "inputs"
SUMMARY = "the inputs a workflow reads: type, choices, default, description"


def arguments(parser: CommandParser) -> None:
    parser.add_argument("target", metavar="TARGET", nargs="?", default=None)


def run(args: Namespace, parser: CommandParser, say: Say):
    return api.inputs(args.target)
