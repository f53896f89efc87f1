"""`azure-dl register` end to end through the dispatcher: sources, the gate before sign-in/upload, reuse, --local,
--quantize; the Azure calls go to fake operations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from azure_dl.backends.azureml import client as client_module
from azure_dl.backends.azureml import models as models_module
from azure_dl.cli.main import main
from azure_dl.errors import SpecError
from azure_dl.model_source import parse_source
from tests.endpoint_fakes import fake_endpoint_client
from training_scripts.model_folder import REGISTERED_FILES

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

WORKSPACE = ["--subscription", "sub-1", "--resource-group", "rg-1", "--workspace", "ws-1"]


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A fake client behind every client the CLI makes; `.requested` counts how often one was made."""
    monkeypatch.chdir(tmp_path)
    client = fake_endpoint_client()
    requested: list[Any] = []

    def factory(settings: Any, auth: str = "default", **_: Any) -> Any:
        requested.append(settings)
        return client

    monkeypatch.setattr(client_module, "get_ml_client", factory)
    client.requested = requested
    return client


@pytest.fixture
def lstm(trained_lstm: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_lstm, tmp_path / "lstm"))


def files_of(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in REGISTERED_FILES if (folder / name).is_file()}


def test_register_a_folder_then_reuse_it(azure: Any, lstm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register", str(lstm), "--name", "reviews", *WORKSPACE]) == 0
    out = capsys.readouterr().out
    assert "azureml:reviews:1" in out and "no: new version" in out and "test.macro_f1" in out
    assert main(["register", str(lstm), "--name", "reviews", *WORKSPACE]) == 0
    assert "yes: identical content was registered before" in capsys.readouterr().out
    assert len(azure.models.calls_to("create_or_update")) == 1


def test_the_gate_refuses_before_signing_in(azure: Any, lstm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register", str(lstm), "--name", "reviews", "--min-metric", "macro_f1=0.999", *WORKSPACE]) == 2
    err = capsys.readouterr().err
    assert "refusing to register" in err and "test macro_f1" in err and "below the minimum 0.9990" in err
    assert azure.requested == [] and azure.models.calls == []

    export = json.loads((lstm / "export.json").read_text())
    (lstm / "export.json").write_text(json.dumps({**export, "passed": False, "max_abs_diff": 0.2}))
    assert main(["register", str(lstm), "--name", "reviews", *WORKSPACE]) == 2
    assert "ONNX parity check failed: max_abs_diff 0.2" in capsys.readouterr().err
    assert azure.requested == []


def test_min_metric_must_be_a_gate_metric(azure: Any, lstm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["register", str(lstm), "--name", "reviews", "--min-metric", "loss=0.1"])
    assert "not one of the gate metrics" in capsys.readouterr().err


def test_register_the_best_trial_of_a_sweep(
    azure: Any, lstm: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    azure.jobs.add_sweep("sweep-9", primary_metric="val_loss", goal="minimize")
    azure.jobs.add_trial("sweep-9", "trial-1", files=files_of(lstm))
    azure.jobs.add_trial("sweep-9", "trial-2", files=files_of(lstm))
    losses = {"trial-1": 0.4, "trial-2": 0.7}
    monkeypatch.setattr(models_module, "mlflow_metric_reader", lambda client: lambda job, metric: losses[job])
    assert main(["register", "--sweep", "sweep-9", "--name", "reviews", *WORKSPACE]) == 0
    captured = capsys.readouterr()
    assert "best trial of sweep sweep-9: trial-1 (minimize val_loss = 0.4)" in captured.err
    model = azure.models.calls_to("create_or_update")[0].args[0]
    assert model.tags["source"] == "azureml://jobs/trial-1/outputs/model"


def test_register_a_job_output_uri(azure: Any, lstm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    azure.jobs.add_job("train-3", outputs={"model": files_of(lstm)})
    assert main(["register", "azureml://jobs/train-3/outputs/model", "--name", "reviews", *WORKSPACE]) == 0
    assert azure.models.uploaded["reviews:1"]["model.onnx"] == (lstm / "model.onnx").read_bytes()
    assert main(["register", "--job", "train-3", "--name", "reviews", *WORKSPACE]) == 0
    assert "yes: identical content" in capsys.readouterr().out


def test_register_locally_needs_no_workspace(
    azure: Any, lstm: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure_dl.backends.local import models as local_models

    calls: list[tuple[Path, str, Any]] = []

    def register_local(folder: Path, name: str, *, min_metrics: Any = None) -> Any:
        calls.append((Path(folder), name, min_metrics))
        return local_models.RegisteredModel(name, "4", reused=False)

    # The MLflow registry itself is tested in test_local_models.py; here: the verb's wiring, without a workspace.
    monkeypatch.setattr(local_models, "register_local", register_local)
    assert main(["register", str(lstm), "--name", "reviews", "--local", "--min-metric", "accuracy=0.1"]) == 0
    assert calls == [(lstm, "reviews", {"accuracy": 0.1})]
    assert "models:/reviews/4" in capsys.readouterr().out
    assert azure.requested == []


def test_quantize_registers_the_report_and_says_what_it_kept(
    azure: Any, lstm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = lstm.parent / "held-out.txt"
    texts.write_text("\n".join(f"review number {i}: a good film, never boring" for i in range(30)))
    assert (
        main(["register", str(lstm), "--name", "reviews", "--quantize", "--calibration-data", str(texts), *WORKSPACE])
        == 0
    )
    err = capsys.readouterr().err
    uploaded = azure.models.uploaded["reviews:1"]
    report = json.loads(uploaded["quantization.json"])
    assert report["method"] == "dynamic" and report["held_out"] == 30 and report["data"] == str(texts)
    assert "on 30 held-out items" in err and "KB fp32" in err
    kept_int8 = uploaded["model.onnx"] != (lstm / "model.onnx").read_bytes()
    assert kept_int8 == report["accepted"] == (report["agreement"] >= 0.99)
    tags = azure.models.calls_to("create_or_update")[0].args[0].tags
    assert tags["quantization.accepted"] == str(report["accepted"])


def test_calibration_data_needs_quantize(azure: Any, lstm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register", str(lstm), "--name", "reviews", "--calibration-data", str(lstm), *WORKSPACE]) == 2
    assert "--calibration-data is for --quantize" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("source", "job", "sweep", "message"),
    [
        (None, None, None, "none given"),
        ("folder", "job-1", None, "got SOURCE and --job"),
        ("azureml://jobs/j/outputs", None, None, "not a job output URI"),
        ("no/such/folder", None, None, "does not exist"),
        (None, "bad name!", None, "not a job name"),
    ],
)
def test_parse_source_errors(source: Any, job: Any, sweep: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_source(source, job=job, sweep=sweep)


def test_parse_source_forms(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    assert parse_source(str(tmp_path)).kind == "folder"
    source = parse_source("azureml://jobs/train-1/outputs/best")
    assert (source.kind, source.job, source.output) == ("job", "train-1", "best")
    assert parse_source(None, sweep="sweep-1").describe() == "sweep sweep-1 (best trial)"
    with pytest.raises(SpecError, match="not a training output folder"):
        parse_source(str(tmp_path.parent))
