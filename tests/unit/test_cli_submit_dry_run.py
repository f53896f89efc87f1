"""`azure-dl submit ... --dry-run`: the YAML (golden files, loaded by azure.ai.ml), the snapshot, the plan, and a
clear error with a non-zero exit for each invalid input - all without a credential or the network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from azure_dl import catalog, staging
from azure_dl.cli.main import main
from azure_dl.cluster_needs import ClusterNeeds
from tests.golden_utils import assert_golden, normalise


@pytest.fixture(autouse=True)
def packaged_catalog_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(tmp_path / "none.toml"))
    # The same golden files with or without a git checkout (e.g. a source tarball in CI).
    monkeypatch.setattr(staging, "git_commit", lambda folder: "0123456789abcdef0123456789abcdef01234567")


def image_folder(root: Path) -> Path:
    for label in ("normal", "pneumonia"):
        (root / label).mkdir(parents=True)
        (root / label / "x.png").write_bytes(b"not really a png")
    return root


def dry_run(out: Path, *argv: str) -> str:
    head, sep, tail = list(argv), [], []
    if "--" in head:
        cut = head.index("--")
        head, sep, tail = head[:cut], ["--"], head[cut + 1 :]
    assert main(["submit", *head, "--dry-run", "--out", str(out), *sep, *tail]) == 0
    return normalise((out / "job.yml").read_text(encoding="utf-8"), out_dir=out)


def load(path: Path) -> Any:
    from azure.ai.ml import load_job

    job: Any = load_job(path)
    job._to_job()._to_rest_object()  # serialises for the REST API too
    return job


def test_resnet_preset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    image_folder(out / "data")
    text = dry_run(out, "resnet", "--data", str(out / "data"), "--", "--epochs", "7", "--lr", "0.01")
    assert_golden("submit_resnet.yml", text)
    assert "--epochs 7 --lr 0.01" in text
    captured = capsys.readouterr()
    assert "Standard_NC4as_T4_v3" in captured.out and "cost bound" in captured.out
    assert "USD per VM-hour in eastus" in captured.out and "unknown" not in captured.out
    assert "snapshot:" in captured.err and "sha256" in captured.err
    assert (out / "snapshot" / "training_scripts" / "__init__.py").is_file()
    assert (out / "environments" / "train-gpu" / "conda.yml").is_file()
    job = load(out / "job.yml")
    assert job.compute == "nc4as-t4-v3" and job.limits.timeout == 7200
    assert job.outputs["checkpoints"].mode == "rw_mount"


def test_lstm_preset_with_a_file_input(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "reviews.csv").write_text("text,label\ngood,positive\n")
    text = dry_run(out, "lstm", "--data", str(out / "data" / "reviews.csv"), "--max-hours", "0.5")
    assert_golden("submit_lstm.yml", text)
    job = load(out / "job.yml")
    assert job.inputs["data"].type == "uri_file"
    assert "training_scripts.train_lstm" in job.command


def test_user_script_with_code_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "lib").mkdir(parents=True)
    (project / "lib" / "train.py").write_text("print('train')\n")
    (project / "lib" / "helpers.py").write_text("X = 1\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_train.py").write_text("")
    out = tmp_path / "out"
    text = dry_run(
        out,
        str(project / "lib" / "train.py"),
        "--code",
        str(project),
        "--data",
        "azureml://datastores/workspaceblobstore/paths/reviews/",
        "--vm-size",
        "Standard_D4s_v3",
        "--env",
        "LOG_LEVEL=debug",
        "--tag",
        "team=vision",
        "--experiment",
        "my-experiment",
        "--",
        "--epochs",
        "2",
    )
    assert_golden("submit_script.yml", text)
    assert sorted(p.relative_to(out / "snapshot").as_posix() for p in (out / "snapshot").rglob("*.py")) == [
        "lib/helpers.py",
        "lib/train.py",
    ]
    job = load(out / "job.yml")
    assert job.command.startswith("python lib/train.py --data ${{inputs.data}}")
    assert job.environment.conda_file["name"] == "azure-dl-train-cpu"
    assert job.environment_variables == {"LOG_LEVEL": "debug"}
    assert job.tags["team"] == "vision" and job.tags["script"] == "lib/train.py"


def test_multi_node_distributed_low_priority(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    text = dry_run(
        out,
        "resnet",
        "--data",
        "azureml:chest-xray:3",
        "--vm-size",
        "Standard_NC48ads_A100_v4",
        "--instance-count",
        "2",
        "--compute",
        "gpu-a100",
        "--low-priority",
        "--max-hours",
        "4",
    )
    assert_golden("submit_distributed.yml", text)
    job = load(out / "job.yml")
    assert job.distribution.process_count_per_instance == 2 and job.resources.instance_count == 2
    plan = capsys.readouterr().out
    assert "world size 4" in plan and "low priority" in plan


def test_resnet_without_data_uses_synthetic_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("training_scripts.synth")
    out = tmp_path / "out"
    text = dry_run(out, "resnet")
    assert "path: data" in text
    assert any((out / "data").rglob("*.png"))
    assert "synthetic images" in capsys.readouterr().err
    load(out / "job.yml")


def test_dry_run_needs_no_sdk_credential_or_torch(tmp_path: Path) -> None:
    """Run in a fresh interpreter: the dry-run path imports neither torch nor the Azure SDK."""
    out = tmp_path / "out"
    image_folder(out / "data")
    probe = (
        "import sys\nfrom azure_dl.cli.main import main\n"
        f"code = main(['submit', 'resnet', '--dry-run', '--out', {str(out)!r}, '--data', {str(out / 'data')!r}])\n"
        "heavy = [m for m in ('torch', 'azure.ai.ml', 'azure.identity', 'mlflow') if m in sys.modules]\n"
        "print('RESULT', code, heavy)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AZURE_DL_CATALOG": str(tmp_path / "none.toml")}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert "RESULT 0 []" in result.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--vm-size", "Standard_NC6s_v3"], "retired on 30 Sep 2025"),
        (["--vm-size", "Standard_NC4"], "unknown VM size 'Standard_NC4'"),
        (["--instance-count", "0"], "instance count must be at least 1, got 0"),
        (["--nproc", "2"], "2 processes per node requested but Standard_NC4as_T4_v3 has 1 GPU"),
        (["--vm-size", "Standard_D4s_v3", "--nproc", "2"], "a CPU size with no GPU"),
        (["--data", "/nonexistent/images"], "local data path '/nonexistent/images'"),
        (["--data", "azureml://datastore/blob/x"], "malformed datastore URI"),
        (["--data", "azureml:chest-xray"], "malformed data asset reference"),
        (["--max-hours", "-1"], "max hours must be a positive number, got -1.0"),
        (["--env", "STORAGE_KEY=abc123"], "environment variable STORAGE_KEY looks like a secret"),
        (["--environment", "azureml:bad env"], "malformed environment reference"),
        (["--compute", "x"], "compute name 'x' is not valid"),
    ],
)
def test_invalid_inputs_exit_non_zero_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    data = ["--data", "azureml:chest-xray:1"] if "--data" not in extra else []
    assert main(["submit", "resnet", *data, *extra, "--dry-run", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "abc123" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("", "empty command: nothing to run"),
        ("resnt", "'resnt' is neither a preset nor a script"),
        ("missing.py", "script 'missing.py' not found"),
    ],
)
def test_unknown_targets(tmp_path: Path, capsys: pytest.CaptureFixture, target: str, message: str) -> None:
    assert main(["submit", target, "--dry-run", "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_script_outside_its_code_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "train.py").write_text("")
    argv = ["submit", str(tmp_path / "a" / "train.py"), "--code", str(tmp_path / "b"), "--dry-run"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert "is not inside the code folder" in capsys.readouterr().err


def test_malformed_key_value_is_an_argparse_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["submit", "resnet", "--env", "NOVALUE", "--dry-run", "--out", str(tmp_path)])
    assert exit_info.value.code == 2


def test_script_flags_override_the_presets_profile() -> None:
    from azure_dl.presets import PRESETS, merge_flags

    merged = merge_flags(PRESETS["resnet"].local_args, ["--epochs", "2", "--image-size=96", "--freeze"])
    assert merged.count("--epochs") == 1 and merged[-4:] == ("--epochs", "2", "--image-size=96", "--freeze")
    assert "64" not in merged  # the profile's --image-size value went with its flag
    assert merge_flags(("--bidirectional", "--lr", "-0.5"), ["--lr", "0.1"]) == ("--bidirectional", "--lr", "0.1")


def test_local_runs_the_rendered_command_from_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """--local wiring, with the process backend replaced: argv, working folder, tracking URI, torchrun."""
    from azure_dl.backends.local import process

    calls: list[dict[str, Any]] = []

    def fake_run(argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path, render: bool) -> Any:
        calls.append({"argv": argv, "cwd": cwd, "env": env, "log_path": log_path})
        return process.CommandResult(0, log_path, {"done": {"output": str(out), "run_id": "abc", "tracking_uri": "x"}})

    monkeypatch.setattr(process, "run_command", fake_run)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    out = tmp_path / "out"
    data = image_folder(tmp_path / "images")
    argv = ["submit", "resnet", "--local", "--out", str(out), "--data", str(data), "--env", "OMP_NUM_THREADS=1"]
    assert main([*argv, "--", "--epochs", "1"]) == 0
    call = calls[0]
    assert call["cwd"] == out / "snapshot"
    assert call["argv"][:3] == [sys.executable, "-m", "training_scripts.train_resnet"]
    assert call["argv"][3:9] == [
        "--data",
        str(data),
        "--output",
        str(out),
        "--checkpoint-dir",
        str(out / "checkpoints"),
    ]
    assert call["argv"].count("--epochs") == 1 and call["argv"][-2:] == ["--epochs", "1"]
    assert "--image-size" in call["argv"]  # the preset's scenario profile (--data is given)
    assert call["env"]["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert call["env"]["OMP_NUM_THREADS"] == "1"
    assert "MLflow run" in capsys.readouterr().out

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///relative.db")
    assert main([*argv, "--nproc", "2"]) == 0
    torchrun = calls[1]["argv"]
    assert torchrun[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "2"]
    assert calls[1]["env"]["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'relative.db'}"


def test_local_reports_a_failed_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure_dl.backends.local import process

    monkeypatch.setattr(process, "run_command", lambda argv, **kw: process.CommandResult(3, kw["log_path"], {}))
    data = image_folder(tmp_path / "images")
    assert main(["submit", "resnet", "--local", "--out", str(tmp_path / "o"), "--data", str(data)]) == 3


def test_default_mode_hands_the_written_yaml_to_the_azure_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure_dl.backends.azureml import jobs

    calls: list[tuple[Any, Path, dict[str, Any]]] = []
    monkeypatch.setattr(jobs, "submit_job_yaml", lambda ws, path, **kw: calls.append((ws, path, kw)))
    out = tmp_path / "out"
    argv = ["submit", "resnet", "--data", "azureml:x:1", "--out", str(out), "--vm-size", "Standard_NC48ads_A100_v4"]
    argv += ["--instance-count", "2", "--low-priority", "--ensure-compute", "--stream", "--workspace", "ws"]
    assert main(argv) == 0
    workspace_args, path, options = calls[0]
    assert path == out / "job.yml" and path.is_file()
    assert workspace_args.workspace == "ws"
    assert options == {
        "needs": ClusterNeeds("nc48ads-a100-v4", "Standard_NC48ads_A100_v4", nodes=2, low_priority=True, job_nodes=2),
        "ensure_compute": True,
        "stream": True,
    }


def test_serverless_low_priority(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    text = dry_run(
        out, "lstm", "--data", "https://example.org/reviews.csv", "--compute", "serverless", "--low-priority"
    )
    assert_golden("submit_serverless.yml", text)
    job = load(out / "job.yml")
    assert job.compute is None and job.resources.instance_type == "Standard_D4s_v3"  # the LSTM's CPU
    assert job.queue_settings.job_tier == "spot" and job.inputs["data"].type == "uri_file"
    assert "serverless" in capsys.readouterr().out


def test_synthetic_data_never_mixes_with_foreign_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("training_scripts.synth")
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "mine.txt").write_text("keep me\n")
    assert main(["submit", "resnet", "--dry-run", "--out", str(out)]) == 2
    assert "cannot write synthetic data" in capsys.readouterr().err
    assert (out / "data" / "mine.txt").read_text() == "keep me\n"
