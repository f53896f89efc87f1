"""Classification metrics from labels and predicted probabilities, in numpy only (no torch, no sklearn).

Training, evaluation components and pipeline steps all reuse these, so `metrics.json` means the same thing
wherever it was written. Conventions (the same as scikit-learn's defaults, which the tests use as an oracle):

- the prediction is the argmax of the probabilities;
- precision, recall or F1 whose denominator is zero count as 0.0;
- `macro_f1` averages over the classes that occur in `y_true` or in the predictions (an absent class that is
  never predicted has no F1 to average); `balanced_accuracy` is the mean recall over the classes in `y_true`;
- `auroc`: binary problems score the class at index 1 as positive; multiclass problems use the macro average of
  one-vs-rest AUROCs. It is undefined, and returned as None, when any class is missing from `y_true`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _as_inputs(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
    labels = np.asarray(y_true, dtype=np.int64).reshape(-1)
    probabilities = np.asarray(probs, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be a 2-D array [N, C], got shape {probabilities.shape}")
    if len(labels) != len(probabilities):
        raise ValueError(f"{len(labels)} labels but {len(probabilities)} rows of probabilities: pass one row per label")
    if len(labels) == 0:
        raise ValueError("no samples to compute metrics on: the evaluation set is empty")
    num_classes = probabilities.shape[1]
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise ValueError(
            f"label {int(bad[0])} is outside 0..{num_classes - 1} (the probabilities have {num_classes} columns)"
        )
    return labels, probabilities


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, num_classes: int) -> IntArray:
    """Counts [C, C]: row = true class, column = predicted class."""
    true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def _safe_divide(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def per_class_scores(matrix: IntArray) -> dict[str, FloatArray]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    counts = matrix.astype(np.float64)
    true_positive = np.diag(counts)
    predicted = counts.sum(axis=0)
    support = counts.sum(axis=1)
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "predicted": predicted}


def accuracy(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> float:
    labels, probabilities = _as_inputs(y_true, probs)
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def balanced_accuracy(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> float:
    labels, probabilities = _as_inputs(y_true, probs)
    scores = per_class_scores(confusion_matrix(labels, probabilities.argmax(axis=1), probabilities.shape[1]))
    present = scores["support"] > 0
    return float(scores["recall"][present].mean())


def macro_f1(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> float:
    labels, probabilities = _as_inputs(y_true, probs)
    scores = per_class_scores(confusion_matrix(labels, probabilities.argmax(axis=1), probabilities.shape[1]))
    seen = (scores["support"] > 0) | (scores["predicted"] > 0)
    return float(scores["f1"][seen].mean())


def _average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks with ties sharing their average rank (what the Mann-Whitney form of AUROC needs)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Boundaries of runs of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def binary_auroc(is_positive: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Area under the ROC curve; None when only one of the two classes is present."""
    positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(values)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> float | None:
    """Binary: class 1 is positive. Multiclass: macro one-vs-rest. None when a class is absent from y_true."""
    labels, probabilities = _as_inputs(y_true, probs)
    num_classes = probabilities.shape[1]
    if num_classes < 2:
        return None
    if num_classes == 2:
        return binary_auroc(labels == 1, probabilities[:, 1])
    per_class = [binary_auroc(labels == c, probabilities[:, c]) for c in range(num_classes)]
    if any(value is None for value in per_class):
        return None
    return float(np.mean([value for value in per_class if value is not None]))


def classification_report(
    y_true: Sequence[int] | npt.ArrayLike,
    probs: npt.ArrayLike,
    class_names: Sequence[str],
    *,
    loss: float | None = None,
) -> dict[str, Any]:
    """One metrics dict of `metrics.json` (docs/architecture.md): plain Python numbers, lists and None.

    Keys: loss (what the caller passes, e.g. the mean cross-entropy), accuracy, balanced_accuracy, macro_f1, auroc,
    per_class {name: {precision, recall, f1, support}}, confusion_matrix (rows = true, columns = predicted,
    in the order of `class_names`), num_samples.
    """
    labels, probabilities = _as_inputs(y_true, probs)
    num_classes = probabilities.shape[1]
    if len(class_names) != num_classes:
        raise ValueError(
            f"{len(class_names)} class names but the probabilities have {num_classes} columns: "
            "pass one name per logit, in logit order"
        )
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), num_classes)
    scores = per_class_scores(matrix)
    present = scores["support"] > 0
    seen = present | (scores["predicted"] > 0)
    return {
        "loss": None if loss is None else float(loss),
        "accuracy": float(np.trace(matrix) / len(labels)),
        "balanced_accuracy": float(scores["recall"][present].mean()),
        "macro_f1": float(scores["f1"][seen].mean()),
        "auroc": auroc(labels, probabilities),
        "per_class": {
            str(name): {
                "precision": float(scores["precision"][index]),
                "recall": float(scores["recall"][index]),
                "f1": float(scores["f1"][index]),
                "support": int(scores["support"][index]),
            }
            for index, name in enumerate(class_names)
        },
        "confusion_matrix": matrix.tolist(),
        "num_samples": len(labels),
    }
