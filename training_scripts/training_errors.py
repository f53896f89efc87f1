"""The failures training turns into a message and an exit code: NaN loss, a graceful stop, a foreign checkpoint."""

from __future__ import annotations

import signal
from pathlib import Path


class TrainingError(RuntimeError):
    """A training failure the script turns into a message and `exit_code` (no traceback needed)."""

    exit_code = 1


class NonFiniteLossError(TrainingError):
    exit_code = 3

    def __init__(self, value: float, epoch: int, step: int, global_step: int) -> None:
        self.value, self.epoch, self.step, self.global_step = value, epoch, step, global_step
        self.last_checkpoint: Path | None = None
        super().__init__(self._message())

    def _message(self) -> str:
        kept = f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint"
        return (
            f"training loss became {self.value} at epoch {self.epoch}, step {self.step} (global step "
            f"{self.global_step}); training stopped and {kept} was kept. Lower --lr, set --grad-clip, or turn off "
            "mixed precision, then run again."
        )

    def set_last_checkpoint(self, path: Path | None) -> None:
        self.last_checkpoint = path
        self.args = (self._message(),)


class TrainingInterrupted(TrainingError):
    """SIGTERM/SIGINT stopped training at a step boundary, after a checkpoint there (see interrupts.py)."""

    mlflow_status = "KILLED"  # not a failure: the same command resumes it into the same MLflow run

    def __init__(self, signum: int, epoch: int, step: int, checkpoint: Path | None) -> None:
        """`epoch` 1-based; `step` within it, 0 = stopped at the end of the epoch before (after its validation)."""
        self.exit_code = 128 + signum  # the shell's convention for "stopped by signal N": 143 SIGTERM, 130 SIGINT
        name = signal.Signals(signum).name
        where = f"at epoch {epoch}, step {step}" if step > 0 else f"after epoch {epoch - 1}"
        if checkpoint is not None:
            advice = f"checkpoint {checkpoint} written: run the same command again to resume from there"
        else:
            advice = "no checkpoint directory, so nothing was saved"
        super().__init__(f"stopped by {name} {where}; {advice}")


class CheckpointMismatchError(TrainingError):
    exit_code = 2


class CheckpointWriteError(TrainingError):
    """A checkpoint could not be written (disk full, read-only folder, a file where the folder should be).

    The write is atomic (checkpoint.atomic_save), so the checkpoints already there stay whole and the same command
    resumes from the newest once the cause is fixed; the message names it.
    """

    exit_code = 5

    def __init__(self, path: Path, error: OSError, last_good: Path | None) -> None:
        kept = f"the last good checkpoint, {last_good}, is kept" if last_good else "no earlier checkpoint exists"
        super().__init__(
            f"cannot write checkpoint {path}: {error.strerror or error}; training stopped and {kept}. Free space "
            "or make the folder writable (or pass --checkpoint-dir elsewhere), then run the same command to resume"
        )
