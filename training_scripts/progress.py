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
import time
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


class Counter:
    """Progress of a long count (e.g. images decoded into a cache), for a person watching, on rank 0 only.

    On a terminal (stderr is a TTY) one line redrawn in place; anywhere else (a pipe, the CLI, an Azure ML log)
    a plain line at most every `every_s` seconds and one at the end, so logs stay short. Not a progress event:
    the CLI passes these lines through as they are.
    """

    def __init__(
        self, label: str, total: int, *, unit: str = "items", every_s: float = 5.0, stream: TextIO | None = None
    ) -> None:
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.enabled = is_main_process()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = self._shown = time.monotonic()

    def _line(self) -> str:
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = self.done / self.total if self.total else 1.0
        left = (self.total - self.done) / rate if rate > 0 else math.nan
        eta = f", about {left:.0f} s left" if math.isfinite(left) and self.done < self.total else ""
        return f"{self.label}: {self.done}/{self.total} {self.unit} ({share:.0%}), {rate:.0f} {self.unit}/s{eta}"

    def advance(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            bar = "#" * int(30 * self.done / max(self.total, 1))
            self.stream.write(f"\r[{bar:<30}] {self._line()}")
            self.stream.flush()
        elif now - self._shown >= self.every_s:
            self._shown = now
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def finish(self) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self._started
        prefix = "\r" if self.tty else ""
        self.stream.write(f"{prefix}{self.label}: {self.done} {self.unit} in {elapsed:.1f} s\n")
        self.stream.flush()
