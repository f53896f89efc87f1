"""ResumableSampler: determinism, DDP sharding and padding, oversampling balance, mid-epoch skip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from training_scripts.sampling import ResumableSampler, balancing_weights, class_counts


def test_order_is_a_pure_function_of_seed_and_epoch() -> None:
    a = ResumableSampler(50, seed=3)
    b = ResumableSampler(50, seed=3)
    torch.manual_seed(123)  # the global RNGs play no part
    np.random.seed(9)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    assert sorted(a) == list(range(50))
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(ResumableSampler(50, seed=4)) != list(ResumableSampler(50, seed=3))


def test_no_shuffle_keeps_dataset_order() -> None:
    assert list(ResumableSampler(7, shuffle=False)) == list(range(7))


@pytest.mark.parametrize(("num_samples", "world_size"), [(10, 2), (11, 2), (10, 3), (2, 4)])
def test_shards_are_equal_disjoint_and_cover_the_dataset(num_samples: int, world_size: int) -> None:
    shards = []
    for rank in range(world_size):
        sampler = ResumableSampler(num_samples, num_replicas=world_size, rank=rank, seed=1)
        sampler.set_epoch(5)
        shards.append(list(sampler))
    assert len({len(shard) for shard in shards}) == 1
    assert len(shards[0]) == len(ResumableSampler(num_samples, num_replicas=world_size, rank=0))
    everything = [index for shard in shards for index in shard]
    assert set(everything) == set(range(num_samples))
    assert len(everything) - num_samples == (-num_samples) % world_size  # only the padding repeats


def test_unshuffled_shards_interleave_back_into_dataset_order() -> None:
    world_size, n = 3, 10
    shards = [list(ResumableSampler(n, num_replicas=world_size, rank=r, shuffle=False)) for r in range(world_size)]
    interleaved = [shards[r][j] for j in range(len(shards[0])) for r in range(world_size)]
    assert interleaved[:n] == list(range(n))


def test_start_index_skips_exactly_the_batches_already_seen() -> None:
    full = ResumableSampler(23, num_replicas=2, rank=1, seed=7)
    full.set_epoch(4)
    resumed = ResumableSampler(23, num_replicas=2, rank=1, seed=7)
    batch_size, batches_done = 4, 2
    resumed.set_epoch(4, start_index=batch_size * batches_done)
    assert list(resumed) == list(full)[batch_size * batches_done :]
    assert len(resumed) == len(full) - batch_size * batches_done

    dataset = TensorDataset(torch.arange(23))
    full_batches = [b[0].tolist() for b in DataLoader(dataset, batch_size=batch_size, sampler=full)]
    resumed_batches = [b[0].tolist() for b in DataLoader(dataset, batch_size=batch_size, sampler=resumed)]
    assert resumed_batches == full_batches[batches_done:]
    resumed.set_epoch(5)
    assert len(resumed) == len(full)


def test_start_index_out_of_range_is_rejected() -> None:
    sampler = ResumableSampler(10, num_replicas=2)
    with pytest.raises(ValueError, match=r"start_index 6 is outside 0\.\.5"):
        sampler.set_epoch(0, start_index=6)


def test_oversampling_balances_classes_deterministically() -> None:
    labels = np.array([0] * 900 + [1] * 100)
    weights = balancing_weights(labels, 2)
    assert weights == pytest.approx([1000 / (2 * 900), 1000 / (2 * 100)])
    sampler = ResumableSampler(1000, seed=0, labels=labels, class_weights=weights)
    sampler.set_epoch(1)
    drawn = list(sampler)
    assert len(drawn) == 1000
    minority_share = float(np.mean(labels[drawn] == 1))
    assert 0.45 < minority_share < 0.55  # vs 0.10 without oversampling
    again = ResumableSampler(1000, seed=0, labels=labels, class_weights=weights)
    again.set_epoch(1)
    assert list(again) == drawn
    again.set_epoch(2)
    assert list(again) != drawn


def test_oversampling_shards_across_ranks() -> None:
    labels = [0, 0, 0, 0, 0, 0, 1]
    weights = balancing_weights(labels, 2)
    shards = [list(ResumableSampler(7, num_replicas=2, rank=r, labels=labels, class_weights=weights)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 4


def test_class_counts_and_missing_class_weight() -> None:
    assert class_counts([0, 2, 2], 3).tolist() == [1, 0, 2]
    assert balancing_weights([0, 2, 2], 3).tolist() == pytest.approx([1.0, 0.0, 0.5])
    with pytest.raises(ValueError, match=r"label 3 is outside 0\.\.2"):
        class_counts([0, 3], 3)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"rank 2 is outside 0\.\.1"):
        ResumableSampler(5, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="needs the labels"):
        ResumableSampler(5, class_weights=[1.0])
    with pytest.raises(ValueError, match="3 labels for 5 samples"):
        ResumableSampler(5, labels=[0, 1, 0], class_weights=[1.0, 1.0])
