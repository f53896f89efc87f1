"""Preemption and data parallelism of the real scripts: SIGKILL or SIGTERM mid-epoch then resume; torchrun x2."""

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
# No periodic mid-epoch checkpoint: the only one mid-epoch is the one a graceful stop writes.
GRACEFUL_ARGS = [*TINY_LSTM_ARGS, "--batch-size", "4", "--checkpoint-every-steps", "0", "--log-every-steps", "1"]


def _metrics(out: Path) -> dict[str, object]:
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def reference_metrics(tmp_path_factory: pytest.TempPathFactory, synth_text_file: Path) -> dict[str, object]:
    """The uninterrupted run every interrupted one must match (checkpoint frequency does not change training)."""
    folder = tmp_path_factory.mktemp("reference")
    check_ok(
        run_script(
            "training_scripts.train_lstm",
            ["--data", str(synth_text_file), "--output", str(folder / "out"), *RESUME_ARGS],
            env=script_env(f"sqlite:///{folder / 'reference.db'}"),
        )
    )
    return _metrics(folder / "out")


def _signal_at_step(
    cmd: list[str], env: dict[str, str], signum: signal.Signals, *, epoch: int, step: int
) -> tuple[int, str]:
    """Start `cmd`, send `signum` as soon as it reports optimizer step `step` of `epoch`; (exit status, output)."""
    lines: list[str] = []
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + 240
    for line in process.stdout:
        lines.append(line)
        event = parse_line(line)
        if event is not None and event["event"] == "step" and (event["epoch"], event["step"]) == (epoch, step):
            process.send_signal(signum)
            break
        assert time.monotonic() < deadline, "training never reached the step to signal at"
    rest, _ = process.communicate(timeout=60)
    return process.returncode, "".join(lines) + rest


def _resume(cmd: list[str], env: dict[str, str]) -> tuple[int, int, list[int]]:
    """Run `cmd` again to the end; the (epoch, step) it said it resumed at, and the epochs it then trained."""
    resumed = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    check_ok(resumed)
    where = re.search(r"resuming from checkpoint \S+ at epoch (\d+), step (\d+)", resumed.stdout)
    assert where is not None, resumed.stdout[-2000:]
    events = [e for line in resumed.stdout.splitlines() if (e := parse_line(line))]
    return int(where[1]), int(where[2]), [e["epoch"] for e in events if e["event"] == "epoch"]


def _assert_same_metrics(actual: dict[str, object], expected: dict[str, object]) -> None:
    for split in ("validation", "test"):
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "confusion_matrix"):
            assert actual[split][key] == expected[split][key], (split, key)  # type: ignore[index]
        assert actual[split]["loss"] == pytest.approx(expected[split]["loss"], rel=1e-6)  # type: ignore[index]


def _only_run(tracking_uri: str, experiment: str) -> object:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, "the resumed process must continue the interrupted process's MLflow run"
    return runs[0]


def _train_cmd(data: Path, out: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "training_scripts.train_lstm", "--data", str(data), "--output", str(out), *args]


def test_sigkill_mid_epoch_then_restart_resumes_and_matches_an_uninterrupted_run(
    tmp_path: Path, synth_text_file: Path, mlflow_store: str, reference_metrics: dict[str, object]
) -> None:
    env = script_env(mlflow_store, MLFLOW_EXPERIMENT_NAME="resume-check")
    out = tmp_path / "interrupted"
    cmd = _train_cmd(synth_text_file, out, RESUME_ARGS)
    status, output = _signal_at_step(cmd, env, signal.SIGKILL, epoch=2, step=3)
    assert status == -signal.SIGKILL, output[-2000:]
    assert not (out / "metrics.json").exists()

    epoch, step, trained = _resume(cmd, env)
    # The kill lands just before or a step or two after the checkpoint of the step it reported: mid-epoch.
    assert epoch == 2 and 1 <= step < STEPS_PER_EPOCH, (epoch, step)
    assert trained == [2], "the resumed run must not redo epoch 1"
    _assert_same_metrics(_metrics(out), reference_metrics)

    from mlflow.tracking import MlflowClient

    run = _only_run(mlflow_store, "resume-check")
    history = MlflowClient(mlflow_store).get_metric_history(run.info.run_id, "val_loss")  # type: ignore[attr-defined]
    assert [m.step for m in history] == [1, 2]


def test_sigterm_mid_epoch_checkpoints_the_step_it_stops_at_and_resumes_from_there(
    tmp_path: Path, synth_text_file: Path, mlflow_store: str, reference_metrics: dict[str, object]
) -> None:
    env = script_env(mlflow_store, MLFLOW_EXPERIMENT_NAME="graceful")
    out = tmp_path / "interrupted"
    cmd = _train_cmd(synth_text_file, out, GRACEFUL_ARGS)
    # Signalled in epoch 1, so however far a busy machine lets it run on, it stops with training left to do.
    status, output = _signal_at_step(cmd, env, signal.SIGTERM, epoch=1, step=3)
    assert status == 128 + signal.SIGTERM, output[-2000:]
    stopped = re.search(r"stopped by SIGTERM (?:at epoch (\d+), step (\d+)|after epoch (\d+)); checkpoint", output)
    assert stopped is not None, output[-2000:]
    stop_point = (int(stopped[1]), int(stopped[2])) if stopped[1] else (int(stopped[3]) + 1, 0)
    assert not (out / "metrics.json").exists()
    assert _only_run(mlflow_store, "graceful").info.status == "KILLED"  # type: ignore[attr-defined]

    epoch, step, trained = _resume(cmd, env)
    # Without periodic step checkpoints, resuming at exactly that step proves the stop wrote a checkpoint there.
    assert (epoch, step) == stop_point, (stopped[0], epoch, step)
    assert trained == list(range(epoch, 3)), "the resumed run must not redo a finished epoch"
    _assert_same_metrics(_metrics(out), reference_metrics)
    assert _only_run(mlflow_store, "graceful").info.status == "FINISHED"  # type: ignore[attr-defined]


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
