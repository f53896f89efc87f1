"""Azure ML registration against fake `ml_client.models`/`jobs`: gate before upload, idempotent versions, tags,
exactly the contract's files uploaded, and the sweep/job sources."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from azure_dl.backends.azureml.models import find_version_by_content, register_model, sweep_info
from azure_dl.errors import AzureDLError
from azure_dl.model_registration import CONTENT_HASH_TAG, RegistrationRefused, content_hash
from azure_dl.model_source import ModelSource, Trial, fetch, pick_best_trial
from tests.azure_fakes import http_error
from tests.endpoint_fakes import fake_endpoint_client
from training_scripts.model_folder import REGISTERED_FILES

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)


@pytest.fixture
def lstm(trained_lstm: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny trained LSTM output folder (model.pt, checkpoints/ and plots/ included)."""
    return Path(shutil.copytree(trained_lstm, tmp_path / "lstm"))


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_register_uploads_the_contract_files_tagged(lstm: Path) -> None:
    client = fake_endpoint_client()
    registered = register_model(client, lstm, "reviews", source="runs/lstm", git_commit="0123abc")

    assert (registered.name, registered.version, registered.reused) == ("reviews", "1", False)
    (call,) = client.models.calls_to("create_or_update")
    model = call.args[0]
    assert model.type == "custom_model" and model.name == "reviews" and model.version is None
    uploaded = client.models.uploaded["reviews:1"]
    expected = {name for name in REGISTERED_FILES if (lstm / name).is_file()}
    assert set(uploaded) == expected and "model.pt" not in uploaded  # no weights, checkpoints or plots
    assert uploaded["model.onnx"] == (lstm / "model.onnx").read_bytes()

    metrics = json.loads((lstm / "metrics.json").read_text())["test"]
    export = json.loads((lstm / "export.json").read_text())
    tags = model.tags
    assert tags[CONTENT_HASH_TAG] == content_hash(lstm) == registered.content_sha256
    assert tags["test.macro_f1"] == f"{metrics['macro_f1']:.6g}"
    assert tags["test.accuracy"] == f"{metrics['accuracy']:.6g}"
    assert tags["parity.max_abs_diff"] == str(export["max_abs_diff"]) and tags["parity.passed"] == "True"
    assert (tags["task"], tags["num_classes"], tags["git_commit"]) == ("text-classification", "2", "0123abc")
    assert tags["source"] == "runs/lstm"
    # The fake serialised it with Model._to_rest_object(); the stored version keeps the tags.
    assert client.models.get("reviews", version="1").tags == tags


def test_identical_content_reuses_the_version_and_new_content_gets_a_new_one(lstm: Path) -> None:
    client = fake_endpoint_client()
    first = register_model(client, lstm, "reviews")
    (lstm / "model.pt").write_bytes(b"other weights")  # not registered, so not part of the identity
    again = register_model(client, lstm, "reviews")
    assert (again.version, again.reused) == (first.version, True)
    assert len(client.models.calls_to("create_or_update")) == 1

    edit_json(lstm / "metrics.json", best_epoch=99)
    changed = register_model(client, lstm, "reviews")
    assert (changed.version, changed.reused) == ("2", False)
    assert changed.content_sha256 != first.content_sha256


def test_content_hash_depends_on_names_and_bytes_only(lstm: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(lstm, tmp_path / "copy"))
    assert content_hash(copy) == content_hash(lstm)
    (copy / "labels.json").write_text('["neg", "pos"]')
    assert content_hash(copy) != content_hash(lstm)


def test_failed_parity_is_refused_before_any_upload(lstm: Path) -> None:
    client = fake_endpoint_client()
    edit_json(lstm / "export.json", passed=False, max_abs_diff=0.5, tolerance=0.0001)
    with pytest.raises(RegistrationRefused) as raised:
        register_model(client, lstm, "reviews")
    assert "parity check failed" in str(raised.value) and "0.5" in str(raised.value) and "0.0001" in str(raised.value)
    assert client.models.calls == []


def test_a_metric_below_the_minimum_is_refused_before_any_upload(lstm: Path) -> None:
    client = fake_endpoint_client()
    value = json.loads((lstm / "metrics.json").read_text())["test"]["macro_f1"]
    with pytest.raises(RegistrationRefused) as raised:
        register_model(client, lstm, "reviews", min_metrics={"macro_f1": value + 0.01})
    assert f"test macro_f1 {value:.4f} is below the minimum {value + 0.01:.4f}" in str(raised.value)
    assert client.models.calls == []
    assert register_model(client, lstm, "reviews", min_metrics={"macro_f1": value}).version == "1"


def test_an_unknown_model_name_is_not_an_error(lstm: Path) -> None:
    client = fake_endpoint_client()
    client.models.fail_next("list", http_error(404, "model container reviews not found"))
    assert find_version_by_content(client, "reviews", content_hash(lstm)) is None


def test_service_errors_are_reported_without_traceback(lstm: Path) -> None:
    client = fake_endpoint_client()
    client.models.fail_next("create_or_update", http_error(403, "no permission"))
    with pytest.raises(AzureDLError, match="could not register model reviews: Azure ML returned 403"):
        register_model(client, lstm, "reviews")


