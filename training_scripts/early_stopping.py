"""Early stopping and best-model selection: one test, ``val_loss < best_val_loss - min_delta``, and a patience."""

from __future__ import annotations

from typing import Any

from training_scripts.train_state import TrainState


def record_validation(state: TrainState, val_loss: float, epoch: int, report: dict[str, Any], min_delta: float) -> bool:
    """Count one epoch's validation loss in `state`; True when it is the new best (so its weights are kept).

    A NaN loss never improves; it counts as a bad epoch like any other.
    """
    if val_loss < state.best_val_loss - min_delta:
        state.best_val_loss = val_loss
        state.best_epoch = epoch
        state.best_report = report
        state.bad_epochs = 0
        return True
    state.bad_epochs += 1
    return False


def patience_exhausted(state: TrainState, patience: int) -> bool:
    """`patience` epochs in a row without improvement (patience 0: never)."""
    return patience > 0 and state.bad_epochs >= patience


def stop_reason(patience: int, min_delta: float) -> str:
    """The `early_stop` progress event's reason."""
    return f"val_loss did not improve by more than {min_delta} for {patience} epochs"
