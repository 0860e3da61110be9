"""The package's structure, checked: the import graph has no cycles and no module imports a higher layer;
the ground floor imports nothing of ours; no module outside the config layer reads a component setting
by string key; the error tree drawn in ``errors.py`` is the tree of the classes; no unused imports."""

from __future__ import annotations

import ast
import fnmatch
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

import mc_jupyter
from mc_jupyter import errors

PACKAGE = pathlib.Path(mc_jupyter.__file__).parent

#: The layers, lowest first: a module may import its own layer or a lower one, never a higher one. The flow
#: of a cell: config -> registry -> engine -> tasks -> backends (drivers) -> display; registry -> sidebar.
LAYERS = [
    ("ground floor", ["mc_jupyter.secrets", "mc_jupyter.config.positions", "mc_jupyter.interrupts",
                      "mc_jupyter.servers.watchdog", "mc_jupyter.config", "mc_jupyter.drivers", "mc_jupyter.servers",
                      "mc_jupyter.tasks", "mc_jupyter.custom", "mc_jupyter.display",
                      "mc_jupyter.activity", "mc_jupyter.progress", "mc_jupyter.widgets"]),
    ("errors", ["mc_jupyter.errors"]),
    ("catalog", ["mc_jupyter.catalog", "mc_jupyter.media"]),
    ("config", ["mc_jupyter.config.base", "mc_jupyter.config.http_schema", "mc_jupyter.config.model_compose",
                "mc_jupyter.config.loader", "mc_jupyter.config.infer_task", "mc_jupyter.config.store_schema", "mc_jupyter.config.schema", "mc_jupyter.binding", "mc_jupyter.binding.*"]),
    ("machine", ["mc_jupyter.devices", "mc_jupyter.install"]),
    ("lifecycle", ["mc_jupyter.drivers.base", "mc_jupyter.drivers.fetch", "mc_jupyter.drivers.sources",
                   "mc_jupyter.servers.*"]),
    ("tasks", ["mc_jupyter.tasks.*"]),
    ("backends", ["mc_jupyter.drivers.*", "mc_jupyter.custom.*"]),
    ("planning", ["mc_jupyter.planning"]),
    ("workflows", ["mc_jupyter.workflows"]),
    ("registry", ["mc_jupyter.registry"]),
    ("engine", ["mc_jupyter.engine"]),
    ("display", ["mc_jupyter.display.*"]),
    ("widgets", ["mc_jupyter.widgets.*"]),
    ("front", ["mc_jupyter.api", "mc_jupyter.commands", "mc_jupyter.commands.*", "mc_jupyter.magics",
               "mc_jupyter.sidebar", "mc_jupyter.reference", "mc_jupyter"]),
]


