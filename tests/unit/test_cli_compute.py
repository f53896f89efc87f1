"""`azure-dl compute ensure|delete|quota` end to end, with the MLClient factory returning fake operations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from azure_dl.backends.azureml import client as client_module
from azure_dl.cli.main import main
from tests.azure_fakes import FakeComputeOperations, fake_ml_client, family_usage, regional_usage

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

WS = ["--subscription", "sub-1", "--resource-group", "rg-1", "--workspace", "ws-1"]
T4 = "Standard_NC4as_T4_v3"
T4_FAMILY = "standardNCASv3_T4Family"


@pytest.fixture
def compute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeComputeOperations:
    """Fake compute operations (8 dedicated T4-family vCPUs, 4 low-priority) behind every client the CLI makes."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AZURE_DL_CATALOG", str(tmp_path / "no-user-catalog.toml"))  # the packaged catalogue only
    operations = FakeComputeOperations(
        [
            family_usage(T4_FAMILY, 8),
            family_usage("standardDSv3Family", 0),
            family_usage("standardMSFamily", 0),  # not in the catalogue, no quota: left out of the table
            regional_usage(100),
            regional_usage(4, low_priority=True),
        ]
    )
    ml_client = fake_ml_client(compute=operations)
    made: list[Any] = []

    def factory(settings: Any, auth: str = "default", **_: Any) -> Any:
        made.append(settings)
        return ml_client

    monkeypatch.setattr(client_module, "get_ml_client", factory)
    operations.made = made  # type: ignore[attr-defined]
    return operations


def test_ensure_prints_the_plan_and_creates_the_cluster(
    compute: FakeComputeOperations, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compute", "ensure", "gpu-t4", "--size", T4, "--max-nodes", "2", *WS]) == 0
    out = capsys.readouterr().out
    assert "Standard_NC4as_T4_v3 (NCasT4_v3)" in out and "1 x T4 (16 GB)" in out
    assert "0 to 2, released after 30 min idle" in out and "USD per node-hour in eastus" in out
    assert "Compute cluster gpu-t4: created" in out and "https://ml.azure.com/compute/gpu-t4" in out
    (call,) = compute.calls_to("begin_create_or_update")
    cluster = call.args[0]
    assert (cluster.size, cluster.min_instances, cluster.max_instances) == (T4, 0, 2)
    assert (cluster.idle_time_before_scale_down, cluster.tier) == (1800, "dedicated")
    assert compute.calls_to("list_usage")  # quota was read before creating


def test_ensure_shows_the_catalogue_price(
    compute: FakeComputeOperations, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = tmp_path / "prices.toml"
    overlay.write_text(
        f'[[size]]\nname = "{T4}"\nprice_per_hour = 0.5\nprice_source = "test overlay 2025-01-01"\n', encoding="utf-8"
    )
    monkeypatch.setenv("AZURE_DL_CATALOG", str(overlay))
    assert main(["compute", "ensure", "gpu-t4", "--size", T4, "--max-nodes", "2", *WS]) == 0
    out = capsys.readouterr().out
    assert "0.5000 USD per node-hour in eastus (test overlay 2025-01-01), up to 1.00 USD/h at 2 nodes" in out


def test_ensure_low_priority_with_idle_minutes(
    compute: FakeComputeOperations, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compute", "ensure", "spot", "--size", T4, "--max-nodes", "3", "--low-priority", "--idle-minutes", "10"]
    assert main([*args, *WS]) == 0
    cluster = compute.calls_to("begin_create_or_update")[0].args[0]
    assert (cluster.tier, cluster.idle_time_before_scale_down, cluster.max_instances) == ("low_priority", 600, 3)
    # 4 low-priority vCPUs run one T4 node at a time, fewer than --max-nodes 3
    assert "runs 1 node(s)" in capsys.readouterr().err


def test_ensure_refuses_a_retired_size_before_signing_in(
    compute: FakeComputeOperations, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compute", "ensure", "old", "--size", "Standard_NC6s_v3", "--max-nodes", "1", *WS]) == 2
    err = capsys.readouterr().err
    assert "retired" in err and "Standard_NC4as_T4_v3" in err
    assert compute.made == [] and compute.calls == []  # type: ignore[attr-defined]


def test_ensure_refuses_a_size_change(compute: FakeComputeOperations, capsys: pytest.CaptureFixture[str]) -> None:
    compute.add_cluster("gpu", "Standard_NC8as_T4_v3")
    assert main(["compute", "ensure", "gpu", "--size", T4, "--max-nodes", "2", *WS]) == 2
    assert "does not resize an existing cluster" in capsys.readouterr().err
    assert compute.calls_to("begin_create_or_update") == []


def test_ensure_stops_on_zero_quota(compute: FakeComputeOperations, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compute", "ensure", "cpu", "--size", "Standard_D4s_v3", "--max-nodes", "1", *WS]) == 2
    err = capsys.readouterr().err
    assert "error: not enough dedicated vCPU quota" in err and "standardDSv3Family" in err and "allows 0" in err
    assert compute.calls_to("begin_create_or_update") == []


def test_delete_needs_yes_when_not_interactive(
    compute: FakeComputeOperations, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    compute.add_cluster("gpu", T4)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["compute", "delete", "gpu", *WS]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert main(["compute", "delete", "gpu", "--yes", *WS]) == 0
    assert "Deleted compute gpu" in capsys.readouterr().out
    assert "gpu" not in compute.computes


def test_quota_table_and_size_check(compute: FakeComputeOperations, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compute", "quota", *WS]) == 0
    out = capsys.readouterr().out
    assert "Standard NCASv3_T4 Family Cluster Dedicated vCPUs" in out
    assert "Standard DSv3 Family" in out  # zero, but a catalogue family
    assert "Standard MS Family" not in out
    assert "Total Cluster LowPriority Regional vCPUs" in out

    assert main(["compute", "quota", "--size", T4, "--nodes", "2", *WS]) == 0
    out = capsys.readouterr().out
    assert "8 vCPUs for 2 node(s)" in out and "enough quota" in out

    assert main(["compute", "quota", "--size", T4, "--nodes", "3", *WS]) == 2
    assert "needs 12 vCPUs" in capsys.readouterr().err


def test_compute_without_an_action_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compute"]) == 2
    assert "ensure" in capsys.readouterr().out
