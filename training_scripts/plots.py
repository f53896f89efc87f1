"""Training-curve and confusion-matrix PNGs (matplotlib's Agg canvas, imported lazily; no pyplot, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TRAINING_CURVES = "training_curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"


def _figure(width: float, height: float) -> Any:
    # Figure + Agg canvas instead of pyplot: no global backend switch, no GUI, safe in workers and threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _series(history: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float(row[key]) if isinstance(row.get(key), int | float) else float("nan") for row in history]


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Train/validation loss and validation accuracy / macro-F1 per epoch (rows of `FitResult.history`)."""
    if not history:
        raise ValueError("no epochs in the history: nothing to plot")
    epochs = [int(row["epoch"]) for row in history]
    figure = _figure(10, 4)
    loss_axes, score_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, _series(history, "train_loss"), marker="o", label="train loss")
    loss_axes.plot(epochs, _series(history, "val_loss"), marker="o", label="validation loss")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    score_axes.plot(epochs, _series(history, "val_accuracy"), marker="o", label="validation accuracy")
    score_axes.plot(epochs, _series(history, "val_macro_f1"), marker="o", label="validation macro-F1")
    score_axes.set(xlabel="epoch", ylabel="score", title="Validation", ylim=(0.0, 1.02))
    for axes in (loss_axes, score_axes):
        axes.legend()
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, *, title: str = "Confusion matrix"
) -> Path:
    """Counts (left) and rows normalised to recall (right); rows are true classes, columns predictions."""
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix of shape {counts.shape} does not match {len(class_names)} class names")
    row_sums = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    size = max(4.0, 0.6 * len(class_names) + 2.5)
    figure = _figure(2 * size, size)
    annotate = len(class_names) <= 20  # beyond that the numbers are unreadable anyway
    for axes, values, subtitle, fmt in (
        (figure.add_subplot(1, 2, 1), counts, "counts", ".0f"),
        (figure.add_subplot(1, 2, 2), normalised, "row-normalised", ".2f"),
    ):
        image = axes.imshow(values, cmap="Blues", vmin=0)
        figure.colorbar(image, ax=axes, shrink=0.8)
        ticks = range(len(class_names))
        axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
        axes.set_yticks(ticks, labels=class_names)
        axes.set(xlabel="predicted", ylabel="true", title=f"{title} ({subtitle})")
        if annotate:
            threshold = values.max() / 2 if values.max() > 0 else 1
            for row in ticks:
                for col in ticks:
                    colour = "white" if values[row, col] > threshold else "black"
                    axes.text(col, row, format(values[row, col], fmt), ha="center", va="center", color=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def write_plots(
    history: Sequence[Mapping[str, Any]], confusion: Sequence[Sequence[int]], class_names: Sequence[str], folder: Path
) -> list[Path]:
    """Both PNGs into `folder` (the output's `plots/`); returns their paths."""
    return [
        plot_training_curves(history, folder / TRAINING_CURVES),
        plot_confusion_matrix(confusion, class_names, folder / CONFUSION_MATRIX),
    ]
