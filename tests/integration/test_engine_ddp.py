"""engine.fit under `torchrun --nproc_per_node 2` (gloo on CPU): ranks agree, stop together, rank 0 alone writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from azure_dl.backends.local.process import run_command, torchrun_argv
from training_scripts import progress

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(out: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    argv = torchrun_argv(2, "tests.toy_training", ["--out", str(out), *args])
    log = out / "run.log"
    result = run_command(argv, cwd=REPO_ROOT, env=env, log_path=log, render=False)
    return result.returncode, log.read_text()


def test_two_ranks_agree_stop_together_and_only_rank_zero_checkpoints(tmp_path: Path) -> None:
    # patience 1 with a huge min_delta: epoch 1 improves on inf, epoch 2 cannot improve enough -> stop after 2.
    returncode, log = _run(tmp_path, "--epochs", "6", "--patience", "1", "--min-delta", "10")
    assert returncode == 0, log
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())

    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["stopped_early"] and rank1["stopped_early"]
    assert rank0["epochs_run"] == rank1["epochs_run"] == 2
    for key in ("validation", "test", "history", "best_epoch", "weights_sum"):
        assert rank0[key] == rank1[key], key
    # The whole validation and test sets were gathered once each: padding dropped.
    assert rank0["validation"]["num_samples"] == 21
    assert rank0["test"]["num_samples"] == 13

    assert rank1["checkpoint_writes"] == []
    assert any(name.startswith("ckpt-") for name in rank0["checkpoint_writes"])
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir() if path.name.startswith("ckpt-"))

    events = [event for event in map(progress.parse_line, log.splitlines()) if event is not None]
    starts = [event for event in events if event["event"] == "start"]
    assert starts == [
        {"event": "start", "task": "toy", "epochs": 6, "steps_per_epoch": 3, "world_size": 2, "device": "cpu"}
    ]  # one line, from rank 0 only
    assert [event["epoch"] for event in events if event["event"] == "epoch"] == [1, 2]
    assert [event["epoch"] for event in events if event["event"] == "early_stop"] == [2]

    # Started again, both ranks resume from rank 0's checkpoint and end with the same result.
    returncode, log = _run(tmp_path, "--epochs", "6", "--patience", "1", "--min-delta", "10")
    assert returncode == 0, log
    assert "resuming from checkpoint" in log
    again = json.loads((tmp_path / "rank1.json").read_text())
    assert again["validation"] == rank0["validation"] and again["epochs_run"] == 2
