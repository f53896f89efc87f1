"""`azure-dl deploy` and `azure-dl endpoint ...` through the dispatcher: dry-run files and plan (no credential), the
blue/green calls against fake operations, confirmation, and the endpoint verbs (never printing keys)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from azure_dl.backends.azureml import client as client_module
from azure_dl.cli.main import main
from tests.azure_fakes import http_error
from tests.endpoint_fakes import fake_endpoint_client, sequence
from tests.golden_utils import assert_golden, normalise
from training_scripts.model_folder import REGISTERED_FILES

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

WORKSPACE = ["--subscription", "sub-1", "--resource-group", "rg-1", "--workspace", "ws-1"]


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AZURE_DL_CATALOG", str(tmp_path / "no-user-catalog.toml"))
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


def test_dry_run_writes_loadable_yaml_and_the_plan_without_signing_in(
    azure: Any, lstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure.ai.ml import load_online_deployment, load_online_endpoint

    out = tmp_path / "dry"
    assert main(["deploy", str(lstm), "--endpoint", "reviews", "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert azure.requested == []
    for text in (
        "Standard_DS3_v2",
        "USD per instance-hour in eastus",
        "bills while idle",
        "create blue at 0%",
        "invoke blue",
    ):
        assert text in printed
    assert_golden("deployment_dry_run_lstm.yml", normalise((out / "deployment.yml").read_text(), out_dir=out))
    assert_golden("endpoint_dry_run.yml", normalise((out / "endpoint.yml").read_text(), out_dir=out))
    deployment = load_online_deployment(out / "deployment.yml")
    assert deployment.model == "reviews@latest"  # pinned to the registered version when deployed for real
    assert (out / deployment.code_configuration.code / "training_scripts" / "score_lstm.py").is_file()
    assert deployment.environment_variables["AZURE_DL_MAX_BATCH"] == "64"
    assert load_online_endpoint(out / "endpoint.yml").auth_mode == "key"
    assert json.loads((out / "sample-request.json").read_text())["texts"]


def test_dry_run_plan_prices_per_hour_and_per_month(
    azure: Any, lstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "no-user-catalog.toml").write_text(
        '[[size]]\nname = "Standard_DS3_v2"\nprice_per_hour = 0.5\nprice_source = "test price"\n'
    )
    args = ["deploy", str(lstm), "--endpoint", "reviews", "--instance-count", "2", "--dry-run", "--out", "d"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "0.5000 USD per instance-hour in eastus (test price) x 2 = 1.0000 USD/h" in printed
    assert "~730 USD per month (1.0000 x 730 h)" in printed


def test_dry_run_says_where_collected_data_lands(
    azure: Any, lstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure.ai.ml import load_online_deployment

    assert main(["deploy", str(lstm), "--endpoint", "reviews", "--dry-run", "--out", "off"]) == 0
    assert "off (--collect-data collects" in capsys.readouterr().out

    assert main(["deploy", str(lstm), "--endpoint", "reviews", "--collect-data", "--dry-run", "--out", "on"]) == 0
    flat = "".join(ch for ch in capsys.readouterr().out if not ch.isspace() and ch != "\u2502")  # cells wrap
    root = "azureml://datastores/workspaceblobstore/paths/modelDataCollector/reviews/blue"
    for collection in ("model_inputs", "model_outputs"):
        assert f"{root}/{collection}/yyyy/MM/dd/HH/" in flat
    assert "dataassetsreviews-blue-{collection}" in flat
    collector = load_online_deployment(tmp_path / "on" / "deployment.yml").data_collector
    assert set(collector.collections) == {"model_inputs", "model_outputs"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--instance-type", "Standard_D4s_v3"], "not one managed online endpoints accept"),
        (["--instance-type", "Standard_NC6s_v3"], "retired"),
        (["--traffic", "blue=90,green=20"], "sums to 110"),
        (["--traffic", "blue"], "NAME=PERCENT"),
        (["--mirror", "green=60", "--traffic", "blue=100"], "at most 50%"),
        (["--mirror", "green=10", "--traffic", "blue=90,green=10"], "takes 10% of live traffic"),
        (["--deployment", "x"], "3-32 characters"),
    ],
)
def test_bad_flags_are_refused_before_writing_anything(
    azure: Any, lstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code = main(["deploy", str(lstm), "--endpoint", "reviews", "--dry-run", "--out", "d", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert not (tmp_path / "d").exists() and azure.requested == []


def test_dry_run_of_a_registered_model_needs_its_task(azure: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "xray:3", "--endpoint", "xray", "--dry-run", "--out", "d"]) == 2
    assert "--task image" in capsys.readouterr().err
    assert main(["deploy", "xray:3", "--endpoint", "xray", "--task", "image", "--dry-run", "--out", "d"]) == 0
    assert "model: azureml:xray:3" in Path("d/deployment.yml").read_text()


def test_a_failing_gate_stops_the_deploy(azure: Any, lstm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    metrics = json.loads((lstm / "metrics.json").read_text())
    metrics["test"]["macro_f1"] = 0.5  # a model that misses the gate below
    (lstm / "metrics.json").write_text(json.dumps(metrics))
    assert main(["deploy", str(lstm), "--endpoint", "reviews", "--min-metric", "macro_f1=0.9", "--dry-run"]) == 2
    assert "test macro_f1 0.5000 is below the minimum 0.9000" in capsys.readouterr().err
    # A minimum no fraction can reach is a usage error, not a refused model.
    with pytest.raises(SystemExit):
        main(["deploy", str(lstm), "--endpoint", "reviews", "--min-metric", "macro_f1=1.01", "--dry-run"])
    assert "is not between 0 and 1" in capsys.readouterr().err


def test_deploy_a_folder_registers_it_then_rolls_out(
    azure: Any, lstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["deploy", str(lstm), "--endpoint", "reviews", "--yes", "--out", str(out), *WORKSPACE]) == 0
    printed = capsys.readouterr().out
    assert sequence(azure) == [
        "models.create_or_update",
        "online_endpoints.begin_create_or_update",
        "online_deployments.begin_create_or_update",
        "online_endpoints.invoke",
        "online_endpoints.begin_create_or_update",
    ]
    assert "model: azureml:reviews:1" in (out / "deployment.yml").read_text()  # the YAML that was created
    assert azure.online_deployments.calls_to("begin_create_or_update")[0].args[0].model == "reviews:1"
    assert "blue=100%" in printed and "https://reviews.eastus.inference.ml.azure.com/score" in printed
    assert "primary-key" not in printed


def test_green_on_a_live_endpoint_with_a_traffic_split(
    azure: Any, lstm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {name: (lstm / name).read_bytes() for name in REGISTERED_FILES if (lstm / name).is_file()}
    azure.models.add_model("reviews-lstm", "2", files, tags={"task": "text-classification"})
    azure.models.add_model("reviews-lstm", "3", files, tags={"task": "text-classification"})
    azure.online_endpoints.add_endpoint("reviews", traffic={"blue": 100})
    args = ["deploy", "reviews-lstm", "--endpoint", "reviews", "--traffic", "blue=90,green=10", "--yes", *WORKSPACE]
    assert main(args) == 0
    deployment = azure.online_deployments.calls_to("begin_create_or_update")[0].args[0]
    assert (deployment.name, deployment.model) == ("green", "reviews-lstm:3")  # latest version, pinned
    assert azure.models.calls_to("download") == []  # the task came from the tag
    assert "blue=90%, green=10%" in capsys.readouterr().out


def test_a_registered_model_without_a_task_tag_is_read_from_its_files(azure: Any, lstm: Path) -> None:
    files = {name: (lstm / name).read_bytes() for name in REGISTERED_FILES if (lstm / name).is_file()}
    azure.models.add_model("other", "1", files)
    assert main(["deploy", "other:1", "--endpoint", "reviews", "--yes", *WORKSPACE]) == 0
    assert len(azure.models.calls_to("download")) == 1
    invoke = azure.online_endpoints.calls_to("invoke")[0]
    assert invoke.kwargs["request"]["texts"]


def test_a_failed_smoke_test_exits_with_the_reason_and_no_traffic(
    azure: Any, lstm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    azure.online_endpoints.responder = lambda deployment, request: (_ for _ in ()).throw(http_error(424, "boom"))
    azure.online_endpoints.add_endpoint("reviews", traffic={"blue": 100})
    args = ["deploy", str(lstm), "--endpoint", "reviews", "--traffic", "green=100", "--yes", *WORKSPACE]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "smoke test of deployment green failed: HTTP 424" in err and "traffic was not moved" in err
    assert azure.online_endpoints.get("reviews").traffic == {"blue": 100, "green": 0}


def test_deploy_asks_before_billing(azure: Any, lstm: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["deploy", str(lstm), "--endpoint", "reviews", *WORKSPACE]) == 2
    assert "pass --yes" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["deploy", str(lstm), "--endpoint", "reviews", *WORKSPACE]) == 1
    assert sequence(azure) == []


# ---------------------------------------------------------------------------------------------- endpoint verbs
def test_endpoint_show_never_prints_keys(azure: Any, capsys: pytest.CaptureFixture[str]) -> None:
    azure.online_endpoints.add_endpoint("reviews", traffic={"blue": 100})
    assert main(["endpoint", "show", "reviews", *WORKSPACE]) == 0
    printed = capsys.readouterr().out
    assert "blue=100%" in printed and "old-model:1" in printed and "inference.ml.azure.com/score" in printed
    assert "key-of" not in printed and azure.online_endpoints.calls_to("get_keys") == []
    assert main(["endpoint", "show", "nothing-here", *WORKSPACE]) == 2


def test_endpoint_traffic_then_rollback(azure: Any, capsys: pytest.CaptureFixture[str]) -> None:
    azure.online_endpoints.add_endpoint("reviews", traffic={"blue": 100})
    azure.online_deployments.add_deployment("reviews", "green")
    assert main(["endpoint", "traffic", "reviews", "blue=80,green=20", *WORKSPACE]) == 0
    assert main(["endpoint", "traffic", "reviews", "blue=80,green=30", *WORKSPACE]) == 2
    assert "sums to 110" in capsys.readouterr().err
    assert main(["endpoint", "rollback", "reviews", *WORKSPACE]) == 0
    assert "Rolled back endpoint reviews to blue=100%" in capsys.readouterr().out
    assert main(["endpoint", "traffic", "reviews", "--mirror", "green=10", *WORKSPACE]) == 0
    assert azure.online_endpoints.get("reviews").mirror_traffic == {"green": 10}
    assert main(["endpoint", "traffic", "reviews", "--mirror", "none", *WORKSPACE]) == 0
    assert azure.online_endpoints.get("reviews").mirror_traffic == {}


def test_endpoint_delete(azure: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    azure.online_endpoints.add_endpoint("reviews", traffic={"blue": 100})
    azure.online_deployments.add_deployment("reviews", "green")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["endpoint", "delete", "reviews", *WORKSPACE]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert main(["endpoint", "delete", "reviews", "--deployment", "blue", "--yes", *WORKSPACE]) == 2
    assert "takes 100% of live traffic" in capsys.readouterr().err
    assert main(["endpoint", "delete", "reviews", "--deployment", "green", "--yes", *WORKSPACE]) == 0
    assert main(["endpoint", "delete", "reviews", "--yes", *WORKSPACE]) == 0
    assert "Deleted endpoint reviews" in capsys.readouterr().out
    assert azure.online_endpoints.endpoints == {}
