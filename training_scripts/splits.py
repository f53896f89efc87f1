"""Stratified, machine-independent train/validation/test splits, and the label checks every dataset needs.

Torch-free (numpy only). The shuffling uses numpy's legacy RandomState, whose stream numpy keeps frozen across
versions and platforms, and never Python's hash(), so the same labels and seed give the same split anywhere.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


class DatasetError(ValueError):
    """A dataset that cannot be trained on as it is: what was wrong (with names and counts) and what to do."""


@dataclass(frozen=True)
class Split:
    """Sample indices per subset, each list sorted ascending (shuffling for training is the loader's job)."""

    train: list[int]
    val: list[int]
    test: list[int]


def check_class_counts(label_ids: Sequence[int], classes: Sequence[str], source: str = "dataset") -> list[int]:
    """Samples per class; raises DatasetError when there are no samples, a class has none, or only one class.

    `label_ids` index into `classes`. Returns the count for each class, in `classes` order.
    """
    if len(label_ids) == 0:
        raise DatasetError(f"{source} has no usable samples")
    counts = [0] * len(classes)
    for label in label_ids:
        if not 0 <= label < len(classes):
            raise DatasetError(f"{source}: label id {label} is out of range for {len(classes)} classes")
        counts[label] += 1
    if len(classes) < 2:
        raise DatasetError(
            f"{source} has only one class ({', '.join(map(repr, classes))}); a classifier needs at least two"
        )
    empty = [name for name, count in zip(classes, counts) if count == 0]
    if empty:
        raise DatasetError(
            f"{source}: class(es) {', '.join(map(repr, empty))} have no samples; add samples or remove the class"
        )
    return counts


def _quotas(sizes: list[int], capacity: list[int], fraction: float, total: int, name: str) -> list[int]:
    """Split round(total * fraction) samples (at least 1) across classes in proportion to their sizes.

    Largest-remainder rounding keeps the subset's overall size right and each class's share within one sample
    of proportional; `capacity` caps what a class may give up (each class keeps at least one training sample).
    """
    if fraction == 0:
        return [0] * len(sizes)
    target = max(1, round(total * fraction))
    if target > sum(capacity):
        raise DatasetError(
            f"a {name} fraction of {fraction} needs {target} of {total} samples, but only {sum(capacity)} can be "
            f"taken while keeping a training sample in every class; lower the fraction or add data"
        )
    exact = [size * target / total for size in sizes]
    quota = [min(int(value), cap) for value, cap in zip(exact, capacity)]
    # Hand out the rest by largest remainder; ties go to the earlier class so the result is deterministic.
    order = sorted(range(len(sizes)), key=lambda c: (-(exact[c] - int(exact[c])), c))
    while sum(quota) < target:
        for c in order:
            if sum(quota) == target:
                break
            if quota[c] < capacity[c]:
                quota[c] += 1
    return quota


def split_indices(labels: Sequence[Hashable], val_fraction: float, test_fraction: float = 0.0, seed: int = 0) -> Split:
    """Stratified split: each class is shuffled with `seed` and divided in the requested proportions.

    A fraction of 0 gives an empty subset; a positive fraction gives at least one sample. Every class keeps at
    least one training sample (a class with a single sample goes to train). Raises DatasetError when the
    fractions are out of range or a requested subset cannot get a sample.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise DatasetError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError(
            f"val_fraction + test_fraction must be < 1 to leave training data, got {val_fraction} + {test_fraction}"
        )
    if len(labels) == 0:
        raise DatasetError("cannot split an empty dataset")

    # Classes in order of first appearance: deterministic without requiring the labels to be sortable.
    members: dict[Hashable, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(label, []).append(index)
    groups = list(members.values())
    sizes = [len(group) for group in groups]
    total = len(labels)

    capacity = [size - 1 for size in sizes]
    test_quota = _quotas(sizes, capacity, test_fraction, total, "test")
    capacity = [cap - taken for cap, taken in zip(capacity, test_quota)]
    val_quota = _quotas(sizes, capacity, val_fraction, total, "validation")

    rng = np.random.RandomState(seed)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for group, n_test, n_val in zip(groups, test_quota, val_quota):
        shuffled = [group[i] for i in rng.permutation(len(group))]
        test.extend(shuffled[:n_test])
        val.extend(shuffled[n_test : n_test + n_val])
        train.extend(shuffled[n_test + n_val :])
    return Split(train=sorted(train), val=sorted(val), test=sorted(test))
