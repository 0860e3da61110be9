"""The parser of one ``%mc`` subcommand: argparse whose every refusal is an IPython ``UsageError``
naming the subcommand and its usage line (never ``SystemExit``, never a printed help)."""

from __future__ import annotations

import argparse
from typing import Callable, NoReturn, Optional

from IPython.core.error import UsageError

from ..config.positions import clip
from ..secrets import scrub

#: How a subcommand shows a line of text (``print`` in the magic).
Say = Callable[[str], None]

#: Said after every usage line.
HELP_HINT = "(`%mc?` shows the help)"


def usage_error(message: str) -> UsageError:
    """A ``UsageError`` whose text never shows a ``${env.*}`` secret (a word typed on the line may be one)."""
    return UsageError(scrub(message))


class CommandParser(argparse.ArgumentParser):
    """``%mc NAME``'s arguments. ``usage_line`` (``%mc logs ID [N]``) is generated from them."""

    def __init__(self, name: str, summary: str):
        super().__init__(prog=f"%mc {name}", description=summary, add_help=False, allow_abbrev=False)
        self.name, self.summary = name, summary

    @property
    def usage_line(self) -> str:
        return " ".join(self.format_usage().split()).removeprefix("usage: ")

    def refuse(self, message: str) -> NoReturn:
        """Refuse with ``message`` and this subcommand's usage line."""
        raise usage_error(f"{message}\n  Usage: {self.usage_line}  {HELP_HINT}")

    def error(self, message: str) -> NoReturn:   # argparse calls this for every bad argument
        self.refuse(f"{self.prog}: {clip(message, 200)}.")

    def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
        self.refuse(f"{self.prog}: {clip((message or 'stopped').strip(), 200)}")


def component_ids(parser: CommandParser) -> None:
    """The arguments of a subcommand that takes one or more component ids (``unload``, ``stop``)."""
    parser.add_argument("ids", metavar="ID", nargs="+")


def each_once(ids) -> list:
    """The ids in the order typed, each once."""
    return list(dict.fromkeys(ids))
