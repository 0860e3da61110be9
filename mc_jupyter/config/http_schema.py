"""The typed shape of the http-server and http-client components (dialect §1, model-compose's
``mindor/dsl/schema/component/impl/http_server.py`` / ``http_client.py``), strict like the rest of the
schema: :mod:`mc_jupyter.config.schema` validates a component of these types with :class:`HttpComponent`
after :func:`normalize_http` has brought model-compose's shapes into this one.

What :func:`normalize_http` accepts, as model-compose 0.4.120 does, and what it makes of it:

- ``start:`` / ``install:`` / ``build:`` / ``clean:`` directly on an http-server (model-compose's
  ``inflate_single_script``), or under ``manage:``, flat or under ``manage.scripts:``: all end up flat
  under ``manage:``. ``install`` / ``build`` / ``clean`` are one command (an argv list or a shell line)
  or a list of commands run in order (:func:`commands`).
- component-wide ``headers:`` and ``base_url:`` beside ``action:`` / ``actions:``: folded into every
  action (the action's own values win; headers merged), not a separate default action;
  ``base_path:`` (http-server) prefixes every action's ``path`` (and a polling completion's).
- ``rate_limit: "10/1s"`` (or ``5/m``) becomes ``{requests: 10, period: 1s}``.
- ``completion: {type: polling, ...}`` is checked here (durations, ``endpoint`` xor ``path``) and its
  values that read ``${response}`` (the first reply) or ``${result}`` (the latest poll's reply) are
  kept for the driver to evaluate at each poll (:class:`Late`); ``type: callback`` is refused (it needs
  a public address a notebook does not have).
- an http-client action's ``path`` needs a ``base_url`` (on the action or the component), and
  ``endpoint`` and ``path`` exclude each other, as in model-compose: compose-time errors.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import ValidationError, conint

from ..binding import Scope, Template, parse_template, render
from ..errors import ConfigError, choices_text, did_you_mean
from .base import ActionHeader, Binding, Named, Number, Strict
from .positions import Path, Positions, clip

Command = Union[List[Union[str, int, float]], str]   # argv (numbers allowed: `--port, 8000`) or a shell line
Commands = Union[Command, List[Command]]             # one command, or several run in order
Duration = Union[int, float, str]                    # seconds, or "300ms", "5s", "2m", "1h", "1d", "1:30"
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class ManageScripts(Strict):
    """``manage.scripts:`` (model-compose's ``HttpServerManageScripts``), lifted into ``manage:``."""

    install: Optional[Commands] = None
    build: Optional[Commands] = None
    clean: Optional[Commands] = None
    start: Optional[Command] = None


class ManageConfig(Strict):
    """How the kernel runs a managed server: install and build (once, remembered), start, stop, clean."""

    install: Optional[Commands] = None     # once per distinct command, before the first start
    build: Optional[Commands] = None       # after install, once per distinct command and working_dir
    clean: Optional[Commands] = None       # after the server stops; the next start installs and builds again
    start: Optional[Command] = None
    stop: Optional[Command] = None         # ours: run before the process tree is signalled
    env: Optional[Dict[str, Any]] = None
    working_dir: Optional[str] = None
    ready_timeout: Optional[Number] = None
    health_path: Optional[str] = None


class RateLimit(Strict):
    """model-compose's ``RateLimitConfig``: a token bucket (``requests`` per ``period``, ``burst``
    tokens at most) and/or a minimum ``interval`` between requests, across the component's actions."""

    requests: Optional[conint(ge=1)] = None
    period: Optional[Duration] = None
    burst: Optional[conint(ge=1)] = None
    interval: Optional[Duration] = None


class PollingCompletion(Strict):
    """``completion: {type: polling}``: ask ``endpoint`` (or ``path``) until ``status`` is in
    ``success_when`` (the run's result is that reply) or ``fail_when`` (an error), every ``interval``
    until ``timeout``. Without ``status`` the HTTP status code is matched (``200``, ``2xx``)."""

    type: Literal["polling"]
    endpoint: Optional[str] = None
    path: Optional[str] = None
    method: Method = "GET"
    headers: Optional[Dict[str, Any]] = None
    body: Any = None
    params: Optional[Dict[str, Any]] = None
    status: Optional[str] = None
    success_when: Optional[Union[List[Union[int, str]], int, str]] = None
    fail_when: Optional[Union[List[Union[int, str]], int, str]] = None
    interval: Optional[Duration] = None     # 5 s
    timeout: Optional[Duration] = None      # 300 s
    stream_format: Optional[Literal["json", "text"]] = None
    stream_fragmented: Optional[bool] = None


class HttpActionFields(Strict):
    endpoint: Optional[str] = None
    base_url: Optional[str] = None
    path: Optional[str] = None
    method: Method = "POST"
    headers: Optional[Dict[str, Any]] = None
    params: Optional[Dict[str, Any]] = None
    body: Any = None
    stream_format: Optional[Literal["json", "text"]] = None
    stream_fragmented: Optional[bool] = None   # false: a streamed reply's events stay a list, not merged
    completion: Any = None                     # a PollingCompletion, checked by normalize_http
    timeout: Optional[Number] = None
    output: Any = None


class HttpAction(HttpActionFields, ActionHeader):
    pass


class HttpComponent(HttpActionFields, Named):
    type: Literal["http-server", "http-client"]
    manage: Optional[ManageConfig] = None
    port: Optional[Union[conint(ge=1, le=65535), Binding]] = None      # a number, or `${env.PORT as integer}`
    host: Optional[str] = None
    base_path: Optional[str] = None          # http-server: a prefix of every action's path
    rate_limit: Optional[RateLimit] = None   # http-client: across all its actions
    action: Optional[HttpAction] = None
    actions: Optional[List[HttpAction]] = None
    default: bool = False                    # model-compose: the component a job that names none uses
    max_concurrent_count: Optional[conint(ge=0)] = None   # at most this many runs at once (0: no limit)
    runtime: Optional[Any] = None            # accepted: a notebook runs the component in the kernel


SCRIPT_KEYS = ("install", "build", "clean", "start")
_SERVER_ONLY = ("manage", "port", "host", "base_path") + SCRIPT_KEYS
_CLIENT_ONLY = ("rate_limit",)
_COMPONENT_WIDE = ("headers", "base_url")   # model-compose's component-level keys, folded into each action


# ----------------------------------------------------------------------------------------------
# Durations and commands


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or model-compose's duration text (``"300ms"``, ``"5s"``, ``"2m"``,
    ``"1h"``, ``"1d"``, ``"1:30"`` as minutes:seconds, a bare ``"30"``); a ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if ":" in text:
        parts = [float(p) for p in text.split(":")]
        seconds = 0.0
        for p in parts:
            seconds = seconds * 60 + p
        return seconds
    m = re.fullmatch(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?", text)
    if not m:
        raise ValueError(f"{clip(repr(value))} is not a duration")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def commands(value: Any) -> List[Command]:
    """``install`` / ``build`` / ``clean`` as a list of commands: an argv list of words is one command
    (model-compose's rule), a list holding lists (or only shell lines beside lists) is several."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and any(isinstance(part, list) for part in value):
        return list(value)
    return [value]


# ----------------------------------------------------------------------------------------------
# Values of a completion evaluated at each poll


class Late:
    """A ``${response...}`` / ``${result...}`` in a ``completion:``: the engine leaves it as it is when
    the run starts; the driver evaluates it at each poll (:func:`render_late`)."""

    __slots__ = ("template",)

    def __init__(self, template: Template):
        self.template = template

    def __repr__(self) -> str:
        return repr(self.template)


class _Joined:
    """Marks a list as the parts of one text (``"/jobs/${response.id}"``): the first element of it."""

    def __repr__(self) -> str:
        return "<joined>"


JOINED = _Joined()
LATE_SOURCES = ("response", "result", "response[]", "result[]")


def defer(value: Any, path: Path, positions: Positions) -> Any:
    """``value`` with every text that reads a late source split so that its ``${input...}`` and
    ``${env...}`` parts are evaluated with the run's other fields and its late parts at each poll."""
    if isinstance(value, dict):
        return {k: defer(v, path + (k,), positions) for k, v in value.items()}
    if isinstance(value, list):
        return [defer(v, path + (i,), positions) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    parsed = parse_template(value, path, positions.line(path))
    if not isinstance(parsed, Template) or not any(e.source in LATE_SOURCES for e in parsed.exprs):
        return value
    parts: List[Any] = [JOINED]
    for part in parsed.parts:
        if isinstance(part, str):
            parts.append(part)
        elif part.source in LATE_SOURCES:
            parts.append(Late(Template((part,), path, positions.line(path))))
        else:
            parts.append("${" + part.text + "}")
    return parts


def render_late(value: Any, values: Dict[str, Any]) -> Any:
    """A completion's value (as the engine rendered it) with its :class:`Late` parts evaluated against
    ``values`` (``response``: the first reply, ``result``: the latest poll's)."""
    if isinstance(value, Late):
        return render(value.template, Scope(dict(values), where="completion"))
    if isinstance(value, dict):
        return {k: render_late(v, values) for k, v in value.items()}
    if isinstance(value, list):
        if value and value[0] is JOINED:
            parts = [render_late(p, values) for p in value[1:]]
            if len(parts) == 1:
                return parts[0]
            import json
            return "".join(p if isinstance(p, str) else "" if p is None else
                           json.dumps(p, ensure_ascii=False, default=str) if isinstance(p, (dict, list)) else str(p)
                           for p in parts)
        return [render_late(v, values) for v in value]
    return value


# ----------------------------------------------------------------------------------------------
# model-compose's shapes -> ours


def normalize_http(raw: Dict[str, Any], path: Path, positions: Positions) -> Dict[str, Any]:
    """model-compose's shapes for an http component, as the mapping :class:`HttpComponent` validates
    (see the module's docstring). ``raw`` is not changed; the YAML lines of moved keys are recorded at
    their new paths (a folded key points at its component-level line)."""
    out = dict(raw)
    kind = out.get("type")
    where = lambda *keys: positions.where(path + keys)   # noqa: E731
    wrong = _SERVER_ONLY if kind == "http-client" else _CLIENT_ONLY if kind == "http-server" else ()
    for key in wrong:
        if key in out:
            other = "http-server" if kind == "http-client" else "http-client"
            raise ConfigError(f"`{key}:` is a key of an {other}, not of an {kind}", **where(key),
                              hint=f"Remove it, or write `type: {other}`.")
    if kind == "http-server":
        _normalize_manage(out, path, positions)
    if isinstance(out.get("rate_limit"), str):
        out["rate_limit"] = _rate_shorthand(out["rate_limit"], path + ("rate_limit",), positions)
    if isinstance(out.get("rate_limit"), dict):
        _check_rate_limit(out["rate_limit"], path + ("rate_limit",), positions)

    places = _action_places(out, path)
    listed = [p for p in places if p[0] != path]
    # a default action written at the top beside `actions:` (our dialect) keeps the component-wide keys too
    top_action = not listed or any(k in out for k in HttpActionFields.model_fields if k not in _COMPONENT_WIDE)
    if listed:   # model-compose's shape: the top keys are component-wide, folded into each action
        for key in _COMPONENT_WIDE:
            if key not in out:
                continue
            value = out[key] if top_action else out.pop(key)
            for apath, action in listed:
                if key == "headers" and isinstance(value, dict) and isinstance(action.get("headers"), dict):
                    own = action["headers"]
                    action["headers"] = {**value, **own}
                    for k in value:
                        if k not in own:
                            positions.copy(path + ("headers", k), apath + ("headers", k))
                elif key not in action:
                    action[key] = copy.deepcopy(value)
                    positions.copy(path + (key,), apath + (key,))
    places = [p for p in _action_places(out, path) if p[0] != path or top_action]
    base_path = out.get("base_path")
    if base_path is not None and not isinstance(base_path, str):
        raise ConfigError("`base_path:` must be a URL path such as `/api`", **where("base_path"))
    for apath, action in places:
        if base_path:
            action["path"] = _join(base_path, action.get("path"))
        if "completion" in action:
            action["completion"] = _completion(action["completion"], kind, action, out, apath, positions,
                                               base_path)
        if kind == "http-client":
            _check_client_url(action, apath, positions)
    return out


def _action_places(out: Dict[str, Any], path: Path) -> List[tuple]:
    """(path, mapping) of each action, the top level included (its action fields); the mappings are
    copies placed into ``out``, so changing them changes ``out`` only."""
    places: List[tuple] = [(path, out)]
    if isinstance(out.get("action"), dict):
        out["action"] = dict(out["action"])
        places.append((path + ("action",), out["action"]))
    if isinstance(out.get("actions"), list):
        out["actions"] = [dict(a) if isinstance(a, dict) else a for a in out["actions"]]
        places += [(path + ("actions", i), a) for i, a in enumerate(out["actions"]) if isinstance(a, dict)]
    return places


def _join(prefix: str, rest: Any) -> Any:
    if rest is None or rest == "":
        return prefix
    if not isinstance(rest, str):
        return rest   # pydantic names the wrong type
    return prefix.rstrip("/") + "/" + rest.lstrip("/")


def _normalize_manage(out: Dict[str, Any], path: Path, positions: Positions) -> None:
    top = [k for k in SCRIPT_KEYS if k in out]
    manage = out.get("manage")
    if top and manage is not None:
        raise ConfigError(f"`{top[0]}:` is given on the component and `manage:` too", **positions.where(path + (top[0],)),
                          hint=f"Move `{top[0]}:` under `manage:` (or `manage.scripts:`), or leave `manage:` out.")
    if top:
        out["manage"] = {k: out.pop(k) for k in top}
        for k in top:
            positions.copy(path + (k,), path + ("manage", k))
        positions.lines.setdefault(path + ("manage",), positions.line(path + (top[0],)))
        return
    if not isinstance(manage, dict) or "scripts" not in manage:
        return
    manage = dict(manage)
    scripts = manage.pop("scripts")
    spath = path + ("manage", "scripts")
    if not isinstance(scripts, dict):
        raise ConfigError("`manage.scripts:` must be a mapping of `install`, `build`, `clean` and `start`",
                          **positions.where(spath), hint="Write e.g. `scripts: {start: [python, server.py]}`.")
    for k in scripts:
        if k not in SCRIPT_KEYS:
            raise ConfigError(f"unknown key `{clip(k)}`{did_you_mean(k, SCRIPT_KEYS)}", **positions.where(spath + (k,)),
                              hint=f"Valid keys here: {choices_text(SCRIPT_KEYS)}.")
        if k in manage:
            raise ConfigError(f"`{k}:` is given under `manage:` and under `manage.scripts:`",
                              **positions.where(spath + (k,)), hint="Keep one of them.")
        manage[k] = scripts[k]
        positions.copy(spath + (k,), path + ("manage", k))
    out["manage"] = manage


_SHORTHAND = re.compile(r"^\s*(\d+)\s*/\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)|(ms|s|m|h|d))\s*$")


def _rate_shorthand(text: str, path: Path, positions: Positions) -> Dict[str, Any]:
    m = _SHORTHAND.match(text)
    if not m:
        raise ConfigError(f"`rate_limit: {clip(text)}` is not a rate", **positions.where(path),
                          hint="Write `<requests>/<period>`, e.g. `10/1s`, `5/m`, `100/500ms`, or a mapping "
                               "`{requests: 10, period: 1s, burst: 20, interval: 100ms}`.")
    requests, qty, unit, bare = m.groups()
    return {"requests": int(requests), "period": f"{qty}{unit}" if qty is not None else f"1{bare}"}


def _validate(cls: type, value: Any, path: Path, positions: Positions) -> Any:
    """``cls.model_validate(value)``, its first error as a located ConfigError (an unknown key with
    a did-you-mean and the valid keys). These models are flat, so the error's key is one of theirs."""
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping here, found {clip(repr(value))}", **positions.where(path))
    try:
        return cls.model_validate(value)
    except ValidationError as e:
        first = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")[0]
    loc = tuple(x for x in first["loc"] if x in value or isinstance(x, int))[:1] or tuple(first["loc"][:1])
    where = positions.where(path + loc)
    key = loc[0] if loc else ""
    valid = sorted(cls.model_fields)
    if first["type"] == "extra_forbidden":
        return _raise(ConfigError(f"unknown key `{positions.written.get(path + loc, clip(key))}`"
                                  f"{did_you_mean(key, valid)}", **where, hint=f"Valid keys here: {choices_text(valid)}."))
    if first["type"] == "missing":
        return _raise(ConfigError(f"the required key `{key}` is missing", **positions.where(path), hint=f"Add `{key}:`."))
    if first["type"] == "literal_error":
        expected = first.get("ctx", {}).get("expected", "")
        return _raise(ConfigError(f"`{clip(first.get('input'))}` is not a valid value for `{key}`", **where,
                                  hint=f"Valid values: {expected}."))
    return _raise(ConfigError(f"`{clip(first.get('input'))}` does not fit `{key}`: {clip(first['msg'], 200)}", **where))


def _raise(error: ConfigError) -> Any:
    raise error


def _check_duration(value: Any, path: Path, positions: Positions, key: str) -> None:
    try:
        seconds = parse_duration(value)
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or seconds <= 0:
        raise ConfigError(f"`{key}: {clip(value)}` is not a duration above 0", **positions.where(path),
                          hint=f"Write seconds (`{key}: 2`) or a duration such as `300ms`, `5s`, `2m`, `1h`.")


def _check_rate_limit(value: Dict[str, Any], path: Path, positions: Positions) -> None:
    limit = _validate(RateLimit, value, path, positions)
    for key in ("period", "interval"):
        if getattr(limit, key) is not None:
            _check_duration(getattr(limit, key), path + (key,), positions, key)
    if limit.requests is None and limit.interval is None:
        raise ConfigError("`rate_limit:` needs `requests:` (with `period:`) or `interval:`", **positions.where(path),
                          hint="E.g. `rate_limit: 10/1s`, or `{interval: 200ms}`.")
    for key in ("period", "burst"):
        if getattr(limit, key) is not None and limit.requests is None:
            raise ConfigError(f"`rate_limit.{key}` means nothing without `requests:`",
                              **positions.where(path + (key,)), hint="Add `requests:` (how many per period).")


def _completion(value: Any, kind: Any, action: Dict[str, Any], component: Dict[str, Any], apath: Path,
                positions: Positions, base_path: Optional[str]) -> Any:
    cpath = apath + ("completion",)
    if value is None:
        return None
    if isinstance(value, dict) and value.get("type") == "callback":
        raise ConfigError("`completion: {type: callback}` waits for the server to call back, which needs a public "
                          "address a notebook does not have (gateway/tunnel); out of scope here",
                          **positions.where(cpath + ("type",)),
                          hint="Use `type: polling` with the server's status endpoint (`path:` or `endpoint:`, "
                               "`status:`, `success_when:`), or leave `completion:` out.")
    if isinstance(value, dict) and "type" in value and value["type"] != "polling":
        raise ConfigError(f"unknown completion type `{clip(value['type'])}`"
                          f"{did_you_mean(value['type'], ['polling', 'callback'])}",
                          **positions.where(cpath + ("type",)), hint="Valid types: `polling` (`callback` is out of "
                                                                      "scope in a notebook).")
    poll = _validate(PollingCompletion, value, cpath, positions)
    for key in ("interval", "timeout"):
        if getattr(poll, key) is not None:
            _check_duration(getattr(poll, key), cpath + (key,), positions, key)
    if bool(poll.endpoint) == bool(poll.path):
        raise ConfigError("a polling completion needs `endpoint:` or `path:` (one of them)", **positions.where(cpath),
                          hint="`path: /status/${response.id}` polls the same server; `endpoint:` a full URL.")
    if poll.path and kind == "http-client" and not (action.get("base_url") or component.get("base_url")):
        raise ConfigError("the completion uses `path:` but the component has no `base_url:`",
                          **positions.where(cpath + ("path",)),
                          hint="Add `base_url: http://host:port` to the component, or poll a full `endpoint:`.")
    value = dict(value)
    if poll.path and base_path:
        value["path"] = _join(base_path, value["path"])
    for key in ("success_when", "fail_when"):
        if isinstance(value.get(key), (int, str)):
            value[key] = [value[key]]
    return defer(value, cpath, positions)


def _check_client_url(action: Dict[str, Any], apath: Path, positions: Positions) -> None:
    if action.get("endpoint") and action.get("path"):
        raise ConfigError("the action has both `endpoint:` and `path:`", **positions.where(apath + ("path",)),
                          hint="Give a full `endpoint:` URL, or `path:` under the component's `base_url:`, not both.")
    if action.get("path") and not action.get("base_url"):
        aid = action.get("id", "default") if isinstance(action.get("id", "default"), str) else "default"
        raise ConfigError(f"action `{clip(aid, 40)}` uses `path:` but the component has no `base_url:`",
                          **positions.where(apath + ("path",)),
                          hint="Add `base_url: http://host:port` to the component (or the action), or give the "
                               "full URL as `endpoint:`.")
