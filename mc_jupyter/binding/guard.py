"""``${env.*}`` secrets at the boundaries: which fields read them, and the error shown when one leaks into
an exception's chain."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, List, Tuple

from ..config.positions import Path, format_path
from ..errors import McJupyterError, UserError
from ..secrets import chain, known, leaks_secret, scrub
from .grammar import Template, _exprs_deep, parse_template
from .structure import Op

def env_fields(value: Any, prefix: Path = ()) -> List[Tuple[str, str]]:
    """``(YAML path, variable)`` for every ``${env.NAME}`` in a compiled or raw value."""
    if isinstance(value, str) and "${" in value:
        try:
            value = parse_template(value, prefix, None)
        except Exception:
            return []
    if isinstance(value, Template):
        return [(format_path(value.yaml_path or prefix), e.path[0]) for e in _exprs_deep(value) if e.source == "env"]
    if isinstance(value, Op):
        return [f for child in value.children() for f in env_fields(child, value.yaml_path or prefix)]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in env_fields(v, prefix + (k,))]
    if isinstance(value, (list, tuple)):
        return [f for i, v in enumerate(value) for f in env_fields(v, prefix + (i,))]
    return []


def secret_safe(e: BaseException, what: str, fields: Any = None) -> BaseException:
    """The exception to show for ``e``: itself when no secret is in its chain; otherwise a user error
    naming the fields that read ``${env.*}`` (the value masked) with no chain at all.

    Python's own conversion errors quote the raw value (``invalid literal for int(): '<token>'``) and
    a traceback prints every cause, so a chain that holds a secret is cut here, at the boundary."""
    if isinstance(e, KeyboardInterrupt) or not leaks_secret(e):
        return e
    if isinstance(e, UserError):    # our message is scrubbed when shown: mask what it holds, cut its chain
        e.args = tuple(scrub(a) if isinstance(a, str) else a for a in e.args)
        for name in ("bare_message", "hint"):
            if isinstance(getattr(e, name, None), str):
                setattr(e, name, scrub(getattr(e, name)))
        e.__cause__, e.__context__, e.__suppress_context__ = None, None, True
        return e
    secrets = known()
    used = [(path, name) for path, name in env_fields(fields) if os.environ.get(name) in secrets]
    where = "; ".join(f"`{path}` (from `${{env.{name}}}`)" for path, name in used) or "a value read from `${env.*}`"
    cause = next((link for link in chain(e) if not isinstance(link, McJupyterError)), e)
    error = UserError(f"{what}: {where} could not be used: {type(cause).__name__}: {scrub(str(cause))}\n"
                      f"  The value is a secret, so it is not shown. Check what the environment variable holds "
                      f"(a number where a number is expected), or give the field a literal value.")
    return error


def guard_secrets(what: Callable[..., str], fields: Callable[..., Any]):
    """Decorate a boundary (a load, a job): an exception whose chain holds a secret leaves it as
    :func:`secret_safe`'s error, raised outside the handler so that not even ``__context__`` keeps it."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except BaseException as e:
                safe = secret_safe(e, what(*args, **kwargs), fields(*args, **kwargs))
                if safe is e:
                    raise
            raise safe
        return wrapper
    return decorate