def test_quantizer_runs_on_the_staged_copy_and_its_report_is_registered(lstm: Path) -> None:
    client = fake_endpoint_client()
    original = (lstm / "model.onnx").read_bytes()

    def fake_quantizer(folder: Path) -> dict[str, object]:
        (folder / "model.onnx").write_bytes(b"int8 model")
        report = {"accepted": True, "method": "dynamic", "agreement": 1.0, "reason": "agreed"}
        (folder / "quantization.json").write_text(json.dumps(report))
        return report

    registered = register_model(client, lstm, "reviews", quantize=fake_quantizer)
    assert (lstm / "model.onnx").read_bytes() == original  # the training output itself is never changed
    assert not (lstm / "quantization.json").exists()
    uploaded = client.models.uploaded[registered.ref]
    assert uploaded["model.onnx"] == b"int8 model" and "quantization.json" in uploaded
    assert registered.tags["quantization.accepted"] == "True" and registered.quantization == {
        "accepted": True,
        "method": "dynamic",
        "agreement": 1.0,
        "reason": "agreed",
    }


# ---------------------------------------------------------------------------------------------------- sources
def model_files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in REGISTERED_FILES if (folder / name).is_file()}


def test_best_trial_by_the_sweeps_goal() -> None:
    trials = [Trial("a", "Completed", 0.7), Trial("b", "Completed", 0.9), Trial("c", "Failed", None)]
    assert pick_best_trial(trials, "val_macro_f1", "maximize").name == "b"
    assert pick_best_trial(trials, "val_loss", "minimize").name == "a"
    assert pick_best_trial([Trial("x", "Completed", 0.5), Trial("y", "Completed", 0.5)], "m", "maximize").name == "x"
    with pytest.raises(AzureDLError, match="no completed trial that reported val_macro_f1") as raised:
        pick_best_trial([Trial("c", "Failed", None), Trial("d", "Running", None)], "val_macro_f1", "maximize")
    assert "c Failed" in str(raised.value) and "d Running" in str(raised.value)


def test_sweep_source_downloads_the_best_trials_model(lstm: Path, tmp_path: Path) -> None:
    client = fake_endpoint_client()
    client.jobs.add_sweep("sweep-1", primary_metric="val_macro_f1", goal="maximize")
    client.jobs.add_trial("sweep-1", "trial-a", files=model_files(lstm))
    client.jobs.add_trial("sweep-1", "trial-b", files=model_files(lstm))
    client.jobs.add_trial("sweep-1", "trial-c", status="Failed")
    values = {"trial-a": 0.61, "trial-b": 0.83}
    read: list[tuple[str, str]] = []

    def read_metric(job: str, metric: str) -> float | None:
        read.append((job, metric))
        return values.get(job)

    info = sweep_info(client, "sweep-1", read_metric)
    assert (info.primary_metric, info.goal) == ("val_macro_f1", "maximize")
    assert [(t.name, t.status) for t in info.trials] == [
        ("trial-a", "Completed"),
        ("trial-b", "Completed"),
        ("trial-c", "Failed"),
    ]
    assert read == [("trial-a", "val_macro_f1"), ("trial-b", "val_macro_f1")]  # failed trials are not read

    fetched = fetch(ModelSource("sweep", sweep="sweep-1"), client, tmp_path / "work", read_metric=read_metric)
    assert fetched.source == "azureml://jobs/trial-b/outputs/model"
    assert "trial-b" in (fetched.note or "") and "0.83" in (fetched.note or "")
    assert (fetched.folder / "model.onnx").read_bytes() == (lstm / "model.onnx").read_bytes()
    download = client.jobs.calls_to("download")[0]
    assert download.args == ("trial-b",) and download.kwargs["output_name"] == "model"


def test_job_output_source_records_the_jobs_commit(lstm: Path, tmp_path: Path) -> None:
    client = fake_endpoint_client()
    job = client.jobs.add_job("train-7", outputs={"best": model_files(lstm)})
    job.tags = {"git_commit": "feedbeef"}
    fetched = fetch(ModelSource("job", job="train-7", output="best"), client, tmp_path / "work")
    assert (fetched.source, fetched.git_commit) == ("azureml://jobs/train-7/outputs/best", "feedbeef")
    registered = register_model(client, fetched.folder, "reviews", source=fetched.source, git_commit=fetched.git_commit)
    assert registered.tags["source"] == "azureml://jobs/train-7/outputs/best"
    assert registered.tags["git_commit"] == "feedbeef"


def test_a_job_output_without_a_model_is_refused(tmp_path: Path) -> None:
    client = fake_endpoint_client()
    client.jobs.add_job("prep-1", outputs={"model": {"rows.csv": b"a,b\n"}})
    with pytest.raises(AzureDLError, match=r"holds no model\.onnx"):
        fetch(ModelSource("job", job="prep-1"), client, tmp_path / "work")


def test_a_job_that_is_not_a_sweep_is_refused_as_one() -> None:
    client = fake_endpoint_client()
    client.jobs.add_job("train-7")
    with pytest.raises(AzureDLError, match="not a sweep job"):
        sweep_info(client, "train-7", lambda job, metric: None)
