"""The one machine-readable progress-line format that training scripts print and the azure-dl CLI renders.

Format
------
One event per line on stdout, flushed at once, written by rank 0 only (the process whose ``RANK`` environment
variable is unset or ``0``)::

    @azure-dl:progress {"event":"epoch","epoch":3,"epochs":10,"train_loss":0.41,...}

i.e. the prefix ``@azure-dl:progress `` (with its one trailing space) followed by a compact JSON object that has an
``"event"`` key. Non-finite floats (NaN, inf) are written as ``null`` so every line is strict JSON. Any other line is
ordinary output: the CLI passes it through unchanged, and Azure ML's logs show both kinds as they were printed.
Counters (``epoch``, ``step``) are 1-based. A reader must ignore keys it does not know, and events it does not know.

Events and their fields (a writer may add more fields):

=========== ===========================================================================================
start       task, epochs, steps_per_epoch, world_size, device
resume      checkpoint (path), epoch, step (the epoch and the step within it that training continues after)
step        epoch, epochs, step, steps, loss, lr, samples_per_s (every ``log_every_steps`` optimizer steps)
epoch       epoch, epochs, train_loss, val_loss, val_accuracy, val_macro_f1, seconds, best (true when this
            epoch gave the best validation loss so far)
early_stop  epoch, reason
artifact    kind (e.g. "model", "onnx", "metrics", "plot", "checkpoint"), path
done        output (the output folder), run_id (MLflow run or null), tracking_uri (or null), metrics
            (a small dict of headline numbers, e.g. {"val_accuracy": 0.93, "test_accuracy": 0.91})
warning     message
=========== ===========================================================================================

Use :func:`emit` to write an event and :func:`parse_line` to read one back. Standard library only: the control
plane imports this module, and it must not pull torch in.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

PREFIX = "@azure-dl:progress "

# The fields every writer must give for each known event; `emit` checks them so a typo fails in tests, not in
# the CLI's rendering of a three-hour job.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "start": ("task", "epochs", "steps_per_epoch", "world_size", "device"),
    "resume": ("checkpoint", "epoch", "step"),
    "step": ("epoch", "epochs", "step", "steps", "loss", "lr", "samples_per_s"),
    "epoch": ("epoch", "epochs", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "seconds", "best"),
    "early_stop": ("epoch", "reason"),
    "artifact": ("kind", "path"),
    "done": ("output", "run_id", "tracking_uri", "metrics"),
    "warning": ("message",),
}


def is_main_process() -> bool:
    """True on rank 0 and in a plain (not distributed) run."""
    return os.environ.get("RANK", "0") in ("", "0")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def format_line(event: str, **fields: Any) -> str:
    """The progress line for `event` (without a newline). Raises ValueError when a required field is missing."""
    missing = [name for name in REQUIRED_FIELDS.get(event, ()) if name not in fields]
    if missing:
        raise ValueError(f"progress event {event!r} is missing field(s) {', '.join(missing)}")
    payload = {"event": event, **_finite(fields)}
    return PREFIX + json.dumps(payload, separators=(",", ":"), default=str, allow_nan=False)


def emit(event: str, *, stream: TextIO | None = None, **fields: Any) -> None:
    """Print one progress line on rank 0 (other ranks print nothing) and flush it."""
    line = format_line(event, **fields)
    if not is_main_process():
        return
    out = stream if stream is not None else sys.stdout
    out.write(line + "\n")
    out.flush()


def warning(message: str, *, stream: TextIO | None = None) -> None:
    """A warning the CLI shows as such; on rank 0 only, like every event."""
    emit("warning", stream=stream, message=message)


def parse_line(line: str) -> dict[str, Any] | None:
    """The event dict of a progress line, or None for any other line (including a malformed progress line)."""
    text = line.rstrip("\r\n")
    if not text.startswith(PREFIX):
        return None
    try:
        payload = json.loads(text[len(PREFIX) :])
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        return None
    return payload