def _modules() -> dict:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("mc_jupyter",) + path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: pathlib.Path) -> set:
    """The modules of ours that ``name`` imports, at module level or inside functions alike."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for candidate in [target] + [f"{target}.{alias.name}" for alias in node.names]:
                if candidate in MODULES and candidate != name:
                    found.add(candidate)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in MODULES and alias.name != name}
    if "mc_jupyter" in found and name != "mc_jupyter" and not _imports_package_names(path):
        found.discard("mc_jupyter")   # `from . import x` of a subpackage resolves to the subpackage itself
    return found


def _imports_package_names(path: pathlib.Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module == "mc_jupyter" or (node.level and not node.module)):
            names = {a.name for a in node.names}
            if not names <= set(n.rsplit(".", 1)[-1] for n in MODULES):
                return True
        if isinstance(node, ast.Import) and any(a.name == "mc_jupyter" for a in node.names):
            return True
    return False


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer_of(name: str) -> int:
    exact = [i for i, (_, patterns) in enumerate(LAYERS) if name in patterns]
    if exact:
        return exact[0]
    matched = [i for i, (_, patterns) in enumerate(LAYERS) if any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert matched, f"{name} is in no layer: add it to LAYERS in tests/test_structure.py"
    return matched[0]


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


def test_no_module_imports_a_higher_layer():
    wrong = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
             for a, targets in GRAPH.items() for b in targets if layer_of(b) > layer_of(a)]
    assert not wrong, "\n".join(wrong)


def test_the_import_graph_has_no_cycles():
    state, cycles = {}, []

    def visit(node, chain):
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycles.append(" -> ".join(chain[chain.index(node):] + [node]))
            return
        state[node] = 1
        for target in sorted(GRAPH[node]):
            visit(target, chain + [node])
        state[node] = 2

    for name in sorted(GRAPH):
        visit(name, [])
    assert not cycles, "\n".join(cycles)


def test_the_layer_check_sees_a_wrong_import():
    """The checker itself: a backend importing the registry would be reported."""
    assert layer_of("mc_jupyter.registry") > layer_of("mc_jupyter.drivers.hf_generation")
    assert layer_of("mc_jupyter.engine") > layer_of("mc_jupyter.tasks.base") > layer_of("mc_jupyter.drivers.base")


@pytest.mark.parametrize("module", ["mc_jupyter.secrets", "mc_jupyter.config.positions"])
def test_the_ground_floor_imports_nothing_of_the_package(module):
    assert GRAPH[module] == set()


def test_errors_import_only_the_ground_floor():
    assert GRAPH["mc_jupyter.errors"] <= {"mc_jupyter.secrets"}


def _drawn_tree() -> list:
    """(depth, class name) of every line of the drawing in errors.py's docstring."""
    drawing = errors.__doc__.split("::", 1)[1].split("\n\n", 2)[1]
    out = []
    for line in drawing.splitlines():
        match = re.match(r"^(\s*)((?:[│ ]   )*)(?:[├└]── )?(\w+)", line)
        if match:
            prefix = line[:match.start(3)]
            out.append((len(prefix) // 4, match.group(3)))
    return out


def _class_tree() -> list:
    out = []

    def walk(cls, depth):
        out.append((depth, cls.__name__))
        for sub in sorted(cls.__subclasses__(), key=_order):
            if sub.__module__ == "mc_jupyter.errors" and _first_base(sub) is cls:
                walk(sub, depth + 1)

    walk(errors.McJupyterError, 1)
    return out


def _first_base(cls):
    return next(b for b in cls.__bases__ if issubclass(b, errors.McJupyterError))


def _order(cls):
    return inspect.getsourcelines(cls)[1]


def test_the_error_tree_drawing_is_the_class_tree():
    drawn = _drawn_tree()
    assert [name for _, name in drawn] == [name for _, name in _class_tree()], drawn
    assert [depth - drawn[0][0] for depth, _ in drawn] == [depth - 1 for depth, _ in _class_tree()]


def test_every_error_class_lives_in_errors():
    raised_elsewhere = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and name != "mc_jupyter.errors" and any(
                    isinstance(b, ast.Name) and b.id.endswith("Error") for b in node.bases):
                raised_elsewhere.append(f"{name}.{node.name}")
    assert not raised_elsewhere


def _setting_names() -> set:
    from mc_jupyter.config.schema import HttpComponent, ModelComponent
    return {f.alias or n for cls in (ModelComponent, HttpComponent) for n, f in cls.model_fields.items()} | \
        set(ModelComponent.model_fields) | set(HttpComponent.model_fields)


def _receiver(node: ast.AST) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


#: The one place a plain settings dict is read on purpose: ``CustomModel``, the documented base of a user's
#: own class, which receives the component's settings as the user wrote them (README, custom_driver.ipynb).
USER_CONTRACT = {("mc_jupyter.drivers.custom", "CustomModel")}


def _allowed_lines(module: str, tree: ast.AST) -> set:
    return {n for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and (module, node.name) in USER_CONTRACT
            for n in range(node.lineno, node.end_lineno + 1)}


def test_no_module_outside_the_config_layer_reads_a_setting_by_string_key():
    """Backends, planning, registry and display read the typed config (``config.precision``), never
    ``settings.get("precision")``, ``settings["model"]`` or ``getattr(config, "precision")``."""
    names = _setting_names()
    found = []
    for module, path in MODULES.items():
        if module.startswith("mc_jupyter.config"):
            continue
        tree = ast.parse(path.read_text())
        allowed = _allowed_lines(module, tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in allowed:
                continue
            line = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                    and _receiver(node.func.value) in ("settings", "s", "config", "spec"):
                found.append(f"{line}: {ast.unparse(node)}")
            if isinstance(node, ast.Subscript) and _receiver(node.value) in ("settings", "config") \
                    and isinstance(node.slice, ast.Constant):
                found.append(f"{line}: {ast.unparse(node)}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value in names and _receiver(node.args[0]) in ("config", "c", "spec", "self"):
                found.append(f"{line}: {ast.unparse(node)}")
    assert not found, "\n".join(found)


def test_no_unused_imports_or_names():
    result = subprocess.run([sys.executable, "-m", "pyflakes", str(PACKAGE)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
