"""Preemption and data parallelism of the real scripts: SIGKILL mid-epoch then resume; two processes under torchrun."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.trained import REPO_ROOT, TINY_LSTM_ARGS, check_ok, run_script, script_env
from training_scripts.progress import parse_line

pytestmark = pytest.mark.slow

# 96 training rows in batches of 4: two epochs of 24 steps, a checkpoint after every step, so a kill right after
# an early step of the second epoch lands mid-epoch with a wide margin.
STEPS_PER_EPOCH = 24
RESUME_ARGS = [*TINY_LSTM_ARGS, "--batch-size", "4", "--checkpoint-every-steps", "1", "--log-every-steps", "1"]


def _metrics(out: Path) -> dict[str, object]:
    return json.loads((out / "metrics.json").read_text())


def _kill_at_step(cmd: list[str], env: dict[str, str], *, epoch: int, step: int) -> list[str]:
    """Start `cmd` and SIGKILL it as soon as it reports optimizer step `step` of `epoch` (a real preemption)."""
    lines: list[str] = []
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + 240
    for line in process.stdout:
        lines.append(line)
        event = parse_line(line)
        if event is not None and event["event"] == "step" and (event["epoch"], event["step"]) == (epoch, step):
            process.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "training never reached the step to kill at"
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "".join(lines[-20:])
    return lines


def test_sigkill_mid_epoch_then_restart_resumes_and_matches_an_uninterrupted_run(
    tmp_path: Path, synth_text_file: Path, mlflow_store: str
) -> None:
    env = script_env(mlflow_store, MLFLOW_EXPERIMENT_NAME="resume-check")
    reference = tmp_path / "reference"
    check_ok(
        run_script(
            "training_scripts.train_lstm",
            ["--data", str(synth_text_file), "--output", str(reference), *RESUME_ARGS],
            env=script_env(f"sqlite:///{tmp_path / 'reference.db'}"),
        )
    )

    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "training_scripts.train_lstm", "--data", str(synth_text_file), "--output", str(out)]
    cmd += RESUME_ARGS
    _kill_at_step(cmd, env, epoch=2, step=3)
    assert not (out / "metrics.json").exists()

    resumed = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    check_ok(resumed)
    # The kill lands just before or a step or two after the checkpoint of the step it reported: mid-epoch.
    where = re.search(r"resuming from checkpoint \S+ at epoch (\d+), step (\d+)", resumed.stdout)
    assert where is not None, resumed.stdout[-2000:]
    assert int(where[1]) == 2 and 1 <= int(where[2]) < STEPS_PER_EPOCH, where[0]
    events = [e for line in resumed.stdout.splitlines() if (e := parse_line(line))]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [2], "the resumed run must not redo epoch 1"

    expected, actual = _metrics(reference), _metrics(out)
    for split in ("validation", "test"):
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "confusion_matrix"):
            assert actual[split][key] == expected[split][key], (split, key)  # type: ignore[index]
        assert actual[split]["loss"] == pytest.approx(expected[split]["loss"], rel=1e-6)  # type: ignore[index]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("resume-check").experiment_id])
    assert len(runs) == 1, "the resumed process must continue the interrupted process's MLflow run"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_loss")] == [1, 2]


def test_two_processes_under_torchrun_train_one_model(tmp_path: Path, synth_text_file: Path, mlflow_store: str) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "training_scripts.train_lstm", "--data", str(synth_text_file), "--output", str(out), *TINY_LSTM_ARGS]
    result = subprocess.run(
        cmd, cwd=REPO_ROOT, env=script_env(mlflow_store), capture_output=True, text=True, timeout=300
    )
    check_ok(result)
    events = [e for line in result.stdout.splitlines() if (e := parse_line(line))]
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2, "only rank 0 reports progress"
    assert len([e for e in events if e["event"] == "done"]) == 1
    assert (out / "model.onnx").is_file() and json.loads((out / "export.json").read_text())["passed"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("azure-dl-lstm").experiment_id])
    assert len(runs) == 1 and runs[0].data.params["world_size"] == "2", "only rank 0 tracks"
