"""Session fixtures: tiny synthetic datasets and tiny models trained ONCE by the real scripts, shared by tests.

Training runs `python -m training_scripts.train_*` as a subprocess (exactly what a job runs) with its own SQLite
MLflow store, so the fixtures are independent of the per-test stores. Tests must treat the folders as read-only
(copy them before changing anything).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Small enough for a few seconds of CPU per epoch, big enough for every split to see both classes.
TINY_IMAGE_SIZE = 32
TINY_RESNET_ARGS = [
    "--arch",
    "resnet18",
    "--image-size",
    str(TINY_IMAGE_SIZE),
    "--pretrained",
    "none",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--num-workers",
    "0",
    "--val-fraction",
    "0.25",
    "--test-fraction",
    "0.25",
]
TINY_LSTM_ARGS = [
    "--seq-len",
    "24",
    "--embed-dim",
    "16",
    "--hidden-size",
    "16",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--num-workers",
    "0",
    "--val-fraction",
    "0.2",
    "--test-fraction",
    "0.2",
]


def script_env(tracking_uri: str | None = None, **extra: str) -> dict[str, str]:
    """The environment a training subprocess gets: the repo importable, quiet threads, a given MLflow store."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")  # two cores shared by tests: no oversubscription
    env["PYTHONUNBUFFERED"] = "1"
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.update(extra)
    return env


def run_script(
    module: str, args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO_ROOT,
        env=env or script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    )


@pytest.fixture(scope="session")
def synth_image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training_scripts.synth import synth_images

    folder = tmp_path_factory.mktemp("synth") / "images"
    synth_images(folder, per_class=16, image_size=TINY_IMAGE_SIZE, imbalance=2.0, seed=0)
    return folder


@pytest.fixture(scope="session")
def synth_text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training_scripts.synth import synth_text

    path = tmp_path_factory.mktemp("synth") / "reviews.csv"
    synth_text(path, n=160, seed=0)
    return path


@pytest.fixture(scope="session")
def trained_resnet(tmp_path_factory: pytest.TempPathFactory, synth_image_dir: Path) -> Path:
    """A tiny ResNet-18 training output folder (model.onnx, labels.json, preprocess.json, ...)."""
    root = tmp_path_factory.mktemp("trained_resnet")
    out = root / "output"
    env = script_env(f"sqlite:///{root / 'mlflow.db'}")
    check_ok(
        run_script(
            "training_scripts.train_resnet",
            ["--data", str(synth_image_dir), "--output", str(out), *TINY_RESNET_ARGS],
            env=env,
        )
    )
    return out


@pytest.fixture(scope="session")
def trained_lstm(tmp_path_factory: pytest.TempPathFactory, synth_text_file: Path) -> Path:
    """A tiny LSTM training output folder (model.onnx, vocab.json, labels.json, preprocess.json, ...)."""
    root = tmp_path_factory.mktemp("trained_lstm")
    out = root / "output"
    env = script_env(f"sqlite:///{root / 'mlflow.db'}")
    check_ok(
        run_script(
            "training_scripts.train_lstm",
            ["--data", str(synth_text_file), "--output", str(out), *TINY_LSTM_ARGS],
            env=env,
        )
    )
    return out
