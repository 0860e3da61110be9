"""The IPython layer: argument parsing and display only; the work is in :mod:`mc_jupyter.api`."""

from __future__ import annotations

import functools
import keyword
from typing import Any, Dict

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool

from . import api
from .secrets import scrub
from .config.loader import load_yaml
from .config.positions import clip
from .errors import InputError, UserError


def _user_errors(method):
    """Show a user's mistake as a message without a traceback; secrets are masked; a bad flag shows
    the magic's usage line."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except UserError as e:
            raise UsageError(scrub(str(e))) from None
        except UsageError as e:
            usage = getattr(getattr(self, method.__name__), "parser", None)
            if usage is None or "usage:" in str(e):
                raise
            line = next((l.strip() for l in usage.format_usage().splitlines() if "%" in l), "")
            raise UsageError(f"{e}\n  Usage: {line}  (`{line.split()[0]}?` shows the help)") from None
    return wrapper


@magics_class
class McJupyter(Magics):
    """mc_jupyter's magics: ``%%compose``, ``%%run`` and ``%mc``."""

    auto_install = Bool(False, config=True, help=(
        "Install a driver's missing Python packages into this kernel's environment when a %%compose "
        "needs them (off by default; the output says when it acts). Set with: "
        "%config McJupyter.auto_install = True"))

    @magic_arguments("%compose")
    @argument("--dry-run", action="store_true",
              help="Validate and show the plan (what would load, where) without loading anything.")
    @argument("-f", "--file", help="Compose from a YAML file instead of the cell body (line form: %%compose -f FILE).")
    @line_cell_magic
    @_user_errors
    def compose(self, line: str, cell: str = None):
        """Load model-compose YAML into this kernel: models stay loaded and are reused by every run.

        The cell body is YAML: ``component:`` (or ``components:``) and optionally ``workflow:``
        (or ``workflows:``). Re-running an unchanged cell reuses what is loaded; a changed
        component is reloaded and the old one freed; a cell that fails leaves everything as it was.
        As a line magic, ``%compose -f FILE`` composes a YAML file.

        Example::

            %%compose
            component:
              type: model
              task: text-embedding
              model: sentence-transformers/all-MiniLM-L6-v2
              text: ${input.text}
        """
        args = parse_argstring(self.compose, line)
        cell = cell or ""
        if args.file and cell.strip():
            raise UsageError("give either -f FILE or a YAML cell body, not both")
        if not args.file and not cell.strip():
            raise UsageError("%compose needs YAML: write it in a %%compose cell, or use %compose -f FILE")
        return api.compose(None if args.file else cell, file=args.file, dry_run=args.dry_run,
                           auto_install=self.auto_install, first_line=2, say=print)

    @magic_arguments("%run")
    @argument("workflow", nargs="?", default=None, metavar="WORKFLOW",
              help="The workflow (or component) to run; default: the one of the latest %%%%compose cell.")
    @argument("-o", "--output", default=None, help="Also store the RunResult in this variable.")
    @cell_magic("run")
    @_user_errors
    def run_cell(self, line: str, cell: str):
        """Run a workflow on the loaded models and show its output.

        The cell body is a YAML mapping of inputs (``{}`` for none: IPython refuses an empty cell body).
        A value written ``$name``
        is taken from the Python variable ``name`` (an image, a list, ...); write ``$$`` for a
        literal ``$``. The cell's value is a RunResult: ``.output`` is the plain Python value.

        Example::

            %%run -o answer
            prompt: Why is the sky blue?
        """
        args = parse_argstring(self.run_cell, line)
        if args.output is not None and (not args.output.isidentifier() or keyword.iskeyword(args.output)):
            raise UsageError(f"-o takes the name of a Python variable, not `{clip(args.output, 40)}`.\n"
                             f"  Example: %%run -o answer")
        inputs = self._inputs(cell)
        result = api.run(args.workflow, inputs, display_stream=True, auto_install=self.auto_install)
        if args.output:
            self.shell.user_ns[args.output] = result
        return result

    @line_magic
    @_user_errors
    def mc(self, line: str):
        """mc_jupyter's housekeeping.

        %mc status        the loaded components, their device, memory and state
        %mc unload ID...  free components' models (or stop their servers)
        %mc stop ID...    stop managed servers (type: http-server)
        %mc logs ID [N]   the last N (50) lines a managed server printed
        %mc down          free everything and stop every server
        """
        words = line.split()
        command = words[0] if words else "status"
        if command == "status" and len(words) == 1:
            return api.status()
        if command == "logs" and len(words) in (2, 3):
            if len(words) == 3 and not (words[2].isascii() and words[2].isdigit()):
                raise UsageError(f"%mc logs: `{clip(words[2], 40)}` is not a number of lines.\n  Use: %mc logs ID [N]")
            print("\n".join(api.logs(words[1], int(words[2]) if len(words) == 3 else 50)))
            return None
        if command in ("unload", "stop") and len(words) >= 2:
            (api.stop if command == "stop" else api.unload)(words[1:])   # every id is checked before any acts
            print(f"{'stopped' if command == 'stop' else 'unloaded'} {', '.join(dict.fromkeys(words[1:]))}")
            return None
        if command == "down" and len(words) == 1:
            freed = api.down()
            print(f"unloaded {', '.join(freed)}" if freed else "nothing was loaded")
            return None
        raise UsageError(f"unknown %mc command `{clip(line.strip())}`.\n  Use: %mc status | %mc unload ID | %mc stop ID | %mc logs ID | %mc down")

    def _inputs(self, cell: str) -> Dict[str, Any]:
        data, positions = load_yaml(cell, first_line=2)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise InputError(f"the %%run body must be a YAML mapping of inputs (`name: value`), "
                             f"not a {type(data).__name__}.\n  Example:\n    prompt: Why is the sky blue?")
        return {k: self._value(v, k) for k, v in data.items()}

    def _value(self, value: Any, key: Any) -> Any:
        if isinstance(value, str) and value.startswith("$"):
            if value.startswith("$$"):
                return value[1:]
            name = value[1:]
            if name.isidentifier():
                if name not in self.shell.user_ns:
                    raise InputError(f"input `{clip(key, 40)}`: the Python variable `{clip(name, 40)}` is not defined."
                                     f"\n  Define it in an earlier cell, or write `$${clip(name, 40)}` for the "
                                     f"literal text.")
                return self.shell.user_ns[name]
        if isinstance(value, dict):
            return {k: self._value(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._value(v, key) for v in value]
        return value
