"""The smoke test of a new deployment: a one-item sample request, sent to that deployment alone, answer checked.

`rollout` (endpoints.py) runs it before any traffic moves; a wrong or missing answer raises SmokeTestFailed, whose
hint says the deployment takes no live traffic and how to read its logs and delete it.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from azure_dl.backends.azureml.client import redact
from azure_dl.endpoint_spec import IMAGE_TASK, TEXT_TASK
from azure_dl.errors import AzureDLError, SpecError

SAMPLE_TEXT = "A sample review to check the deployment: the film was well acted and never boring."


class SmokeTestFailed(AzureDLError):
    """The new deployment did not answer the sample request correctly; traffic was not moved."""


def sample_request(task: str, preprocess: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A one-item request for the task: a generated PNG (the model's resize size) or a short review."""
    if task == TEXT_TASK:
        return {"texts": [SAMPLE_TEXT]}
    if task != IMAGE_TASK:
        raise SpecError(f"no sample request for task {task!r}")
    import numpy as np
    from PIL import Image

    size = int((preprocess or {}).get("resize_size") or 256)
    # A smooth gradient with a bright disc: decodes like a photo, compresses small, deterministic.
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    disc = ((x - 0.5) ** 2 + (y - 0.55) ** 2 < 0.08).astype(np.float32)
    grey = np.clip(40 + 120 * x * y + 90 * disc, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="L").convert("RGB").save(buffer, format="PNG")
    return {"images": [base64.b64encode(buffer.getvalue()).decode("ascii")], "top_k": 1}


def write_sample_request(path: Path, task: str, preprocess: Mapping[str, Any] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sample_request(task, preprocess)) + "\n", encoding="utf-8")
    return path


def check_response(text: str, expected_items: int, labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The predictions of a scoring response, or SmokeTestFailed saying what is wrong with it."""
    try:
        data = json.loads(text)
        if isinstance(data, str):  # a scoring script that returns a JSON string is encoded twice
            data = json.loads(data)
    except (TypeError, ValueError):
        raise SmokeTestFailed(
            f"the deployment answered with something that is not JSON: {redact(str(text))[:300]}"
        ) from None
    predictions = data.get("predictions") if isinstance(data, dict) else None
    if not isinstance(predictions, list) or len(predictions) != expected_items:
        raise SmokeTestFailed(
            f"the deployment's answer has no list of {expected_items} prediction(s): {redact(str(text))[:300]}"
        )
    for prediction in predictions:
        label = prediction.get("label") if isinstance(prediction, dict) else None
        score = prediction.get("score") if isinstance(prediction, dict) else None
        if not isinstance(label, str) or (labels is not None and label not in labels):
            raise SmokeTestFailed(f"the deployment predicted an unknown label {label!r} (labels: {labels})")
        if not isinstance(score, int | float) or not math.isfinite(score) or not 0 <= score <= 1:
            raise SmokeTestFailed(f"the deployment gave score {score!r} for {label!r}; expected a probability")
    return predictions


def smoke_test(
    ml_client: Any,
    endpoint: str,
    deployment: str,
    request_file: Path,
    *,
    labels: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Invoke `deployment` directly with the sample request and check its answer; SmokeTestFailed otherwise."""
    from azure.ai.ml.exceptions import MlException
    from azure.core.exceptions import AzureError, HttpResponseError

    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    items = len(request.get("images") or request.get("texts") or [])
    hint = (
        f"traffic was not moved; {deployment} takes no live traffic. See its logs (az ml online-deployment "
        f"get-logs --name {deployment} --endpoint-name {endpoint}), then delete it: "
        f"azure-dl endpoint delete {endpoint} --deployment {deployment}"
    )
    try:
        text = ml_client.online_endpoints.invoke(
            endpoint_name=endpoint, deployment_name=deployment, request_file=str(request_file)
        )
    except HttpResponseError as exc:
        status = exc.status_code
        first = next((line for line in str(exc.message or exc).splitlines() if line.strip()), "")
        raise SmokeTestFailed(
            f"smoke test of deployment {deployment} failed: HTTP {status}: {redact(first)[:400]}", hint=hint
        ) from None
    except (AzureError, MlException) as exc:
        message = redact(str(getattr(exc, "message", None) or exc))[:400]
        raise SmokeTestFailed(f"smoke test of deployment {deployment} failed: {message}", hint=hint) from None
    try:
        return check_response(text, items, labels)
    except SmokeTestFailed as exc:
        raise SmokeTestFailed(f"smoke test of deployment {deployment} failed: {exc.message}", hint=hint) from None
