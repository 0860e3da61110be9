"""Finding a driver's implementation, and installing what it needs when the user allows it."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from .catalog import DRIVERS, DriverImpl, component_impl, feature_requirements
from .errors import MissingPackageError, UserError

Say = Callable[[str], None]


def missing_packages(requires: Sequence[Tuple[str, str]]) -> List[Tuple[str, str]]:
    return [(module, pip) for module, pip in requires if importlib.util.find_spec(module) is None]


def ensure_packages(requires: Sequence[Tuple[str, str]], what: str, auto_install: bool,
                    say: Optional[Say] = None, pip_args: Sequence[str] = ()) -> None:
    """Raise :class:`MissingPackageError` for a missing package, or install it when allowed."""
    missing = missing_packages(requires)
    if not missing:
        return
    names = [pip for _, pip in missing]
    if not auto_install:
        raise MissingPackageError(what, names, missing[0][0])
    pip_install(names, say or print, pip_args)
    importlib.invalidate_caches()
    still = missing_packages(missing)
    if still:
        raise MissingPackageError(what, [pip for _, pip in still], still[0][0])


def pip_install(names: Sequence[str], say: Say, pip_args: Sequence[str] = ()) -> None:
    """``pip install`` into this kernel's environment, showing pip's output as it comes."""
    command = [sys.executable, "-m", "pip", "install", *pip_args, *names]
    say(f"mc_jupyter auto-install: installing {' '.join(names)} into this kernel's environment "
        f"({sys.executable})")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: List[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            tail = (tail + [line])[-15:]
            say(line)
    if proc.wait() != 0:
        raise UserError(f"`pip install {' '.join(names)}` failed (exit {proc.returncode}):\n  "
                        + "\n  ".join(tail) + "\n  Install it by hand with %pip install, then compose again.")
    say(f"mc_jupyter auto-install: installed {' '.join(names)}")


def component_class(config, auto_install: bool = False, say: Optional[Say] = None) -> type:
    """The implementation of a component (its validated ``config``): its type's, or for a model its
    (driver, task)'s."""
    kind = config.type
    if kind != "model":
        impl = component_impl(config)
        assert impl is not None
        ensure_packages(impl.requires, f"a `{kind}` component", auto_install, say)
        return _import(impl.target)
    return driver_class(config.driver, config.task, auto_install, say, config)


def _import(target: str) -> type:
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def driver_class(driver: str, task: str, auto_install: bool = False, say: Optional[Say] = None,
                 config=None) -> type:
    """The implementation of (driver, task), imported on first use, with what ``config`` needs."""
    impl: DriverImpl = DRIVERS[(driver, task)]
    ensure_packages(impl.requires, f"the `{driver}` driver for {task}", auto_install, say)
    extra = feature_requirements(config)
    if extra:
        ensure_packages(extra, "this component's quantization/adapters/device map", auto_install, say)
    return _import(impl.target)
