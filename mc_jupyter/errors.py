"""Errors raised by mc_jupyter.

The hierarchy (``tests/test_structure.py`` checks this drawing against the classes)::

    McJupyterError                 base of everything raised on purpose
    ├── UserError                  the user can fix it; shown without a traceback
    │   ├── ConfigError            YAML text or schema: carries the YAML path and line
    │   │   ├── BindingError       a ``${...}`` expression that cannot be parsed or evaluated
    │   │   │   └── ImageInputError  an input ``as image`` cannot read (also an InputError)
    │   │   └── WorkflowError      unknown workflow/job ids, cycles, jobs read before they run
    │   │       └── NotLoadedError   a component id the registry does not hold
    │   ├── InputError             a ``%%run`` body or input value that does not fit
    │   ├── MissingPackageError    a driver needs a package that is not installed
    │   ├── NotAvailableError      a feature that parses but is not built yet
    │   ├── DeviceError            a device that is not there (cuda without a GPU, ...)
    │   ├── ModelLoadError         a model that cannot be found or loaded
    │   ├── ServerError            a managed server that cannot be installed, started or reached
    │   └── HttpError              a connection that failed or an error status
    └── RunError                   a job failed while running (keeps the cause's traceback)

Every message says what failed, the offending value and where it stands in the YAML, the likely
cause, and the fix.
"""

from __future__ import annotations

import difflib
from typing import Iterable, Optional, Sequence

from .secrets import scrub


class McJupyterError(Exception):
    """Base of every error mc_jupyter raises on purpose. Its text never shows a ``${env.*}`` secret."""

    def __str__(self) -> str:
        return scrub(super().__str__())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class UserError(McJupyterError):
    """A mistake the user can fix; the magics show it as a message, without a traceback."""


class ConfigError(UserError):
    """The YAML does not fit the dialect. ``path`` is the dotted YAML path, ``line`` 1-based."""

    def __init__(self, message: str, path: str = "", line: Optional[int] = None, hint: str = ""):
        self.path, self.line, self.hint, self.bare_message = path, line, hint, message
        where = ""
        if line is not None and path:
            where = f"line {line}, at `{path}`: "
        elif line is not None:
            where = f"line {line}: "
        elif path:
            where = f"at `{path}`: "
        text = f"{where}{message}"
        if hint:
            text += f"\n  {hint}"
        super().__init__(text)


class BindingError(ConfigError):
    """A ``${...}`` expression that cannot be parsed (compose time) or evaluated (run time)."""


class InputError(UserError):
    """A ``%%run`` body or input value that does not fit."""


class ImageInputError(BindingError, InputError):
    """An input that ``as image`` cannot read: both a bad input and a located binding error."""


class WorkflowError(ConfigError):
    """Unknown workflow or job ids, dependency cycles, a job read before it ran."""


class NotLoadedError(WorkflowError):
    """A component id that the registry does not hold (to run, unload, stop or read the logs of)."""


class MissingPackageError(UserError):
    """A driver needs a Python package that is not installed."""

    def __init__(self, what: str, packages: Sequence[str], module: str):
        self.packages, self.module = list(packages), module
        self.install_command = "%pip install " + " ".join(packages)
        super().__init__(
            f"{what} needs the Python package(s) {', '.join(packages)} (import `{module}` failed).\n"
            f"  Install it into this kernel with:  {self.install_command}\n"
            f"  or let mc_jupyter do it:  %config McJupyter.auto_install = True"
        )


class NotAvailableError(UserError):
    """A field that parses but whose behaviour is not built yet: never a silent no-op."""


class DeviceError(UserError):
    """The requested device is not present or cannot do what was asked."""


class ModelLoadError(UserError):
    """A model that cannot be found or loaded."""


class ServerError(UserError):
    """A managed server that could not be installed, started, or reached."""


class HttpError(UserError):
    """A connection that failed or a server that answered with an error status."""


class RunError(McJupyterError):
    """A job failed while running; the cause's traceback is kept as ``__cause__``."""


def did_you_mean(bad: str, choices: Iterable[str]) -> str:
    """' (did you mean `x`?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(str(bad), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def choices_text(choices: Iterable[str]) -> str:
    return ", ".join(f"`{c}`" for c in sorted(map(str, choices)))
