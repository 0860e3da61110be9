"""The IPython layer: argument parsing and display only; the work is in :mod:`mc_jupyter.api`."""

from __future__ import annotations

import functools
import keyword
from typing import Any, Dict

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool

from . import api, commands
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

        Model tasks: text-generation, chat-completion, text-classification, text-embedding, text-to-text
        (translation, summarization), text-reranking, image-text-to-text (vision-language chat),
        speech-to-text (Whisper), image-to-text, image-generation, image-upscale, image-embedding,
        vision-text-encoding, object-detection, image-segmentation, depth-estimation,
        image-background-removal, face-embedding; each with model-compose's keys (docs/reference.md).

        Component types: ``model`` (a ``task:``; left out, it is read from the model's files),
        ``http-server`` / ``http-client``, ``vector-store`` (``driver: faiss`` or ``chroma``; actions
        with ``method: insert | update | search | delete``) and ``text-splitter``. Every key:
        docs/reference.md.

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
        A value written ``$name`` (at any depth: in a list, in a mapping) is taken from the Python
        variable ``name`` of this notebook (an image, a list, ...); an undefined one is an error and
        nothing runs. Write ``$$`` for a literal ``$`` (``$$name`` is the text ``$name``). The same
        works from Python: ``mc.run(inputs={"text": "$docs"})``. The cell's value is a RunResult:
        ``.output`` is the plain Python value.

        A component with ``streaming: true`` shows its text growing in place; the line under it gives the
        tokens, the seconds, the time to the first token and the decode's own tokens/s. Kernel → Interrupt
        stops it at the next token and keeps the text so far.

        Which inputs a workflow reads (types, ``select/`` choices, defaults, ``@(description ...)``):
        ``%mc inputs [WORKFLOW]``; the same as a form with a Run button: ``%mc form [WORKFLOW]``.

        Example::

            %%run -o answer
            prompt: Why is the sky blue?
        """
        args = parse_argstring(self.run_cell, line)
        if args.output is not None and (not args.output.isidentifier() or keyword.iskeyword(args.output)):
            raise UsageError(f"-o takes the name of a Python variable, not `{clip(args.output, 40)}`.\n"
                             f"  Example: %%run -o answer")
        result = api.run(args.workflow, self._inputs(cell), namespace=self.shell.user_ns, display_stream=True,
                         auto_install=self.auto_install)
        if args.output:
            self.shell.user_ns[args.output] = result
        return result

    @line_magic
    @_user_errors
    @commands.documented
    def mc(self, line: str):
        # The docstring (``%mc?``) is generated from the subcommands' parsers: mc_jupyter.commands.HELP.
        return commands.execute(line, say=print)

    def _inputs(self, cell: str) -> Dict[str, Any]:
        """The ``%%run`` body as a mapping; ``$name`` values are resolved by :func:`api.run`."""
        data = load_yaml(cell, first_line=2)[0]
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise InputError(f"the %%run body must be a YAML mapping of inputs (`name: value`), "
                             f"not a {type(data).__name__}.\n  Example:\n    prompt: Why is the sky blue?")
        return data
