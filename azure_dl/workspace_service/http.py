"""Routing and the request/response types the resource modules share (no framework: the standard library's server)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Request:
    """One HTTP request, with the path matched against a route's pattern (`params`)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        if not self.body:
            raise ApiError(400, "BadRequest", f"{self.method} {self.path} needs a JSON body and got none")
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body of {self.method} {self.path} is not JSON: {exc}") from exc

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without sending this answer (an injected fault: faults.py)


# What a fault hook answers for a request that was processed but must get no answer.
DROP = "drop"


class FaultHook(Protocol):
    def take(self, method: str, path: str) -> Response | str | None: ...


def json_response(status: int, document: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(document).encode()
    return Response(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


class ApiError(Exception):
    """An error answered in ARM's shape: {"error": {"code": ..., "message": ...}}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> Response:
        return json_response(self.status, {"error": {"code": self.code, "message": self.message}})


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, "ResourceNotFound", f"The {kind} '{name}' was not found in this local workspace.")


Handler = Callable[[Request], Response]

# Path segments as ARM spells them: resourceGroups is case-insensitive on the wire (ARM itself ignores case).
_SEGMENT = r"[^/]+"


class Router:
    """Maps METHOD + a path template with {placeholders} to a handler; the first match wins."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        # Set by faults.register: asked first, for an answer to give instead of the route's, DROP, or None.
        self.fault_hook: FaultHook | None = None

    def add(self, method: str, template: str, handler: Handler) -> None:
        # {name} is one path segment; {name:path} is the rest of the path (a blob name has slashes).
        pattern = re.sub(
            r"\{(\w+)(:path)?\}",
            lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(2) else _SEGMENT})",
            re.escape(template).replace(r"\{", "{").replace(r"\}", "}"),
        )
        self._routes.append((method.upper(), re.compile(f"^{pattern}$", re.IGNORECASE), handler))

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        fault = self.fault_hook.take(method.upper(), urlsplit(target).path) if self.fault_hook else None
        if isinstance(fault, Response):
            return fault
        response = self._route(method, target, headers, body)
        if fault == DROP:
            response.drop = True
        return response

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        parts = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request(method.upper(), parts.path, query, {k.lower(): v for k, v in headers.items()}, body)
        path_matched = False
        for route_method, pattern, handler in self._routes:
            match = pattern.match(parts.path)
            if match is None:
                continue
            path_matched = True
            if route_method != request.method:
                continue
            request.params = {key: unquote(value) for key, value in match.groupdict().items()}
            try:
                return handler(request)
            except ApiError as exc:
                return exc.response()
        if path_matched:
            return ApiError(405, "MethodNotAllowed", f"{method} is not supported on {parts.path}").response()
        return ApiError(
            501,
            "NotImplemented",
            f"{method} {parts.path} is not implemented by the local azure-dl workspace service "
            "(see docs/architecture.md for what it serves)",
        ).response()
