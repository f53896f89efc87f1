"""Renders a training script's output: progress lines become a progress bar or short summaries, the rest passes.

The format of the lines is documented in `training_scripts/progress.py` (the one place it is defined). On a
terminal a rich progress bar shows the epoch, the step, the loss and samples/s; anywhere else (CI, a pipe, a log
file) each event becomes one plain line, with step lines throttled and every epoch line shown. Any line that is not
a progress line is written exactly as the script printed it. Imports no torch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from training_scripts.progress import parse_line

__all__ = ["ProgressRenderer", "describe"]


def _number(value: Any, spec: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, spec)
    return "n/a"


def _describe_step(event: dict[str, Any]) -> str:
    return (
        f"epoch {event.get('epoch')}/{event.get('epochs')} step {event.get('step')}/{event.get('steps')} "
        f"loss {_number(event.get('loss'), '.4f')} lr {_number(event.get('lr'), '.2e')} "
        f"{_number(event.get('samples_per_s'), '.1f')} samples/s"
    )


def _describe_epoch(event: dict[str, Any]) -> str:
    text = (
        f"epoch {event.get('epoch')}/{event.get('epochs')} train_loss {_number(event.get('train_loss'), '.4f')} "
        f"val_loss {_number(event.get('val_loss'), '.4f')} val_acc {_number(event.get('val_accuracy'), '.4f')} "
        f"val_macro_f1 {_number(event.get('val_macro_f1'), '.4f')} ({_number(event.get('seconds'), '.1f')}s)"
    )
    return text + (" *best*" if event.get("best") else "")


def _describe_done(event: dict[str, Any]) -> str:
    parts = [f"done: output {event.get('output')}"]
    if event.get("run_id"):
        parts.append(f"MLflow run {event.get('run_id')} at {event.get('tracking_uri')}")
    metrics = event.get("metrics") or {}
    if isinstance(metrics, dict) and metrics:
        parts.append(" ".join(f"{key} {_number(value, '.4f')}" for key, value in metrics.items()))
    return "; ".join(parts)


def describe(event: dict[str, Any]) -> str | None:
    """One human line for an event, or None for events that only change the renderer's state."""
    kind = event.get("event")
    if kind == "start":
        return (
            f"training {event.get('task')}: {event.get('epochs')} epochs x {event.get('steps_per_epoch')} steps "
            f"on {event.get('device')} (world size {event.get('world_size')})"
        )
    if kind == "resume":
        # The script prints this sentence itself; repeating it would show it twice.
        return None
    if kind == "step":
        return _describe_step(event)
    if kind == "epoch":
        return _describe_epoch(event)
    if kind == "early_stop":
        return f"early stopping at epoch {event.get('epoch')}: {event.get('reason')}"
    if kind == "artifact":
        return f"wrote {event.get('kind')}: {event.get('path')}"
    if kind == "done":
        return _describe_done(event)
    if kind == "warning":
        return f"warning: {event.get('message')}"
    fields = " ".join(f"{key}={value}" for key, value in event.items() if key != "event")
    return f"{kind}: {fields}".rstrip()


class ProgressRenderer:
    """Feed it the script's output line by line; `last_events` keeps the last event of each kind.

    `fancy=None` picks the progress bar when `stream` is a terminal. In plain mode a step line is shown at most
    once every `step_interval_s` seconds (the first one of each epoch always); every other event is shown.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        fancy: bool | None = None,
        step_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.fancy = self.stream.isatty() if fancy is None else fancy
        self.step_interval_s = step_interval_s
        self.last_events: dict[str, dict[str, Any]] = {}
        self._clock = clock
        self._last_step_shown: float | None = None
        self._step_epoch: Any = None
        self._bar: _RichBar | None = _RichBar(self.stream) if self.fancy else None

    def feed(self, line: str) -> dict[str, Any] | None:
        """Render one line (with or without its newline); returns the event when it was a progress line."""
        text = line.rstrip("\r\n")
        event = parse_line(text)
        if event is None:
            self._write_raw(text)
            return None
        self.last_events[event["event"]] = event
        if self._bar is not None:
            self._bar.handle(event)
        else:
            self._render_plain(event)
        return event

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_raw(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.out(text, highlight=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _render_plain(self, event: dict[str, Any]) -> None:
        if event["event"] == "step":
            now = self._clock()
            new_epoch = event.get("epoch") != self._step_epoch
            if (
                not new_epoch
                and self._last_step_shown is not None
                and now - self._last_step_shown < self.step_interval_s
            ):
                return
            self._last_step_shown = now
            self._step_epoch = event.get("epoch")
        text = describe(event)
        if text is not None:
            self.stream.write(text + "\n")
            self.stream.flush()


class _RichBar:
    """The terminal view: one bar for the steps of the current epoch; events other than steps print above it."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        # Forced: this view is only chosen for a terminal (or when the caller asks for it explicitly).
        self.console = Console(file=stream, highlight=False, force_terminal=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} samples/s"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task: Any = None
        self.epochs: Any = "?"
        self.progress.start()

    def _ensure_task(self, total: Any) -> None:
        if self.task is None:
            self.task = self.progress.add_task("training", total=total or None, loss="n/a", speed="n/a")

    def handle(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            self.epochs = event.get("epochs", "?")
            self._ensure_task(event.get("steps_per_epoch"))
            self.progress.update(self.task, description=f"epoch 1/{self.epochs}")
        elif kind == "step":
            self._ensure_task(event.get("steps"))
            self.progress.update(
                self.task,
                total=event.get("steps"),
                completed=event.get("step", 0),
                description=f"epoch {event.get('epoch')}/{event.get('epochs', self.epochs)}",
                loss=_number(event.get("loss"), ".4f"),
                speed=_number(event.get("samples_per_s"), ".1f"),
            )
        elif kind == "resume":
            self._ensure_task(None)
            self.progress.update(self.task, completed=event.get("step", 0), description=f"epoch {event.get('epoch')}")
        if kind != "step":
            text = describe(event)
            if text is not None:
                self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        if kind == "epoch" and self.task is not None:
            following = event.get("epoch", 0) + 1 if isinstance(event.get("epoch"), int) else "?"
            self.progress.update(self.task, completed=0, description=f"epoch {following}/{self.epochs}")

    def stop(self) -> None:
        self.progress.stop()
