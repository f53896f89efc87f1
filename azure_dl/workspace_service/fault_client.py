"""The client side of the fault admin routes (faults.py), for `azure-dl workspace fault`: reads DIR/connection.env
for the address, the CA bundle and the X-IDENTITY-HEADER secret, and sends POST/GET/DELETE /azure-dl/faults."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure_dl.errors import AzureDLError, ConfigError
from azure_dl.workspace_service.faults import ADMIN_PATH

CONNECTION_FILE = "connection.env"


@dataclass(frozen=True)
class FaultSpec:
    """One fault as the CLI flags give it (validated by the service, which names what is wrong)."""

    method: str | None
    path: str | None
    status: int | None
    drop: bool
    times: int
    retry_after: float | None

    def document(self) -> dict[str, Any]:
        if not self.method or not self.path:
            raise ConfigError("a fault needs both --method and --path", hint="e.g. --method PUT --path '/jobs/'")
        if self.status is None and not self.drop:
            raise ConfigError("a fault needs --status CODE or --drop", hint="e.g. --status 503 --retry-after 1")
        document: dict[str, Any] = {"method": self.method, "path": self.path, "times": self.times}
        document.update({"drop": True} if self.drop else {"status": self.status})
        if self.retry_after is not None:
            document["retryAfter"] = self.retry_after
        return document


def _read_connection(data_dir: Path) -> dict[str, str]:
    path = data_dir / CONNECTION_FILE
    if not path.is_file():
        raise ConfigError(
            f"no running local workspace serves {data_dir} ({path} is missing)",
            hint=f"start one first: azure-dl workspace serve --dir {data_dir}",
        )
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _call(values: dict[str, str], method: str, body: dict[str, Any] | None) -> dict[str, Any]:
    endpoint = urlsplit(values["IDENTITY_ENDPOINT"])
    url = f"{endpoint.scheme}://{endpoint.netloc}{ADMIN_PATH}"
    data = None if body is None else json.dumps(body).encode()
    headers = {"X-IDENTITY-HEADER": values["IDENTITY_HEADER"], "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    context = ssl.create_default_context(cafile=values["REQUESTS_CA_BUNDLE"])
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", {}).get("message", exc.reason)
        raise AzureDLError(f"the local workspace refused the fault ({exc.code}): {detail}") from None
    except urllib.error.URLError as exc:
        raise AzureDLError(
            f"cannot reach the local workspace at {url}: {exc.reason}",
            hint="is `azure-dl workspace serve` still running for this --dir?",
        ) from None


def _line(fault: dict[str, Any]) -> str:
    what = "drop" if fault["drop"] else f"status {fault['status']}"
    after = f", Retry-After {fault['retryAfter']:g} s" if fault.get("retryAfter") is not None else ""
    return f"{fault['method']} {fault['path']}: {what}{after}, hit {fault['hits']} of {fault['times']}"


def send_faults(data_dir: Path, spec: FaultSpec | None, *, clear: bool = False) -> list[str]:
    """Clear and/or add a fault on the service serving `data_dir`; the lines to print (every rule, with its hits)."""
    values = _read_connection(data_dir)
    document = spec.document() if spec is not None else None
    if clear:
        _call(values, "DELETE", None)
    if document is not None:
        _call(values, "POST", document)
    rules = _call(values, "GET", None)["value"]
    return [_line(rule) for rule in rules] or ["no faults pending"]
