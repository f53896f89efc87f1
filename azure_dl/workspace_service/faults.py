"""Fault injection: answer the next N requests matching METHOD + a path regex with 429/503, or drop the response.

So that a client's retry and idempotency can be tested over the wire. A fault with a status answers instead of
the service (the request is NOT processed, as a throttling front end would refuse it); a dropped fault lets the
service process the request and then closes the connection without an answer, so a retry of a non-idempotent
call would be visible. Faults are consumed in the order they were added; each counts the requests it hit.

Two ways to set them: in-process, `WorkspaceService.faults.add(...)` (tests), and the admin routes
`POST /azure-dl/faults` (JSON: method, path, status|drop, times, retryAfter), `GET /azure-dl/faults` (what is
pending and what was hit) and `DELETE /azure-dl/faults` (clear), checked with the `X-IDENTITY-HEADER` secret of
connection.env (`azure-dl workspace fault` sends them). Paths under /azure-dl/ are never faulted.
"""

from __future__ import annotations

import hmac
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import DROP, ApiError, Request, Response, Router, json_response

ADMIN_PATH = "/azure-dl/faults"
FAULT_STATUSES = (408, 429, 500, 502, 503, 504)
_MESSAGES = {
    408: ("RequestTimeout", "the request timed out (injected fault)"),
    429: ("TooManyRequests", "the request was throttled; retry after the time in Retry-After (injected fault)"),
    500: ("InternalServerError", "an internal error occurred (injected fault)"),
    502: ("BadGateway", "the gateway got no valid answer (injected fault)"),
    503: ("ServiceUnavailable", "the service is unavailable; retry later (injected fault)"),
    504: ("GatewayTimeout", "the gateway timed out (injected fault)"),
}


@dataclass
class Fault:
    """One rule: the next `times` requests of `method` whose path matches `path` get `status`, or are dropped."""

    method: str
    path: str
    status: int | None = None
    drop: bool = False
    times: int = 1
    retry_after: float | None = None
    hits: int = 0
    pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        if self.drop == (self.status is not None):
            raise ValueError("a fault either answers a status or drops the response: give exactly one")
        if self.status is not None and self.status not in FAULT_STATUSES:
            raise ValueError(f"fault status {self.status} is not one of {', '.join(map(str, FAULT_STATUSES))}")
        if self.times < 1:
            raise ValueError(f"a fault must apply at least once, got times={self.times}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {self.retry_after}")
        try:
            self.pattern = re.compile(self.path, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"fault path {self.path!r} is not a regular expression: {exc}") from exc

    @property
    def remaining(self) -> int:
        return self.times - self.hits

    def response(self) -> Response:
        assert self.status is not None
        code, message = _MESSAGES[self.status]
        answer = ApiError(self.status, code, message).response()
        if self.retry_after is not None:
            # azure-core parses a float, so a test can ask for 0.01 s rather than the integer seconds ARM sends.
            answer.headers["Retry-After"] = f"{self.retry_after:g}"
        return answer

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "drop": self.drop,
            "times": self.times,
            "retryAfter": self.retry_after,
            "hits": self.hits,
        }


class Faults:
    """The service's fault rules, thread-safe; the first pending rule that matches a request is consumed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []

    def add(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        drop: bool = False,
        times: int = 1,
        retry_after: float | None = None,
    ) -> Fault:
        """Fault the next `times` requests of `method` whose path matches the regex `path` (re.search)."""
        fault = Fault(method, path, status=status, drop=drop, times=times, retry_after=retry_after)
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[Fault]:
        with self._lock:
            return list(self._rules)

    def take(self, method: str, path: str) -> Response | str | None:
        """What to do with this request: an answer to give instead, DROP, or None (serve it normally)."""
        if path.startswith("/azure-dl/"):
            return None
        with self._lock:
            for fault in self._rules:
                if fault.remaining > 0 and fault.method == method.upper() and fault.pattern.search(path):
                    fault.hits += 1
                    return DROP if fault.drop else fault.response()
        return None


def _parse(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("method"), str):
        raise ApiError(
            400, "BadRequest", 'a fault needs {"method": "PUT", "path": REGEX, "status": 503 | "drop": true}'
        )
    if not isinstance(document.get("path"), str):
        raise ApiError(400, "BadRequest", "a fault needs a `path` regular expression (a string)")
    return {
        "method": document["method"],
        "path": document["path"],
        "status": document.get("status"),
        "drop": bool(document.get("drop", False)),
        "times": int(document.get("times", 1)),
        "retry_after": document.get("retryAfter"),
    }


def register(router: Router, context: ServiceContext) -> None:
    """Attach a Faults to the router (router.fault_hook) and serve the admin routes."""
    faults = Faults()
    router.fault_hook = faults

    def _check_admin(request: Request) -> None:
        secret = request.header("X-IDENTITY-HEADER")
        if secret is None or not hmac.compare_digest(secret, context.identity_secret):
            raise ApiError(
                401, "Unauthorized", "missing or wrong X-IDENTITY-HEADER (use IDENTITY_HEADER from connection.env)"
            )

    def _listing() -> Response:
        return json_response(200, {"value": [fault.describe() for fault in faults.rules()]})

    def _add(request: Request) -> Response:
        _check_admin(request)
        try:
            fault = faults.add(**_parse(request.json()))
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "BadRequest", f"bad fault: {exc}") from exc
        return json_response(201, fault.describe())

    def _list(request: Request) -> Response:
        _check_admin(request)
        return _listing()

    def _clear(request: Request) -> Response:
        _check_admin(request)
        faults.clear()
        return _listing()

    router.add("POST", ADMIN_PATH, _add)
    router.add("GET", ADMIN_PATH, _list)
    router.add("DELETE", ADMIN_PATH, _clear)
