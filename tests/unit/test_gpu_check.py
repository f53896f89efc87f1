"""The prepared GPU check (benchmarks/gpu_check): its --smoke run on the CPU, its results files, how it survives a
failing, slow or overrunning stage, its MFU arithmetic and device-side augmentation, and what it imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.gpu_check import device_loader, runner, sizes
from benchmarks.gpu_check.context import StageContext

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
MAKE_VARIABLES = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], float, Path]:
    out = tmp_path_factory.mktemp("gpu-check")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ENV,
        timeout=120,
    )
    return result, time.perf_counter() - started, out


@pytest.mark.slow
def test_smoke_run_passes_every_stage_within_60_s(smoke_run: tuple[Any, float, Path]) -> None:
    result, seconds, out = smoke_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert seconds < 60, f"--smoke took {seconds:.1f} s"
    report = json.loads((out / runner.JSON_NAME).read_text())
    assert report["finished"] is True and report["smoke"] is True
    assert report["order"] == [stage.name for stage in runner.STAGES]
    assert {name: record["status"] for name, record in report["stages"].items()} == {
        stage.name: "ok" for stage in runner.STAGES
    }
    stages = report["stages"]
    assert [row["batch_size"] for row in stages["resnet_eager"]["rows"]] == list(sizes.SMOKE.batch_sizes)
    assert all(row["images_per_s"] > 0 and row["mfu"] is None for row in stages["resnet_eager"]["rows"])
    assert stages["resnet_compiled"]["compile_backend"] == "aot_eager"
    # numpy and Pillow are here, so the project's own cache and TrainBatchTransform feed the step.
    assert stages["cache_loader"]["source"].startswith("training_scripts.image_cache memory map (8, 40, 40, 3)")
    assert stages["cache_loader"]["image_cache"].startswith("used: 8 synthetic 40 px PNGs")
    assert stages["cache_loader"]["train_images_per_s_fed"] > 0
    assert stages["lstm"]["samples_per_s"] > 0 and stages["fp16_grad_scaler"]["loss_finite"] is True
    assert stages["checkpoint_resume"]["writer"].startswith("training_scripts.checkpoint.CheckpointManager")
    assert stages["ddp_step"]["backend"] == "gloo" and stages["ddp_step"]["all_reduce_sum"] == 3.0
    assert report["forbidden_imports"] == []


@pytest.mark.slow
def test_smoke_run_writes_and_prints_the_markdown_table(smoke_run: tuple[Any, float, Path]) -> None:
    result, _, out = smoke_run
    table = (out / runner.MARKDOWN_NAME).read_text()
    assert table.startswith("## GPU check (smoke, CPU)")
    assert "| stage | check | status | s | result |" in table and "| batch | torch.compile |" in table
    for stage in runner.STAGES:
        assert f"| {stage.letter} | {stage.name} | ok |" in table
    assert table in result.stdout


def test_importing_the_check_pulls_in_no_torchvision_timm_mlflow_or_onnx() -> None:
    probe = (
        "import sys, benchmarks.gpu_check.runner\n"
        f"print(sorted(m for m in {runner.FORBIDDEN_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _boom(ctx: StageContext) -> dict[str, Any]:
    raise ValueError("planted failure")


def test_a_failing_stage_is_recorded_and_the_next_stage_still_runs(tmp_path: Path) -> None:
    def sees_itself_running(ctx: StageContext) -> dict[str, Any]:
        on_disk = json.loads((tmp_path / runner.JSON_NAME).read_text())
        return {"seen": on_disk["stages"]["probe"]["status"], "earlier": on_disk["stages"]["boom"]["status"]}

    stages = (runner.Stage("boom", "x", _boom, 5), runner.Stage("probe", "y", sees_itself_running, 5))
    data = runner.run(tmp_path, smoke=True, command="test", stages=stages)
    assert data["stages"]["boom"]["status"] == "failed"
    assert data["stages"]["boom"]["error"] == "ValueError: planted failure"
    # The JSON on disk said "running" during the stage, and already held the earlier stage's result.
    assert data["stages"]["probe"] | {"seconds": 0} == {
        "letter": "y",
        "status": "ok",
        "budget_s": pytest.approx(1.2, abs=0.2),  # 5 s x the smoke factor
        "seen": "running",
        "earlier": "failed",
        "seconds": 0,
    }
    assert json.loads((tmp_path / runner.JSON_NAME).read_text()) == data


def test_a_stage_is_not_started_when_the_run_has_too_little_time_left(tmp_path: Path) -> None:
    stages = (
        runner.Stage("slow", "x", lambda ctx: time.sleep(0.5) or {}, 5),
        runner.Stage("late", "y", _boom, 5),
    )
    data = runner.run(tmp_path, smoke=True, command="test", stages=stages, total_s=runner.MIN_STAGE_S + 0.2)
    assert data["stages"]["slow"]["status"] == "ok"
    assert data["stages"]["late"]["status"] == "skipped"
    assert data["stages"]["late"]["reason"].startswith("not started:")


def test_the_watchdog_ends_an_overrunning_stage_and_keeps_the_results(tmp_path: Path) -> None:
    code = (
        "import time\n"
        "from pathlib import Path\n"
        "from benchmarks.gpu_check import runner\n"
        "runner.WATCHDOG_GRACE_S = 0.5\n"
        "stages = (runner.Stage('quick', 'a', lambda ctx: {'x': 1}, 5),\n"
        "          runner.Stage('stuck', 'b', lambda ctx: time.sleep(60) or {}, 5),\n"
        "          runner.Stage('never', 'c', lambda ctx: {}, 5))\n"
        f"runner.run(Path({str(tmp_path)!r}), smoke=True, command='test', stages=stages, total_s=3)\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=ENV)
    assert time.perf_counter() - started < 30
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / runner.JSON_NAME).read_text())
    assert report["finished"] is True
    assert [report["stages"][name]["status"] for name in ("quick", "stuck", "never")] == ["ok", "timeout", "skipped"]
    assert "| b | stuck | timeout |" in (tmp_path / runner.MARKDOWN_NAME).read_text()


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("Tesla T4", None),
        ("NVIDIA H100", None),  # which H100 is unknown: no guess
        (None, None),
    ],
)
def test_peak_flops_come_only_from_the_table(name: str | None, peak: float | None) -> None:
    assert sizes.peak_bf16_flops(name) == peak


def test_mfu_follows_the_issues_formula() -> None:
    # Issue 14: 3,500 images/s x 3 x 8.2 GFLOP / 989 TFLOP/s is "about 9%".
    assert sizes.mfu(3500, 224, 989e12) == pytest.approx(3500 * 3 * 8.2e9 / 989e12)
    assert round(sizes.mfu(3500, 224, 989e12) or 0, 3) == 0.087
    assert sizes.mfu(3500, 112, 989e12) == pytest.approx(0.087 / 4, rel=0.01)
    assert sizes.mfu(3500, 224, None) is None


def test_device_augmentation_crops_to_size_and_normalises() -> None:
    # A constant image stays constant under any crop and flip, so every output pixel is its normalised value.
    value = torch.tensor([10, 128, 250], dtype=torch.uint8).view(1, 3, 1, 1)
    images = value.expand(5, 3, 40, 40).contiguous()
    out = device_loader.augment_on_device(images, 24, torch.Generator().manual_seed(0), channels_last=True)
    assert out.shape == (5, 3, 24, 24) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    mean, std = torch.tensor(device_loader.IMAGENET_MEAN), torch.tensor(device_loader.IMAGENET_STD)
    expected = ((value.view(3).float() / 255 - mean) / std).view(1, 3, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_device_augmentation_crops_differ_per_sample_and_some_are_mirrored() -> None:
    ramp = torch.arange(64, dtype=torch.uint8).repeat(64, 1) * 4  # brightness grows left to right
    images = ramp.expand(64, 3, 64, 64).contiguous()
    out = device_loader.augment_on_device(images, 16, torch.Generator().manual_seed(0), channels_last=False)
    slope = out[:, 0, 8, -1] - out[:, 0, 8, 0]  # right edge minus left edge of each crop
    assert (slope > 0).any() and (slope < 0).any()  # mirrored and not
    assert len({round(float(v), 3) for v in slope}) > 32  # crops of different widths


def test_no_gpu_run_without_cuda_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert runner.main([]) == 2
    assert "--smoke" in capsys.readouterr().err


def test_the_benchmarks_page_keeps_its_gpu_check_section_when_regenerated() -> None:
    from benchmarks.report import render

    page = render([])
    assert "## GPU check" in page and "make gpu-check" in page
    assert page.split("## GPU check", 1)[1] in (REPO / "docs" / "benchmarks.md").read_text()


def test_without_the_cache_modules_the_loader_falls_back_to_the_synthetic_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = device_loader.importlib.import_module

    def no_cache(name: str) -> Any:
        if name == "training_scripts.image_cache":
            raise ModuleNotFoundError("No module named 'PIL'")  # as on a device machine without Pillow
        return real(name)

    monkeypatch.setattr(device_loader.importlib, "import_module", no_cache)
    source, note = device_loader.cache_source(4, 40, 32, tmp_path)
    assert source is None
    assert note == "skipped: training_scripts.image_cache not available (No module named 'PIL')"
    loader = device_loader.DeviceFedBatches(device_loader.synthetic_source(4, 40, 32), 3, torch.device("cpu"))
    try:
        batch = loader.next_batch()
    finally:
        loader.close()
    assert batch.shape == (3, 3, 32, 32) and batch.is_contiguous(memory_format=torch.channels_last)
    assert not loader._thread.is_alive()


@pytest.mark.slow
def test_smoke_run_passes_without_numpy_or_pillow_as_on_the_device_machine(tmp_path: Path) -> None:
    # The device machine's own python may have torch alone: every stage must still run, degrading where it must.
    code = (
        "import sys\n"
        "sys.modules['numpy'] = None\n"  # makes `import numpy` raise ImportError
        "sys.modules['PIL'] = None\n"
        "from benchmarks.gpu_check.runner import main\n"
        f"raise SystemExit(main(['--smoke', '--out', {str(tmp_path)!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stages = json.loads((tmp_path / runner.JSON_NAME).read_text())["stages"]
    assert {record["status"] for record in stages.values()} == {"ok"}
    assert stages["environment"]["numpy"] is None
    assert stages["cache_loader"]["image_cache"].startswith("skipped: training_scripts.image_cache not available")
    assert stages["cache_loader"]["source"].startswith("synthetic uint8 tensors")
    assert stages["checkpoint_resume"]["writer"].startswith("torch.save (training_scripts.checkpoint not importable")


def test_make_gpu_check_needs_no_venv_and_writes_to_out() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "gpu-check", "PYTHON=/nonexistent/python"],
        capture_output=True,
        text=True,
        cwd=REPO,
        # Run under `make test` (CI), the parent make's flags would leak in (-w prints "Entering directory").
        env={key: value for key, value in {**ENV, "OUT": "/tmp/device-out"}.items() if key not in MAKE_VARIABLES},
        check=True,
    )
    # Only the check itself: no venv creation or pip install (the device machine has no network).
    assert dry.stdout.strip() == "python3 -m benchmarks.gpu_check --out ${OUT:-runs/gpu-check}"
