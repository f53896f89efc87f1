"""Graceful stop on SIGTERM / SIGINT while training: finish the current step, checkpoint, exit 128 + signal.

A preempted low-priority VM, a Kubernetes pod being evicted, `docker stop` and a Ctrl-C all ask a process to stop
with a signal before they kill it. Checkpoints every epoch and every N steps already make a hard kill safe; this
saves the steps since the last one. While `GracefulStop` is active, the first SIGTERM or SIGINT only sets
`requested`; the training loop (epoch.train_one_epoch) checks it at its next sync point, writes a checkpoint there
and stops. A second signal more than `DEBOUNCE_S` later stops at once (the default action of that signal): a
process group signal and torchrun's agent forwarding the same signal to its workers arrive within milliseconds,
and count as one.

DataLoader workers ignore both signals (`ignore_in_worker`, their worker_init_fn): they would otherwise die on a
signal sent to the whole process group and take the graceful stop down with them; they still exit with the main
process, which owns them.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType, TracebackType
from typing import Any

DEBOUNCE_S = 1.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop:
    """Context manager: while active, SIGTERM/SIGINT set `requested` instead of stopping the process.

    Inactive (a no-op) outside the main thread, where Python cannot install signal handlers.
    """

    def __init__(self, *, announce: bool = True, debounce_s: float = DEBOUNCE_S) -> None:
        self.announce = announce
        self.debounce_s = debounce_s
        self.requested: int = 0  # the first signal's number; 0 = no stop asked for
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if not self.requested:
            self.requested = signum
            self._first_at = now
            if self.announce:
                print(
                    f"received {signal.Signals(signum).name}: stopping after the current step with a checkpoint "
                    "(send it again to stop at once)",
                    flush=True,
                )
            return
        if now - self._first_at < self.debounce_s:
            return  # the same request, delivered twice (process group + torchrun's forwarding)
        self._restore()
        signal.raise_signal(signum)  # the signal's own default: KeyboardInterrupt for SIGINT, termination for SIGTERM

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._restore()


def ignore_in_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: leave SIGTERM/SIGINT to the main process (see the module docstring)."""
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
