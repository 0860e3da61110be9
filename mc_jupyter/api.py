"""The Python API: everything the magics do, for scripts and tests.

    import mc_jupyter as mc
    mc.compose(yaml_text)                 # load into the kernel-resident registry
    result = mc.run(inputs={"text": "hi"})  # RunResult; result.output is the plain value
    mc.status(); mc.unload("id"); mc.down()
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Dict, List, Optional

from .config.loader import load_yaml
from .config.schema import parse_compose
from .devices import memory_snapshot
from .display.result import PlanView, RunResult, StatusTable, StreamView
from .engine import StreamSink, run as run_engine
from .errors import InputError
from .install import Say
from .registry import Plan, Registry

#: The registry of this kernel (one per Python process).
REGISTRY = Registry()
# Kernel shutdown and restart end the interpreter: stop every managed server with it.
atexit.register(REGISTRY.down)


def read_config(text: Optional[str] = None, file: Optional[str] = None, first_line: int = 1):
    """Parse YAML text or a file into a validated :class:`ComposeConfig` (nothing is loaded)."""
    if file is not None:
        path = os.path.expanduser(file)
        if not os.path.exists(path):
            raise InputError(f"the compose file `{file}` does not exist (looked at {os.path.abspath(path)}).")
        with open(path, encoding="utf-8") as f:
            text, first_line = f.read(), 1
    data, positions = load_yaml(text or "", first_line=first_line)
    return parse_compose(data, positions)


def compose(text: Optional[str] = None, *, file: Optional[str] = None, dry_run: bool = False,
            auto_install: bool = False, registry: Registry = REGISTRY, first_line: int = 1,
            say: Optional[Say] = None) -> PlanView:
    """Validate YAML and load its components (unchanged ones are reused). ``dry_run`` loads nothing."""
    config = read_config(text, file, first_line)
    if dry_run:
        plan: Plan = registry.plan(config, estimate="all")[0]
        return PlanView(plan, loaded=False)
    return PlanView(registry.apply(config, auto_install=auto_install, say=say), loaded=True)


def run(target: Optional[str] = None, inputs: Optional[Dict[str, Any]] = None, *,
        stream: Optional[StreamSink] = None, display_stream: bool = False, auto_install: bool = False,
        registry: Registry = REGISTRY, **kw_inputs: Any) -> RunResult:
    """Run a workflow (or a component as a one-job workflow). ``inputs`` and keywords are its input."""
    values = dict(inputs or {}, **kw_inputs)
    sink = stream if stream is not None else (StreamView() if display_stream else None)
    outcome = run_engine(registry, target, values, sink, auto_install)
    last = outcome.last
    shown = bool(isinstance(sink, StreamView) and last is not None and last.streamed
                 and isinstance(outcome.output, str) and outcome.output == sink.text)
    return RunResult(outcome, already_shown=shown)


def status(registry: Registry = REGISTRY) -> StatusTable:
    """The loaded components and the device memory."""
    return StatusTable(registry.snapshot(), memory_snapshot())


def unload(component_id: str, registry: Registry = REGISTRY) -> None:
    """Free one component's model (and its device memory)."""
    registry.unload(component_id)


def logs(component_id: str, lines: int = 50, registry: Registry = REGISTRY) -> List[str]:
    """The last lines a managed server printed."""
    entry = registry.get(component_id)
    if not hasattr(entry.driver, "logs"):
        raise InputError(f"component `{component_id}` is a {entry.spec.type}, not a managed server: it has no log.")
    return entry.driver.logs(lines)


def down(registry: Registry = REGISTRY) -> list:
    """Free everything the registry holds."""
    return registry.down()
