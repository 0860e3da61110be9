"""The typed shape of the http-server and http-client components (dialect §1, model-compose's
``mindor/dsl/schema/component/impl/http_server.py`` / ``http_client.py``), strict like the rest of the
schema: :mod:`mc_jupyter.config.schema` validates a component of these types with :class:`HttpComponent`
after :func:`normalize_http` has brought model-compose's shorthands into this shape.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import conint

from .base import ActionHeader, Binding, Named, Number, Strict
from .positions import Path, Positions


Command = Union[List[Union[str, int, float]], str]   # argv (numbers allowed: `--port, 8000`) or a shell line


class ManageConfig(Strict):
    install: Optional[Command] = None
    start: Optional[Command] = None
    stop: Optional[Command] = None
    env: Optional[Dict[str, Any]] = None
    working_dir: Optional[str] = None
    ready_timeout: Optional[Number] = None
    health_path: Optional[str] = None


class HttpActionFields(Strict):
    endpoint: Optional[str] = None
    base_url: Optional[str] = None
    path: Optional[str] = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: Optional[Dict[str, Any]] = None
    params: Optional[Dict[str, Any]] = None
    body: Any = None
    stream_format: Optional[Literal["json", "text"]] = None
    timeout: Optional[Number] = None
    output: Any = None


class HttpAction(HttpActionFields, ActionHeader):
    pass


class HttpComponent(HttpActionFields, Named):
    type: Literal["http-server", "http-client"]
    manage: Optional[ManageConfig] = None
    port: Optional[Union[conint(ge=1, le=65535), Binding]] = None      # a number, or `${env.PORT as integer}`
    host: Optional[str] = None
    action: Optional[HttpAction] = None
    actions: Optional[List[HttpAction]] = None
    max_concurrent_count: Optional[int] = None
    runtime: Optional[Any] = None


def normalize_http(raw: Dict[str, Any], path: Path, positions: Positions) -> Dict[str, Any]:
    """model-compose's shorthands for an http component, as the mapping :class:`HttpComponent` validates
    (the YAML positions of moved keys are kept). Today: the mapping as written."""
    return raw
