"""The sidebar's protocol has one declaration: mc_jupyter/sidebar.py's TypedDicts. The panel's
labextension/src/model.ts must declare the same message kinds and fields, both ways, and the messages
the kernel really sends (through the comm, from a real registry) must fit the declaration exactly.

model.ts is read with a small parser of its ``export interface`` / ``export type`` declarations
(object types, ``|`` unions, ``T[]``, ``| null``, string literals, index signatures): enough for
a protocol file, and it fails loudly on anything it does not know.
"""

from __future__ import annotations

import re
import types
import uuid
from pathlib import Path
from typing import Any, Dict, List, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import comm
import pytest
from comm.base_comm import CommManager

import mc_jupyter as mc
from mc_jupyter import devices, sidebar
from mc_jupyter.registry import State

from mc_jupyter.servers.managed import ServerState
from tests.test_hardening_models import FakeNvml
from tests.test_sidebar_comm import WRITER, RecordingComm

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "labextension" / "src"

# A shape is ("object", {field: shape}), ("list", shape), ("map",) (string keys to numbers),
# ("literal", frozenset of values), ("union", tag field, {tag value: {field: shape}}), ("scalar", "str" |
# "num" | "bool"), or ("nullable", shape) for one that may be null/None.


# -- model.ts ------------------------------------------------------------------------------------
def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _split_top(text: str, separator: str) -> List[str]:
    """``text`` split at each ``separator`` outside brackets and quotes; blank pieces dropped."""
    parts, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "{[(<":
            depth += 1
        elif ch in "}])>":
            depth -= 1
        elif ch == separator and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _braced(text: str, start: int) -> str:
    """The text from the ``{`` at ``start`` to its matching ``}``, both included."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i + 1]
    raise AssertionError(f"unbalanced braces from {text[start:start + 40]!r}")


def ts_declarations(text: str) -> Dict[str, str]:
    """``{name: type text}`` of every ``export interface`` and ``export type`` in ``text``."""
    text, out = _strip_comments(text), {}
    for match in re.finditer(r"export\s+(interface|type)\s+(\w+)\s*(=)?", text):
        kind, name = match.group(1), match.group(2)
        if kind == "interface":
            out[name] = _braced(text, text.index("{", match.end()))
        else:
            rest = text[match.end():]
            out[name] = _split_top(rest, ";")[0]
    return out


def _ts_members(body: str) -> Dict[str, str]:
    inner = body.strip()
    assert inner.startswith("{") and inner.endswith("}"), inner
    members = {}
    for member in _split_top(inner[1:-1], ";"):
        match = re.fullmatch(r"(\[\s*\w+\s*:\s*string\s*\]|\w+)\??\s*:\s*(.+)", member, flags=re.S)
        assert match, f"cannot read the member {member!r} of model.ts"
        members[match.group(1)] = match.group(2)
    return members


TS_SCALARS = {"string": "str", "number": "num", "boolean": "bool"}


def ts_shape(text: str, declarations: Dict[str, str]) -> tuple:
    text = " ".join(text.split()).strip().lstrip("|").strip()
    options = _split_top(text, "|")
    nullable = "null" in options
    options = [o for o in options if o != "null"]
    if len(options) > 1:
        if all(re.fullmatch(r"'[^']*'", o) for o in options):
            shape = ("literal", frozenset(o.strip("'") for o in options))
        else:
            shape = _tagged_union([ts_shape(o, declarations) for o in options])
    else:
        [one] = options
        if one.endswith("[]"):
            shape = ("list", ts_shape(one[:-2], declarations))
        elif one.startswith("{"):
            members = _ts_members(one)
            if len(members) == 1 and next(iter(members)).startswith("["):
                shape = ("map",)
            else:
                shape = ("object", {k: ts_shape(v, declarations) for k, v in members.items()})
        elif re.fullmatch(r"'[^']*'", one):
            shape = ("literal", frozenset([one.strip("'")]))
        elif one in TS_SCALARS:
            shape = ("scalar", TS_SCALARS[one])
        elif one in declarations:
            shape = ts_shape(declarations[one], declarations)
        else:
            raise AssertionError(f"model.ts: unknown type `{one}`")
    return ("nullable", shape) if nullable else shape


# -- sidebar.py ----------------------------------------------------------------------------------
def py_shape(tp: Any) -> tuple:
    origin, args = get_origin(tp), get_args(tp)
    if is_typeddict(tp):
        return ("object", {k: py_shape(v) for k, v in get_type_hints(tp).items()})
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        shape = py_shape(options[0]) if len(options) == 1 else _tagged_union([py_shape(a) for a in options])
        return ("nullable", shape) if len(options) < len(args) else shape
    if origin is Literal:
        return ("literal", frozenset(args))
    if origin in (list, List):
        return ("list", py_shape(args[0]))
    if origin in (dict, Dict):
        return ("map",)
    return ("scalar", {str: "str", int: "num", float: "num", bool: "bool"}[tp])


def _tagged_union(members: List[tuple]) -> tuple:
    """A union of object types told apart by one literal field: ``{tag value: the rest}``; a member
    whose tag is a union of literals (``command: 'unload' | 'stop'``) stands for one kind per value."""
    assert all(m[0] == "object" for m in members), members
    tags = set.intersection(*({k for k, v in m[1].items() if v[0] == "literal"} for m in members))
    assert len(tags) == 1, f"a union needs exactly one literal tag field, found {tags}"
    [tag] = tags
    kinds: Dict[str, dict] = {}
    for _, fields in members:
        for value in fields[tag][1]:
            assert value not in kinds, f"the kind `{value}` is declared twice"
            kinds[value] = {k: v for k, v in fields.items() if k != tag}
    return ("union", tag, kinds)


def differences(python: tuple, ts: tuple, where: str = "") -> List[str]:
    """What tells the two shapes apart, as readable lines ([] when they match)."""
    if python[0] != ts[0]:
        return [f"{where or 'top'}: Python declares {python[0]} {python[1:]!s:.80}, model.ts {ts[0]} {ts[1:]!s:.80}"]
    kind = python[0]
    if kind in ("nullable", "list"):
        return differences(python[1], ts[1], where + ("?" if kind == "nullable" else "[]"))
    if kind == "object":
        out = [f"{where}.{k}: only Python declares it" for k in python[1].keys() - ts[1].keys()]
        out += [f"{where}.{k}: only model.ts declares it" for k in ts[1].keys() - python[1].keys()]
        for k in python[1].keys() & ts[1].keys():
            out += differences(python[1][k], ts[1][k], f"{where}.{k}")
        return out
    if kind == "union":
        out = [] if python[1] == ts[1] else [f"{where}: tagged by `{python[1]}` in Python, `{ts[1]}` in model.ts"]
        out += [f"{where}: the kind `{k}` is only in Python" for k in python[2].keys() - ts[2].keys()]
        out += [f"{where}: the kind `{k}` is only in model.ts" for k in ts[2].keys() - python[2].keys()]
        for k in python[2].keys() & ts[2].keys():
            out += differences(("object", python[2][k]), ("object", ts[2][k]), f"{where}<{k}>")
        return out
    return [] if python == ts else [f"{where}: {python} in Python, {ts} in model.ts"]


@pytest.fixture(scope="module")
def ts() -> Dict[str, str]:
    return ts_declarations((SRC / "model.ts").read_text())


def test_the_parser_reads_what_model_ts_is_made_of():
    text = """
      /** doc */ export interface IA { a: string; b?: number | null; // note
        c: { [k: string]: number } | null; d: { x: boolean }; e: IB[] }
      export interface IB { z: string }
      export type T = | { kind: 'one'; a: IA } | { kind: 'two' | 'three'; n: number };
    """
    found = ts_declarations(text)
    assert set(found) == {"IA", "IB", "T"}
    shape = ts_shape("T", found)
    assert shape[0] == "union" and shape[1] == "kind" and set(shape[2]) == {"one", "two", "three"}
    assert shape[2]["one"]["a"] == ("object", {"a": ("scalar", "str"), "b": ("nullable", ("scalar", "num")),
                                               "c": ("nullable", ("map",)), "d": ("object", {"x": ("scalar", "bool")}),
                                               "e": ("list", ("object", {"z": ("scalar", "str")}))})
    with pytest.raises(AssertionError, match="unknown type `IMissing`"):
        ts_shape("IMissing", found)


@pytest.mark.parametrize("python, typescript", [(sidebar.KernelMessage, "KernelMessage"),
                                                (sidebar.Command, "Command")])
def test_python_and_model_ts_declare_the_same_kinds_and_fields(ts, python, typescript):
    assert differences(py_shape(python), ts_shape(typescript, ts)) == []


def test_a_field_on_one_side_only_is_found(ts):
    python = py_shape(sidebar.KernelMessage)
    python[2]["snapshot"]["memory"][1]["swap"] = ("scalar", "num")
    assert differences(python, ts_shape("KernelMessage", ts)) == [
        "<snapshot>.memory.swap: only Python declares it"]
    fewer = ts_declarations((SRC / "model.ts").read_text().replace("  gpus_known: boolean;\n", ""))
    assert "<memory>.memory.gpus_known: only Python declares it" in differences(
        py_shape(sidebar.KernelMessage), ts_shape("KernelMessage", fewer))


def test_the_tables_the_kernel_uses_come_from_the_declaration():
    assert set(sidebar.KERNEL_MESSAGES) == {"snapshot", "memory", "error"}
    assert sidebar.COMMANDS == {"refresh": (), "keepalive": (), "unload": ("id",), "stop": ("id",)}


def test_every_command_the_panel_sends_is_one_the_kernel_handles(ts):
    declared = ts_shape("Command", ts)[2]
    assert set(declared) == set(sidebar.COMMANDS)
    sent = set(re.findall(r"'(\w+)'", " ".join(re.findall(r"command:[^}]*", (SRC / "panel.ts").read_text()))))
    assert sent == {"refresh", "keepalive", "unload", "stop"} and sent <= set(sidebar.COMMANDS)
    for name, fields in declared.items():   # each, written as model.ts declares it, passes the kernel's check
        message = {"command": name, **{k: "writer" for k in fields}}
        assert sidebar.parse_command(message) == (name, message.get("id"))


def test_every_state_a_component_can_have_is_admitted_and_shown(ts):
    assert set(sidebar.STATES) == {s.value for s in State} | {s.value for s in ServerState}
    assert set(sidebar.STATES) == {"loading", "ready", "failed", "unloaded", "starting", "running", "stopped"}
    state = ts_shape("IComponent", ts)[1]["state"]
    assert state == ("scalar", "str") or (state[0] == "literal" and set(sidebar.STATES) <= state[1])
    widget = (SRC / "widget.tsx").read_text()
    assert ">{c.state}</span>" in widget         # the panel shows the state as text, whichever it is


# -- what the kernel really sends ------------------------------------------------------------------
def fits(value: Any, shape: tuple, where: str = "") -> List[str]:
    """How ``value`` does not fit ``shape`` exactly (a missing or extra key, a wrong kind of value)."""
    kind = shape[0]
    if kind == "nullable":
        return [] if value is None else fits(value, shape[1], where)
    if kind == "union":
        tag = value.get(shape[1]) if isinstance(value, dict) else None
        if tag not in shape[2]:
            return [f"{where}: `{shape[1]}` {tag!r} is not a declared kind"]
        return fits({k: v for k, v in value.items() if k != shape[1]}, ("object", shape[2][tag]), f"{where}<{tag}>")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object"]
        out = [f"{where}.{k}: sent but not declared" for k in value.keys() - shape[1].keys()]
        out += [f"{where}.{k}: declared but not sent" for k in shape[1].keys() - value.keys()]
        for k in value.keys() & shape[1].keys():
            out += fits(value[k], shape[1][k], f"{where}.{k}")
        return out
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        return [line for i, item in enumerate(value) for line in fits(item, shape[1], f"{where}[{i}]")]
    if kind == "map":
        return [] if isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()) else \
            [f"{where}: not a mapping of numbers"]
    if kind == "literal":
        return [] if value in shape[1] else [f"{where}: {value!r} not in {sorted(shape[1])}"]
    ok = {"str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool),
          "num": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}[shape[1]]
    return [] if ok(value) else [f"{where}: {value!r} is not a {shape[1]}"]


def test_every_message_the_kernel_sends_fits_the_declaration_exactly(models, registry, monkeypatch):
    manager = CommManager()
    monkeypatch.setattr(comm, "get_comm_manager", lambda: manager)
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    monkeypatch.setattr(devices, "_NVML_STATE", {"module": FakeNvml({0: [(4242, 1 << 30)]})})   # GPUs through the real NVML path
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    sidebar.register(registry)
    comm_id = uuid.uuid4().hex

    def deliver(handler, **content):
        handler(None, None, {"content": {"comm_id": comm_id, **content}})

    deliver(manager.comm_open, target_name=sidebar.TARGET, data={})
    channel = manager.comms[comm_id]
    connection = sidebar.open_connections()[-1]
    try:
        mc.compose(WRITER.format(path=models["causal"]), registry=registry)   # loading, then ready
        deliver(manager.comm_msg, data={"command": "refresh"})
        connection.send_memory()                                          # what the sampling thread sends
        deliver(manager.comm_msg, data={"command": "unlaod", "id": "writer"})   # an error reply
        deliver(manager.comm_msg, data={"command": "unload", "id": "writer"})
    finally:
        connection.close()
    sent = [data for kind, data in channel.published if kind == "comm_msg"]

    declared = py_shape(sidebar.KernelMessage)
    for message in sent:                  # the memory samples of the thread too
        assert fits(message, declared) == [], message
    told = [(m["type"], [c["state"] for c in m.get("components", [])]) for m in sent if m["type"] != "memory"]
    told = [x for i, x in enumerate(told) if i == 0 or told[i - 1] != x]   # how often a state repeats is timing
    assert told == [("snapshot", []), ("snapshot", ["loading"]), ("snapshot", ["ready"]), ("error", []),
                    ("snapshot", [])]
    ready = next(m for m in sent if m["type"] == "snapshot" and m["components"])["components"][0]
    assert ready["id"] == "writer" and ready.keys() == get_type_hints(sidebar.Component).keys()
    samples = [m for m in sent if m["type"] == "memory"]
    assert [(g["index"], g["name"], g["used"]) for g in samples[-1]["memory"]["gpus"]] == [
        (0, "NVIDIA H200", 1 << 30), (1, "NVIDIA H200", 2 << 30), (2, "NVIDIA H200", 3 << 30)]
    assert registry.snapshot() == []


def test_a_field_sent_but_not_declared_fails_the_check(models, registry):
    mc.compose(WRITER.format(path=models["causal"]), registry=registry)
    row = dict(sidebar.component_rows(registry)[0], colour="red")
    memory = sidebar.kernel_memory()
    message = {"type": "snapshot", "components": [row], "memory": memory}
    assert fits(message, py_shape(sidebar.KernelMessage)) == ["<snapshot>.components[0].colour: sent but not declared"]
    del memory["gpus_known"]
    assert "<memory>.memory.gpus_known: declared but not sent" in fits(
        {"type": "memory", "memory": memory}, py_shape(sidebar.KernelMessage))
