"""A client for the scoring contract: build requests from files or texts, call an endpoint, read answers and errors.

The pure parts (`image_request`, `text_request`, `scoring_url`, `parse_response`, `prediction_rows`) carry the
logic and are tested without a network; `post_json` is the thin HTTP call (requests, with a timeout). A managed
online endpoint reports any non-200 answer of the container as 424 and puts the container's status in the
`ms-azureml-model-error-statuscode` header (its reason in `ms-azureml-model-error-reason`): `parse_response`
unwraps that, so the user sees the scoring script's own status and message. The key is sent as a bearer token and
appears in no message.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure_dl.errors import AzureDLError

DEFAULT_TIMEOUT_S = 60.0
DEPLOYMENT_HEADER = "azureml-model-deployment"
MODEL_ERROR_STATUS_HEADER = "ms-azureml-model-error-statuscode"
MODEL_ERROR_REASON_HEADER = "ms-azureml-model-error-reason"
# What each status usually means for a user of an Azure ML online endpoint (or a local azmlinfsrv).
_STATUS_HINTS = {
    400: "the scoring script rejected the request",
    401: "not authorised: the endpoint key or token is wrong or expired",
    403: "forbidden: this identity may not call the endpoint",
    404: "not found: check the URL, and that a deployment of the endpoint has traffic (or use --deployment)",
    408: "the request timed out on the endpoint (request_timeout_ms of the deployment)",
    413: "the request is too large for the endpoint; send fewer or smaller items per request",
    415: "the endpoint expects Content-Type: application/json",
    429: "too many requests: the deployment is at its max_concurrent_requests_per_instance; retry later",
    500: "the scoring script failed on the server; its log has the details",
    502: "the deployment's container is not answering (starting, crashed or restarting)",
    503: "the endpoint is unavailable (scaling, or a deployment is being updated); retry later",
    504: "the endpoint timed out",
}


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    probabilities: dict[str, float]


class ScoringError(AzureDLError):
    """The endpoint answered with an error; `status` is the scoring script's status (424 unwrapped)."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes


# ----------------------------------------------------------------------------------------------- requests


def image_request(paths: Sequence[str | os.PathLike[str]], top_k: int | None = None) -> dict[str, Any]:
    """{"images": [base64 of each file], "top_k": k}; the files are sent as they are (the server decodes them)."""
    images = []
    for path in map(Path, paths):
        if not path.is_file():
            raise AzureDLError(f"image file {path} not found")
        images.append(base64.b64encode(path.read_bytes()).decode("ascii"))
    if not images:
        raise AzureDLError("no image files given")
    request: dict[str, Any] = {"images": images}
    if top_k is not None:
        if top_k < 1:
            raise AzureDLError(f"--top-k {top_k}: must be at least 1")
        request["top_k"] = top_k
    return request


def text_request(texts: Sequence[str]) -> dict[str, Any]:
    if not texts:
        raise AzureDLError("no texts given")
    return {"texts": list(texts)}


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    if size < 1:
        raise AzureDLError(f"--batch-size {size}: must be at least 1")
    return [items[start : start + size] for start in range(0, len(items), size)]


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def scoring_url(target: str) -> str:
    """The scoring URL for TARGET: a base URL gets `/score` (azmlinfsrv's route); a URL with a path is kept."""
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AzureDLError(f"{target!r} is not an http(s) URL", hint="e.g. http://127.0.0.1:5001 (azure-dl serve)")
    path = parts.path if parts.path not in ("", "/") else "/score"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def request_headers(key: str | None = None, deployment: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if deployment:
        headers[DEPLOYMENT_HEADER] = deployment
    return headers


# ----------------------------------------------------------------------------------------------- answers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _message(body: bytes) -> str | None:
    """The scoring script's (or the server's) {"message": ...}, else the body's text, shortened."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text[:500]
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
    return text[:500]


def effective_status(answer: HttpAnswer) -> int:
    """The status the scoring container gave: a managed endpoint's 424 carries it in a header."""
    if answer.status == 424:
        inner = _header(answer.headers, MODEL_ERROR_STATUS_HEADER)
        if inner and inner.strip().isdigit():
            return int(inner.strip())
    return answer.status


def parse_response(answer: HttpAnswer) -> list[Prediction]:
    """The predictions of a 200 answer; ScoringError with the script's own status and message otherwise."""
    status = effective_status(answer)
    if answer.status != 200:
        message = _message(answer.body) or _header(answer.headers, MODEL_ERROR_REASON_HEADER) or "(no message)"
        wrapped = f" (reported by the endpoint as {answer.status})" if status != answer.status else ""
        raise ScoringError(status, f"the endpoint answered {status}{wrapped}: {message}", _STATUS_HINTS.get(status))
    try:
        data = json.loads(answer.body)
        raw = data["predictions"]
        return [
            Prediction(
                label=str(item["label"]),
                score=float(item["score"]),
                probabilities={str(k): float(v) for k, v in item["probabilities"].items()},
            )
            for item in raw
        ]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        preview = answer.body[:200].decode("utf-8", errors="replace")
        raise ScoringError(
            200,
            f"the endpoint answered 200 but not with {{'predictions': [...]}} ({type(exc).__name__}): {preview}",
            hint="is TARGET an azure-dl scoring endpoint?",
        ) from None


def prediction_rows(inputs: Sequence[str], predictions: Sequence[Prediction]) -> list[list[str]]:
    """Table rows: #, input, label, score, the classes' probabilities (best first)."""
    rows = []
    for index, (name, prediction) in enumerate(zip(inputs, predictions, strict=True)):
        shown = name if len(name) <= 60 else name[:57] + "..."
        others = ", ".join(f"{label} {p:.3f}" for label, p in prediction.probabilities.items())
        rows.append([str(index), shown, prediction.label, f"{prediction.score:.3f}", others])
    return rows


# -------------------------------------------------------------------------------------------------- HTTP


def post_json(
    url: str,
    payload: Mapping[str, Any],
    *,
    key: str | None = None,
    deployment: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> HttpAnswer:
    """POST the payload as JSON; connection problems become AzureDLError (without the key)."""
    import requests

    try:
        response = requests.post(
            url, data=json.dumps(payload), headers=request_headers(key, deployment), timeout=timeout_s
        )
    except requests.Timeout:
        raise AzureDLError(f"no answer from {url} within {timeout_s:.0f} s", hint="raise --timeout") from None
    except requests.ConnectionError as exc:
        reason = str(exc.args[0]) if exc.args else type(exc).__name__
        raise AzureDLError(
            f"cannot reach {url}: {reason[:300]}",
            hint="is `azure-dl serve` running there (or the endpoint name right)?",
        ) from None
    return HttpAnswer(response.status_code, dict(response.headers), response.content)


Poster = Callable[..., HttpAnswer]


def score(
    url: str,
    payload: Mapping[str, Any],
    *,
    key: str | None = None,
    deployment: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    post: Poster | None = None,
) -> list[Prediction]:
    """Send one scoring request (with `post`, default post_json) and return its predictions (ScoringError for an
    error answer)."""
    answer = (post or post_json)(url, payload, key=key, deployment=deployment, timeout_s=timeout_s)
    return parse_response(answer)
