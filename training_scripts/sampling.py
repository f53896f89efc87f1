"""A resumable, DDP-sharding, optionally class-balancing sampler whose order is a pure function of (seed, epoch).

`ResumableSampler` does what `torch.utils.data.DistributedSampler` does (shuffle with a seed, `set_epoch`, pad
the index list so that every rank gets the same number of samples, rank r takes every world_size-th index from r)
plus two things a resumed, imbalanced training needs:

- `set_epoch(epoch, start_index=k)` skips the first k samples of this rank's shard, so that a run resumed after
  `b` batches of an epoch continues with exactly the batches an uninterrupted run would have seen next
  (k = b * batch_size). The skip lasts until the next `set_epoch`.
- `class_weights`: draw `len(dataset)` indices with replacement, with probabilities proportional to the weight of
  each sample's class (`balancing_weights` gives inverse-frequency weights, so every class is drawn about equally
  often). The draw, too, depends only on (seed, epoch).

The padding is at the end of the global index list, so the strided shards interleave back into dataset order;
`distributed.gather_predictions` relies on that to drop the padded duplicates of an unshuffled evaluation set.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from torch.utils.data import Sampler


def class_counts(labels: Sequence[int] | npt.ArrayLike, num_classes: int) -> npt.NDArray[np.int64]:
    values = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(values) and (values.min() < 0 or values.max() >= num_classes):
        bad = int(values[(values < 0) | (values >= num_classes)][0])
        raise ValueError(f"label {bad} is outside 0..{num_classes - 1}: check the dataset's labels and class names")
    return np.bincount(values, minlength=num_classes).astype(np.int64)


def balancing_weights(labels: Sequence[int] | npt.ArrayLike, num_classes: int) -> npt.NDArray[np.float64]:
    """Inverse class frequency, N / (C * n_c), per class; 0 for a class with no samples (it can't be drawn)."""
    counts = class_counts(labels, num_classes).astype(np.float64)
    weights = np.zeros(num_classes, dtype=np.float64)
    present = counts > 0
    weights[present] = counts.sum() / (num_classes * counts[present])
    return weights


class ResumableSampler(Sampler[int]):
    """Shard `num_samples` dataset indices over `num_replicas` ranks, in an order fixed by (seed, epoch)."""

    def __init__(
        self,
        num_samples: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        labels: Sequence[int] | npt.ArrayLike | None = None,
        class_weights: Sequence[float] | npt.ArrayLike | None = None,
    ) -> None:
        if num_samples <= 0:
            raise ValueError(f"the dataset has {num_samples} samples; a sampler needs at least one")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.num_samples = num_samples
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.start_index = 0
        self._sample_probabilities: npt.NDArray[np.float64] | None = None
        if class_weights is not None:
            if labels is None:
                raise ValueError("class_weights needs the labels of the dataset's samples (labels=...)")
            label_array = np.asarray(labels, dtype=np.int64).reshape(-1)
            if len(label_array) != num_samples:
                raise ValueError(f"{len(label_array)} labels for {num_samples} samples: give one label per sample")
            per_sample = np.asarray(class_weights, dtype=np.float64)[label_array]
            if per_sample.sum() <= 0:
                raise ValueError("every sample has weight 0: check the class weights")
            self._sample_probabilities = per_sample / per_sample.sum()
        # Every rank yields the same count, as with DistributedSampler(drop_last=False).
        self.shard_size = math.ceil(num_samples / num_replicas)
        self.total_size = self.shard_size * num_replicas

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        """Choose the epoch's order; skip the first `start_index` samples of this rank's shard (mid-epoch resume)."""
        if not 0 <= start_index <= self.shard_size:
            raise ValueError(f"start_index {start_index} is outside 0..{self.shard_size} (this rank's shard size)")
        self.epoch = epoch
        self.start_index = start_index

    def global_order(self) -> npt.NDArray[np.int64]:
        """The epoch's full index list before sharding and padding (a pure function of seed and epoch)."""
        rng = np.random.Generator(np.random.PCG64([self.seed, self.epoch]))
        if self._sample_probabilities is not None:
            return rng.choice(self.num_samples, size=self.num_samples, replace=True, p=self._sample_probabilities)
        if self.shuffle:
            return rng.permutation(self.num_samples).astype(np.int64)
        return np.arange(self.num_samples, dtype=np.int64)

    def shard(self) -> npt.NDArray[np.int64]:
        """This rank's indices for the epoch, padding included, before the `start_index` skip."""
        order = self.global_order()
        padding = self.total_size - len(order)
        if padding:
            order = np.concatenate([order, np.resize(order, padding)])
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start_index :].tolist())

    def __len__(self) -> int:
        return self.shard_size - self.start_index
