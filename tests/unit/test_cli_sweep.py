"""`azure-dl sweep`: dry-run YAML per sampling algorithm (golden + load_job + REST), Azure's sweep rules as CLI
errors, the local sampler and metric reader, and a local sweep of two tiny trials."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from azure_dl import catalog, staging
from azure_dl.backends.local import jobs as local_jobs
from azure_dl.backends.local.sweep import local_trials, read_metric, sample_value
from azure_dl.cli.main import main
from azure_dl.sweep_spec import SearchParam
from tests.golden_utils import assert_golden, normalise

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(tmp_path / "none.toml"))
    monkeypatch.setattr(staging, "git_commit", lambda folder: "0123456789abcdef0123456789abcdef01234567")


def dry_run(out: Path, *argv: str) -> str:
    assert main(["sweep", "resnet", "--data", "azureml:chest-xray:3", *argv, "--dry-run", "--out", str(out)]) == 0
    return normalise((out / "sweep.yml").read_text(encoding="utf-8"), out_dir=out)


def load(path: Path) -> Any:
    from azure.ai.ml import load_job

    job: Any = load_job(path)
    job._to_rest_object()
    return job


def test_random_sweep_with_the_presets_defaults(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert_golden("sweep_random.yml", dry_run(out, "--seed", "5"))
    job = load(out / "sweep.yml")
    assert job.sampling_algorithm.seed == 5
    assert set(job.search_space) == {"lr", "batch_size"}
    assert job.early_termination.type == "bandit" and job.objective.primary_metric == "val_macro_f1"
    assert job.limits.max_total_trials == 8 and job.limits.max_concurrent_trials == 2
    assert "sweep job" in capsys.readouterr().out


def test_grid_sweep(tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = dry_run(
        out,
        "--sampling",
        "grid",
        "--search",
        "batch_size=choice(16,32)",
        "--search",
        "optimizer=choice(adam,sgd)",
        "--early-termination",
        "median_stopping",
        "--max-trials",
        "4",
        "--max-concurrent",
        "4",
    )
    assert_golden("sweep_grid.yml", text)
    job = load(out / "sweep.yml")
    assert str(job.sampling_algorithm) == "grid" and job.search_space["optimizer"].values == ["adam", "sgd"]


def test_bayesian_sweep_has_no_policy(tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = dry_run(
        out,
        "--sampling",
        "bayesian",
        "--search",
        "lr=uniform(0.0001,0.01)",
        "--search",
        "batch_size=quniform(16,64,16)",
        "--metric",
        "val_loss",
        "--goal",
        "minimize",
        "--max-trials",
        "20",
        "--max-concurrent",
        "4",
        "--timeout-hours",
        "6",
    )
    assert_golden("sweep_bayesian.yml", text)
    job = load(out / "sweep.yml")
    assert str(job.sampling_algorithm) == "bayesian" and job.early_termination is None
    assert job.objective.goal == "minimize" and job.limits.timeout == 6 * 3600


def test_multi_node_sweep_trials_are_distributed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dry_run(out, "--vm-size", "Standard_NC96ads_A100_v4", "--instance-count", "2", "--max-trials", "2")
    job = load(out / "sweep.yml")
    assert job.trial.distribution.process_count_per_instance == 4
    assert job.trial.resources["instance_count"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sampling", "bayesian", "--early-termination", "bandit", "--search", "lr=uniform(0.001,0.1)"],
         "Bayesian sampling does not support early termination"),
        (["--sampling", "bayesian"], "Bayesian sampling supports only choice, uniform and quniform; lr is loguniform"),
        (["--sampling", "grid"], "grid sampling supports only choice; lr is loguniform"),
        (["--max-trials", "2", "--max-concurrent", "3"], "max concurrent trials must be between 1 and max total"),
        (["--search", "lr=loguniform(0,1)"], "needs low > 0"),
        (["--search", "dropout"], "cannot read search parameter 'dropout'"),
        (["--vm-size", "Standard_NC24s_v3"], "retired on 30 Sep 2025"),
    ],
)  # fmt: skip
def test_rules_the_service_enforces_fail_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert main(["sweep", "resnet", "--data", "azureml:x:1", *argv, "--dry-run", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_searched_flag_fixed_after_double_dash_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["sweep", "resnet", "--data", "azureml:x:1", "--dry-run", "--out", str(tmp_path / "o"), "--", "--lr", "1"]
    assert main(argv) == 2
    assert "--lr is both fixed" in capsys.readouterr().err


def test_own_script_needs_search_and_metric(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    script = tmp_path / "train.py"
    script.write_text("")
    base = ["sweep", str(script), "--dry-run", "--out", str(tmp_path / "o")]
    assert main(base) == 2
    assert "needs --search" in capsys.readouterr().err
    assert main([*base, "--search", "lr=uniform(0.1,0.2)"]) == 2
    assert "needs --metric" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ local sampling


def test_sample_values_stay_in_their_distribution() -> None:
    rng = random.Random(0)
    lr = SearchParam.parse("lr=loguniform(1e-5, 1e-2)")
    draws = [sample_value(lr, rng) for _ in range(200)]
    assert all(1e-5 <= d <= 1e-2 for d in draws)
    assert sum(d < 1e-3 for d in draws) > 100  # log-uniform: two of three decades lie below 1e-3
    hidden = [sample_value(SearchParam.parse("h=quniform(32, 256, 32)"), rng) for _ in range(50)]
    assert all(isinstance(h, int) and h % 32 == 0 and 32 <= h <= 256 for h in hidden)
    assert {sample_value(SearchParam.parse("s=randint(3)"), rng) for _ in range(50)} == {0, 1, 2}
    assert sample_value(SearchParam.parse("o=choice(adam, sgd)"), rng) in ("adam", "sgd")
    assert sample_value(SearchParam.parse("x=lognormal(0, 0.5)"), rng) > 0


def test_local_trials_are_reproducible_and_grid_is_exhaustive(tmp_path: Path) -> None:
    from azure_dl.spec import EnvironmentSpec, JobSpec
    from azure_dl.sweep_spec import SweepSpec

    (tmp_path / "t.py").write_text("")
    trial = JobSpec(
        display_name="t",
        experiment="e",
        code=tmp_path,
        script="t.py",
        vm_size="Standard_D4s_v3",
        environment=EnvironmentSpec("azureml:e@latest"),
        max_hours=1,
    )
    space = (SearchParam.parse("lr=loguniform(1e-5, 1e-2)"), SearchParam.parse("batch_size=choice(16, 32)"))
    sweep = SweepSpec(trial, space, "val_macro_f1", max_total_trials=3, max_concurrent_trials=1)
    assert local_trials(sweep, 1) == local_trials(sweep, 1) != local_trials(sweep, 2)
    grid_space = (SearchParam.parse("a=choice(1, 2)"), SearchParam.parse("b=choice(x, y)"))
    grid = SweepSpec(trial, grid_space, "m", sampling="grid", max_total_trials=3, max_concurrent_trials=1)
    assert [{p.name: v for p, v in t.items()} for t in local_trials(grid, 0)] == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
    ]


def test_read_metric_maps_names_onto_metrics_json(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(
        json.dumps(
            {"validation": {"macro_f1": 0.75, "loss": 0.4}, "test": {"accuracy": 0.8}, "best_epoch": 3, "bad": None}
        )
    )
    assert read_metric(path, "val_macro_f1") == 0.75
    assert read_metric(path, "test_accuracy") == 0.8
    assert read_metric(path, "loss") == 0.4
    assert read_metric(path, "best_epoch") == 3.0
    assert read_metric(path, "bad") is None and read_metric(path, "val_auroc") is None
    assert read_metric(tmp_path / "missing.json", "val_macro_f1") is None


# ------------------------------------------------------------------------------------------------ local sweep


def tiny_image_folder(root: Path, per_class: int = 10, size: int = 32) -> Path:
    from PIL import Image

    rng = random.Random(0)
    for label, shade in (("dark", 40), ("light", 200)):
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            pixels = bytes(max(0, min(255, shade + rng.randint(-30, 30))) for _ in range(size * size))
            Image.frombytes("L", (size, size), pixels).save(root / label / f"{index}.png")
    return root


@pytest.mark.slow
@pytest.mark.skipif(
    not (REPO_ROOT / "training_scripts" / "train_resnet.py").exists(),
    reason="needs training_scripts/train_resnet.py",
)
def test_local_sweep_runs_two_tiny_trials_and_reports_the_best(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep"
    data = tiny_image_folder(tmp_path / "images")
    argv = ["sweep", "resnet", "--local", "--out", str(out), "--data", str(data), "--max-trials", "2"]
    argv += ["--profile", "local", "--max-concurrent", "1", "--search", "lr=loguniform(1e-4, 1e-3)", "--seed", "3"]
    # As small as the script allows; a loose parity tolerance because an untrained network is not what this tests.
    argv += ["--", "--epochs", "1", "--max-steps", "1", "--image-size", "32", "--batch-size", "8"]
    argv += ["--parity-tolerance", "0.01"]
    assert main(argv) == 0
    results = json.loads((out / "sweep_results.json").read_text())
    assert [trial["status"] for trial in results["trials"]] == ["ok", "ok"]
    lrs = [trial["params"]["lr"] for trial in results["trials"]]
    assert lrs[0] != lrs[1] and all(1e-4 <= lr <= 1e-3 for lr in lrs)
    best = results["best"]
    assert best["metric"] == max(trial["metric"] for trial in results["trials"])
    assert math.isfinite(best["metric"])
    for trial in results["trials"]:
        assert (Path(trial["output"]) / "model.onnx").is_file()
        assert (Path(trial["output"]) / "metrics.json").is_file()
    assert "best: trial" in capsys.readouterr().out


def test_an_interrupted_trial_stops_the_local_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    calls: list[Path] = []

    def interrupted_run(spec: Any, *, output: Path, **kwargs: Any) -> Any:
        calls.append(output)
        return SimpleNamespace(returncode=130, interrupted=True)

    monkeypatch.setattr(local_jobs, "run_locally", interrupted_run)
    out = tmp_path / "sweep"
    data = tiny_image_folder(tmp_path / "images")
    argv = ["sweep", "resnet", "--local", "--out", str(out), "--data", str(data), "--max-trials", "3"]
    argv += ["--max-concurrent", "1", "--search", "lr=loguniform(1e-4, 1e-3)"]
    assert main(argv) == 130
    assert len(calls) == 1, "Ctrl-C on one trial must not start the next"
    results = json.loads((out / "sweep_results.json").read_text())
    assert [trial["status"] for trial in results["trials"]] == ["interrupted"]
    assert "2 trial(s) not run" in capsys.readouterr().err


def test_sweep_submission_sizes_the_cluster_for_concurrent_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure_dl.backends.azureml import jobs

    calls: list[tuple[Path, dict[str, Any]]] = []
    monkeypatch.setattr(jobs, "submit_job_yaml", lambda ws, path, **kw: calls.append((path, kw)))
    out = tmp_path / "out"
    argv = ["sweep", "resnet", "--data", "azureml:x:1", "--out", str(out), "--instance-count", "2"]
    assert main([*argv, "--max-concurrent", "3", "--ensure-compute"]) == 0
    path, options = calls[0]
    assert path == out / "sweep.yml"
    # 2 nodes per trial x 3 concurrent trials: the cluster size to ensure and the quota to check.
    assert (options["needs"].nodes, options["needs"].least_nodes) == (6, 2) and options["ensure_compute"] is True
