"""metrics.py against hand-computed cases and scikit-learn as an oracle; it must import no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

from training_scripts import metrics


def _one_hot_probs(pred: list[int], num_classes: int) -> np.ndarray:
    probs = np.full((len(pred), num_classes), 0.1 / max(num_classes - 1, 1))
    probs[np.arange(len(pred)), pred] = 0.9
    return probs


def test_hand_computed_binary_case() -> None:
    # true:  0 0 0 1 1 ; predicted: 0 1 0 1 0
    y_true = [0, 0, 0, 1, 1]
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.7, 0.3], [0.1, 0.9], [0.65, 0.35]])
    report = metrics.classification_report(y_true, probs, ["neg", "pos"], loss=0.5)
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["confusion_matrix"] == [[2, 1], [1, 1]]
    # neg: precision 2/3, recall 2/3 ; pos: precision 1/2, recall 1/2
    assert report["per_class"]["neg"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert report["per_class"]["pos"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert report["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # Positive scores 0.9, 0.35 vs negatives 0.2, 0.6, 0.3: pairs won 3 + 2 = 5 of 6.
    assert report["auroc"] == pytest.approx(5 / 6)
    assert report["loss"] == 0.5
    assert report["num_samples"] == 5


def test_auroc_counts_ties_as_half() -> None:
    assert metrics.binary_auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.binary_auroc([0, 1, 1], [0.2, 0.2, 0.9]) == pytest.approx(0.75)


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_matches_sklearn_on_random_data(num_classes: int) -> None:
    rng = np.random.default_rng(num_classes)
    n = 200
    y_true = rng.integers(0, num_classes, size=n)
    logits = rng.normal(size=(n, num_classes)) + np.eye(num_classes)[y_true] * 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # Coarse rounding makes ties in the scores, which the rank formula must handle like sklearn.
    probs = np.round(probs, 1)
    probs = probs / probs.sum(axis=1, keepdims=True)  # sklearn insists on rows summing to 1
    pred = probs.argmax(axis=1)
    names = [f"c{i}" for i in range(num_classes)]
    report = metrics.classification_report(y_true, probs, names)

    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, pred))
    assert report["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, pred))
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, pred, average="macro", zero_division=0))
    assert report["confusion_matrix"] == skm.confusion_matrix(y_true, pred, labels=range(num_classes)).tolist()
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, pred, labels=range(num_classes), zero_division=0
    )
    for index, name in enumerate(names):
        assert report["per_class"][name]["precision"] == pytest.approx(precision[index])
        assert report["per_class"][name]["recall"] == pytest.approx(recall[index])
        assert report["per_class"][name]["f1"] == pytest.approx(f1[index])
        assert report["per_class"][name]["support"] == support[index]
    if num_classes == 2:
        expected_auc = skm.roc_auc_score(y_true, probs[:, 1])
    else:
        expected_auc = skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro")
    assert report["auroc"] == pytest.approx(expected_auc)


def test_absent_class_gives_no_auroc_and_is_left_out_of_macro_scores() -> None:
    y_true = [0, 0, 1, 1]  # class 2 never occurs and is never predicted
    probs = _one_hot_probs([0, 1, 1, 1], 3)
    report = metrics.classification_report(y_true, probs, ["a", "b", "c"])
    assert report["auroc"] is None
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    pred = probs.argmax(axis=1)
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, pred, average="macro", zero_division=0))
    assert report["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)


def test_single_class_binary_auroc_is_none() -> None:
    assert metrics.auroc([1, 1, 1], _one_hot_probs([1, 0, 1], 2)) is None


def test_report_is_plain_json() -> None:
    import json

    report = metrics.classification_report([0, 1, 2], _one_hot_probs([0, 1, 1], 3), ["x", "y", "z"], loss=1.25)
    assert json.loads(json.dumps(report)) == report


@pytest.mark.parametrize(
    ("y_true", "probs", "names", "message"),
    [
        ([0, 1], np.ones((3, 2)) / 2, ["a", "b"], "2 labels but 3 rows"),
        ([0, 5], np.ones((2, 2)) / 2, ["a", "b"], "label 5 is outside 0..1"),
        ([0, 1], np.ones((2, 2)) / 2, ["a"], "1 class names but the probabilities have 2 columns"),
        ([], np.ones((0, 2)), ["a", "b"], "empty"),
    ],
)
def test_bad_inputs_name_the_problem(y_true: list[int], probs: np.ndarray, names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.classification_report(y_true, probs, names)


def test_imports_no_torch() -> None:
    code = "import sys, training_scripts.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
