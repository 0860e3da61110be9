"""``%mc``'s subcommands: one module each (``status``, ``unload``, ``stop``, ``logs``, ``down``, ``chat``,
``compare``, ``inputs``, ``form``).

Each module has ``NAME``, ``SUMMARY``, ``arguments(parser)`` (declares its arguments on a
:class:`~.parser.CommandParser`) and ``run(args, parser, say)`` (calls :mod:`mc_jupyter.api`).
The usage table, the ``%mc?`` help and every usage line in an error are generated from them, so
they are written once. Arguments are parsed (and refused) before anything acts; the API then checks
every id before it frees any.
"""

from __future__ import annotations

import functools
import shlex
from types import ModuleType
from typing import Any, Callable, Dict, Optional, TypeVar

from ..config.positions import clip
from ..errors import did_you_mean
from . import chat, compare, down, form, inputs, logs, status, stop, unload
from .parser import HELP_HINT, CommandParser, Say, usage_error

#: The subcommands, in the order the help lists them.
SUBCOMMANDS: Dict[str, ModuleType] = {m.NAME: m for m in (status, unload, stop, logs, down, chat, compare, inputs,
                                                        form)}
#: What ``%mc`` alone does.
DEFAULT = "status"

F = TypeVar("F", bound=Callable[..., Any])


@functools.lru_cache(maxsize=None)
def parser(name: str) -> CommandParser:
    """The parser of the subcommand ``name``."""
    module = SUBCOMMANDS[name]
    made = CommandParser(module.NAME, module.SUMMARY)
    module.arguments(made)
    return made


def usage(indent: str = "") -> str:
    """One line per subcommand: its usage line (from its parser) and what it does."""
    lines = [parser(name).usage_line for name in SUBCOMMANDS]
    width = max(map(len, lines)) + 2
    return "\n".join(f"{indent}{line:<{width}}{SUBCOMMANDS[name].SUMMARY}" for line, name in zip(lines, SUBCOMMANDS))


HELP = f"""mc_jupyter's housekeeping: ``%mc SUBCOMMAND [ARGS]``; ``%mc`` alone is ``%mc {DEFAULT}``.

{usage()}

Every argument is checked before anything changes: with one unknown ID, nothing is unloaded.
``%mc stop`` is for managed servers (``type: http-server``); ``%mc unload`` frees any component.
The Python API does the same: ``mc.status()``, ``mc.unload(ids)``, ``mc.stop(ids)``,
``mc.logs(id, n)``, ``mc.down()``, ``mc.chat(id)``, ``mc.compare([a, b], prompt=...)``,
``mc.inputs(wf)``, ``mc.form(wf)``.
Quote a text with spaces: ``%mc compare base lora --prompt "Why is the sky blue?"``.
"""


def documented(function: F) -> F:
    """Give the ``%mc`` magic its help (``%mc?``): :data:`HELP`."""
    function.__doc__ = HELP
    return function


def execute(line: str, say: Optional[Say] = None) -> Any:
    """Run one ``%mc`` line (``"logs srv 20"``); what the subcommand returns (``status``: a table)."""
    say = say or print
    try:
        words = shlex.split(line)
    except ValueError:          # an unclosed quote: the words as typed
        words = line.split()
    name = words[0] if words else DEFAULT
    if name not in SUBCOMMANDS:
        raise usage_error(f"unknown %mc command `{clip(name, 40)}`{did_you_mean(name, SUBCOMMANDS)}.\n"
                          f"  Usage:\n{usage(indent='    ')}\n  {HELP_HINT}")
    command = parser(name)
    args = command.parse_args(words[1:])
    return SUBCOMMANDS[name].run(args, command, say)
