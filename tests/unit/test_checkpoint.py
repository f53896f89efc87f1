"""Checkpoints: atomic writes, weights_only loading, skipping a corrupt newest file, retention, RNG round trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from training_scripts import checkpoint, progress
from training_scripts.checkpoint import CheckpointManager, latest_valid_checkpoint


def _state(step: int, best: str | None = None) -> dict[str, object]:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "global_step": step,
        "rng": checkpoint.capture_rng_state(),
        "history": [{"epoch": 1, "val_loss": 0.5, "val_auroc": None}],
        "best_weights_file": best,
        "mlflow_run_id": "abc",
    }


def test_saved_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path)
    path = manager.save(_state(5), epoch=1, global_step=5)
    assert path == tmp_path / "ckpt-e0001-s00000005.pt"
    loaded = torch.load(path, weights_only=True)
    assert loaded["global_step"] == 5
    assert loaded["format_version"] == checkpoint.FORMAT_VERSION
    assert isinstance(loaded["rng"]["numpy"]["keys"], torch.Tensor)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_rng_state_round_trip() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's legacy state
    state = checkpoint.capture_rng_state()
    expected = (random.random(), np.random.rand(), np.random.normal(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    checkpoint.restore_rng_state(state)
    assert (random.random(), np.random.rand(), np.random.normal(), torch.rand(1).item()) == expected


def test_truncated_newest_checkpoint_is_skipped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manager = CheckpointManager(tmp_path, keep=3)
    manager.save(_state(1), epoch=1, global_step=1)
    newest = manager.save(_state(2), epoch=1, global_step=2)
    assert newest is not None
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    capsys.readouterr()

    found = latest_valid_checkpoint(tmp_path)

    assert found is not None
    assert found.path.name == "ckpt-e0001-s00000001.pt"
    assert found.state["global_step"] == 1
    event = progress.parse_line(capsys.readouterr().out.strip())
    assert event is not None and event["event"] == "warning"
    assert str(newest) in event["message"]


def test_no_checkpoint_gives_none(tmp_path: Path) -> None:
    assert latest_valid_checkpoint(tmp_path) is None
    assert latest_valid_checkpoint(tmp_path / "missing") is None


def test_retention_keeps_the_last_k_and_the_best_files_they_reference(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=2)
    weights = torch.nn.Linear(3, 2).state_dict()
    best1 = manager.save_best_weights(weights, epoch=1)
    manager.save(_state(10, best1), epoch=1, global_step=10)
    best2 = manager.save_best_weights(weights, epoch=2)
    manager.save(_state(20, best2), epoch=2, global_step=20)
    manager.save(_state(30, best2), epoch=3, global_step=30)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["best-e0002.pt", "ckpt-e0002-s00000020.pt", "ckpt-e0003-s00000030.pt"]
    best = torch.load(tmp_path / "best-e0002.pt", weights_only=True)
    assert set(best) == {"weight", "bias"}
    found = latest_valid_checkpoint(tmp_path)
    assert found is not None and found.best_weights_path == tmp_path / "best-e0002.pt"


def test_ordering_is_by_global_step_not_by_name_width(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=5)
    manager.save(_state(99), epoch=9, global_step=99)
    manager.save(_state(100), epoch=10, global_step=100)
    found = latest_valid_checkpoint(tmp_path)
    assert found is not None and found.state["global_step"] == 100


def test_a_failed_write_leaves_the_previous_files_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = CheckpointManager(tmp_path)
    manager.save(_state(1), epoch=1, global_step=1)
    before = sorted(tmp_path.iterdir())

    def dies_midway(obj: object, handle: object) -> None:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # e.g. the job is pre-empted

    monkeypatch.setattr(checkpoint.torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        manager.save(_state(2), epoch=1, global_step=2)
    assert sorted(tmp_path.iterdir()) == before


def test_leftover_temporary_files_are_removed_and_never_loaded(tmp_path: Path) -> None:
    (tmp_path / ".tmp-ckpt-e0001-s00000009.pt.abc").write_bytes(b"half")
    CheckpointManager(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_whose_best_file_is_gone_is_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manager = CheckpointManager(tmp_path, keep=3)
    manager.save(_state(1), epoch=1, global_step=1)
    manager.save(_state(2, "best-e0001.pt"), epoch=1, global_step=2)
    found = latest_valid_checkpoint(tmp_path)
    assert found is not None and found.state["global_step"] == 1
    assert "best-weights file best-e0001.pt is missing" in capsys.readouterr().out


def test_disabled_manager_writes_nothing(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "ckpt", enabled=False)
    assert manager.save(_state(1), epoch=1, global_step=1) is None
    assert manager.save_best_weights({}, epoch=1) is None
    assert not (tmp_path / "ckpt").exists()


def test_a_full_disk_stops_with_a_clear_error_and_the_last_good_checkpoint_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from training_scripts.training_errors import CheckpointWriteError

    manager = CheckpointManager(tmp_path)
    good = manager.save(_state(1), epoch=1, global_step=1)

    def disk_full(obj: object, handle: object) -> None:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint.torch, "save", disk_full)
        with pytest.raises(CheckpointWriteError) as caught:
            manager.save(_state(2), epoch=1, global_step=2)
    message = str(caught.value)
    assert "No space left on device" in message and str(good) in message and "--checkpoint-dir" in message
    assert caught.value.exit_code == 5
    resumed = latest_valid_checkpoint(tmp_path)
    assert resumed is not None and resumed.path == good and not list(tmp_path.glob(".tmp-*"))


def test_a_file_where_the_checkpoint_folder_should_be_is_a_clear_error(tmp_path: Path) -> None:
    from training_scripts.training_errors import CheckpointWriteError

    blocker = tmp_path / "checkpoints"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint .*checkpoints"):
        CheckpointManager(blocker / "run")
