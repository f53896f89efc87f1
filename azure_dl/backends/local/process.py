"""Run a training command here, the way a job runs it in the cloud, with its output rendered live.

`run_command` starts the command in its own process group, streams its stdout and stderr line by line through
the progress renderer (azure_dl/progress.py) and into a log file, forwards Ctrl-C to the whole group (then
SIGTERM, then SIGKILL if it does not stop), and returns the exit code with the last progress event of each kind
(the `done` event says where the model, the MLflow run and the plots are). `torchrun_argv` builds the
`python -m torch.distributed.run` command for several processes on this machine. POSIX only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from azure_dl.progress import ProgressRenderer
from training_scripts.progress import parse_line

DEFAULT_INTERRUPT_GRACE_S = 10.0


@dataclass
class CommandResult:
    """`returncode` follows the shell: 128 + N when the process was killed by signal N (130 = Ctrl-C)."""

    returncode: int
    log_path: Path | None
    last_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def done(self) -> dict[str, Any] | None:
        """The script's last `done` event: output folder, MLflow run id and URI, headline metrics."""
        return self.last_events.get("done")

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def torchrun_argv(nproc: int, module: str, args: Sequence[str], *, python: str = sys.executable) -> list[str]:
    """`python -m torch.distributed.run --nproc_per_node N --standalone -m <module> <args>` (one machine)."""
    if nproc < 1:
        raise ValueError(f"nproc={nproc}: torchrun needs at least one process per node")
    return [python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone", "-m", module, *args]


def torchrun_wrap(argv: Sequence[str], nproc: int) -> list[str]:
    """Turn a single-process `python -m module ...` or `python script.py ...` argv into its torchrun form."""
    if len(argv) < 2:
        raise ValueError(f"cannot run {list(argv)} under torchrun: expected `python -m module ...` or `python script`")
    python, *rest = argv
    if rest[0] == "-m" and len(rest) >= 2:
        return torchrun_argv(nproc, rest[1], rest[2:], python=python)
    if rest[0].startswith("-"):
        raise ValueError(f"cannot run {list(argv)} under torchrun: interpreter option {rest[0]} before the script")
    if nproc < 1:
        raise ValueError(f"nproc={nproc}: torchrun needs at least one process per node")
    return [python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone", *rest]


class _Interrupter:
    """Signals while the child runs: Ctrl-C sends SIGINT to its group, then SIGTERM and SIGKILL after a grace period.

    A second Ctrl-C skips ahead to the next, stronger signal. A SIGTERM to us (`kill`, a CI runner's timeout, a
    container stopping) starts at SIGTERM: the child is in its own session and would otherwise outlive us.
    """

    def __init__(self, process: subprocess.Popen[bytes], grace_s: float) -> None:
        self.process = process
        self.grace_s = grace_s
        self.interrupted = False
        self._stage = 0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def _send(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
            os.killpg(self.process.pid, signum)

    def escalate(self) -> None:
        with self._lock:
            if self.process.poll() is not None:
                return
            stages = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
            if self._stage >= len(stages):
                return
            self._send(stages[self._stage])
            self._stage += 1
            if self._timer is not None:
                self._timer.cancel()
            if self._stage < len(stages):
                self._timer = threading.Timer(self.grace_s, self.escalate)
                self._timer.daemon = True
                self._timer.start()

    def kill_group(self) -> None:
        self._send(signal.SIGKILL)

    def on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True
        self.escalate()

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True
        with self._lock:
            self._stage = max(self._stage, 1)  # straight to SIGTERM: what we were sent is what the child gets
        self.escalate()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _normalise(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run_command(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path | None = None,
    render: bool = True,
    stream: TextIO | None = None,
    interrupt_grace_s: float = DEFAULT_INTERRUPT_GRACE_S,
) -> CommandResult:
    """Run `argv` in `cwd` with exactly `env` (plus PYTHONUNBUFFERED=1 unless set, so lines arrive as printed).

    `render=True` renders the output on `stream` (default stdout): a progress bar on a terminal, plain lines
    otherwise, other lines unchanged. `render=False` shows nothing (the log file and the events still fill).
    The log file (appended to; its folder is created) receives every line exactly as the command printed it.
    """
    child_env = dict(env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl-C reaches it only through us, torchrun workers too
        )
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"cannot start {argv[0]!r}: {exc.strerror}; is it installed and on PATH?") from exc
    interrupter = _Interrupter(process, interrupt_grace_s)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    if in_main_thread:
        signal.signal(signal.SIGINT, interrupter.on_sigint)
        signal.signal(signal.SIGTERM, interrupter.on_sigterm)
    renderer = ProgressRenderer(stream) if render else None
    last_events: dict[str, dict[str, Any]] = {}
    log = log_path.open("a", encoding="utf-8") if log_path is not None else None
    try:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            if log is not None:
                log.write(line if line.endswith("\n") else line + "\n")
                log.flush()
            event = renderer.feed(line) if renderer is not None else parse_line(line)
            if event is not None:
                last_events[event["event"]] = event
        returncode = process.wait()
    except BaseException:
        # Our side failed (or was stopped): do not leave the training running without anyone watching it.
        interrupter.kill_group()
        process.wait()
        raise
    finally:
        interrupter.cancel()
        if in_main_thread:
            # None: the previous handler was not set from Python; the signal's default is the sensible one then.
            defaults: dict[int, Callable[[int, FrameType | None], Any] | int] = {
                signal.SIGINT: signal.default_int_handler,
                signal.SIGTERM: signal.SIG_DFL,
            }
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler if handler is not None else defaults[signum])
        if renderer is not None:
            renderer.close()
        if log is not None:
            log.close()
        if process.stdout is not None:
            process.stdout.close()
    return CommandResult(
        returncode=_normalise(returncode),
        log_path=log_path,
        last_events=last_events,
        interrupted=interrupter.interrupted,
    )
