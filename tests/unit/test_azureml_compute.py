"""AmlCompute clusters and the quota check, against fake compute operations on a real MLClient."""

from __future__ import annotations

from typing import Any

import pytest

from azure_dl.backends.azureml.compute import (
    QuotaError,
    check_quota,
    delete_compute,
    ensure_compute,
    family_key,
    list_quota,
    read_usage,
)
from azure_dl.errors import AzureDLError, ConfigError, SpecError
from tests.azure_fakes import (
    FakeComputeOperations,
    fake_ml_client,
    family_usage,
    regional_usage,
    rest_serialise,
    usage,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

T4 = "Standard_NC4as_T4_v3"  # 4 vCPUs, family standardNCASv3_T4Family (azure_dl/data/vm_sizes.toml)
T4_FAMILY = "standardNCASv3_T4Family"


def _client(*usages: Any) -> tuple[Any, FakeComputeOperations]:
    compute = FakeComputeOperations(usages)
    return fake_ml_client(compute=compute), compute


# ------------------------------------------------------------------------------------------------ ensure_compute
def test_creates_a_cluster_that_scales_to_zero() -> None:
    client, compute = _client()
    result = ensure_compute(client, "gpu-t4", T4, 3, idle_seconds=900)
    assert result.action == "created"
    (call,) = compute.calls_to("begin_create_or_update")
    sent = call.args[0]
    assert (sent.name, sent.size, sent.min_instances, sent.max_instances) == ("gpu-t4", T4, 0, 3)
    assert (sent.idle_time_before_scale_down, sent.tier) == (900, "dedicated")
    wire = rest_serialise(sent).as_dict()["properties"]  # the JSON body of the PUT
    assert wire["computeType"] == "AmlCompute"
    assert (wire["properties"]["vmSize"], wire["properties"]["vmPriority"]) == (T4, "Dedicated")
    assert wire["properties"]["scaleSettings"] == {
        "minNodeCount": 0,
        "maxNodeCount": 3,
        "nodeIdleTimeBeforeScaleDown": "PT15M",
    }
    assert result.compute.size == T4


def test_low_priority_cluster_uses_the_low_priority_tier() -> None:
    client, compute = _client()
    ensure_compute(client, "gpu-spot", T4, 2, low_priority=True)
    sent = compute.calls_to("begin_create_or_update")[0].args[0]
    assert rest_serialise(sent).as_dict()["properties"]["properties"]["vmPriority"] == "LowPriority"
    assert sent.idle_time_before_scale_down == 1800


def test_refuses_to_change_the_vm_size_of_an_existing_cluster() -> None:
    client, compute = _client()
    compute.add_cluster("gpu", "Standard_NC8as_T4_v3")
    with pytest.raises(ConfigError) as info:
        ensure_compute(client, "gpu", T4, 2)
    text = str(info.value)
    assert "Standard_NC8as_T4_v3" in text and T4 in text
    assert "compute delete gpu" in text and "another cluster name" in text
    assert compute.calls_to("begin_create_or_update") == []


def test_refuses_to_change_the_priority_of_an_existing_cluster() -> None:
    client, compute = _client()
    compute.add_cluster("gpu", T4, low_priority=True)
    with pytest.raises(ConfigError, match="low-priority, not dedicated"):
        ensure_compute(client, "gpu", T4, 2)
    assert compute.calls_to("begin_create_or_update") == []


def test_same_size_in_azures_upper_case_is_unchanged() -> None:
    client, compute = _client()
    compute.add_cluster("gpu", T4, max_nodes=2, size_as_returned=T4.upper())
    result = ensure_compute(client, "gpu", T4, 2)
    assert result.action == "unchanged"
    assert compute.calls_to("begin_create_or_update") == []


# Updating an existing cluster (a PATCH of its scale settings) is tested over the wire:
# tests/wire/test_compute_cli_wire.py.


def test_a_compute_that_is_not_a_cluster_is_refused() -> None:
    from azure.ai.ml.entities import ComputeInstance

    client, compute = _client()
    compute.computes["notebook"] = ComputeInstance(name="notebook", size="Standard_DS3_v2")
    with pytest.raises(ConfigError, match="not a compute cluster"):
        ensure_compute(client, "notebook", T4, 1)


@pytest.mark.parametrize(
    ("name", "max_nodes", "min_nodes", "match"),
    [("9gpu", 1, 0, "invalid compute cluster name"), ("gpu", 0, 0, "max-nodes"), ("gpu", 2, 3, "min nodes")],
)
def test_invalid_settings_fail_before_any_call(name: str, max_nodes: int, min_nodes: int, match: str) -> None:
    client, compute = _client()
    with pytest.raises(ConfigError, match=match):
        ensure_compute(client, name, T4, max_nodes, min_nodes=min_nodes)
    assert compute.calls == []


def test_delete_compute() -> None:
    client, compute = _client()
    compute.add_cluster("gpu", T4)
    delete_compute(client, "gpu")
    assert [call.args for call in compute.calls_to("begin_delete")] == [("gpu",)]
    with pytest.raises(AzureDLError, match="no compute named 'gpu'"):
        delete_compute(client, "gpu")


def test_service_errors_become_azure_dl_errors() -> None:
    from tests.azure_fakes import http_error

    client, compute = _client()
    compute.fail_next("begin_create_or_update", http_error(403, "AuthorizationFailed"))
    with pytest.raises(AzureDLError, match="403") as info:
        ensure_compute(client, "gpu", T4, 1)
    assert "role" in str(info.value)


# ------------------------------------------------------------------------------------------------------- quota
@pytest.mark.parametrize(
    "spelling",
    [
        "standardNCASv3_T4Family",
        "StandardNCASv3_T4Family",
        "Standard NCASv3_T4 Family Cluster Dedicated vCPUs",
        "Standard_NCASv3_T4_Family_Cluster_Dedicated_vCPUs",
    ],
)
def test_family_spellings_agree(spelling: str) -> None:
    assert family_key(spelling) == "ncasv3t4"
    assert family_key("Standard NC Family Cluster Dedicated vCPUs") == "nc"
    assert family_key("Total Cluster Dedicated Regional vCPUs") is None


def test_usage_rows_are_read_as_the_sdk_returns_them() -> None:
    line = read_usage(family_usage(T4_FAMILY, 8, 3))
    assert line is not None
    assert (line.family_key, line.limit, line.in_use, line.available, line.low_priority) == ("ncasv3t4", 8, 3, 5, False)
    workspace_row = usage(
        "Standard NC Family Cluster Dedicated vCPUs",
        24,
        6,
        usage_type="Microsoft.MachineLearningServices/workspaces/usages",
    )
    assert read_usage(workspace_row) is None
    regional = read_usage(regional_usage(50, 18, low_priority=True))
    assert regional is not None and (regional.scope, regional.low_priority) == ("region", True)


def test_zero_quota_is_a_clear_error() -> None:
    client, compute = _client(family_usage(T4_FAMILY, 0), regional_usage(100))
    with pytest.raises(QuotaError) as info:
        check_quota(client, T4, 1)
    text = str(info.value)
    assert T4_FAMILY in text
    assert "needs 4 vCPUs" in text and "allows 0" in text
    assert "request more dedicated vCPUs" in text and "how-to-manage-quotas" in text
    assert compute.calls_to("list_usage")[0].kwargs == {"location": None}


def test_quota_below_what_the_nodes_need_is_an_error() -> None:
    # 2 nodes x 8 vCPUs (Standard_NC8as_T4_v3) = 16 > 12
    client, _ = _client(family_usage(T4_FAMILY, 12), regional_usage(100))
    with pytest.raises(QuotaError, match=r"needs 16 vCPUs \(2 nodes x 8 of Standard_NC8as_T4_v3\).*allows 12"):
        check_quota(client, "Standard_NC8as_T4_v3", 2)
    assert check_quota(client, "Standard_NC8as_T4_v3", 1).needed == 8


def test_regional_total_also_limits() -> None:
    client, _ = _client(family_usage(T4_FAMILY, 100), regional_usage(2))
    with pytest.raises(QuotaError, match="regional dedicated total"):
        check_quota(client, T4, 1)


def test_quota_in_use_only_warns() -> None:
    client, _ = _client(family_usage(T4_FAMILY, 8, current=6), regional_usage(100))
    check = check_quota(client, T4, 1)
    assert (check.needed, check.family_line.available if check.family_line else None) == (4, 2)
    assert len(check.warnings) == 1 and "6 of 8" in check.warnings[0]


def test_low_priority_uses_the_separate_low_priority_quota() -> None:
    usages = (
        family_usage(T4_FAMILY, 0),
        regional_usage(100),
        family_usage(T4_FAMILY, -1, low_priority=True),  # -1: no per-family low-priority limit
        regional_usage(8, low_priority=True),
    )
    client, _ = _client(*usages)
    ok = check_quota(client, T4, 2, low_priority=True)
    assert ok.region_line is not None and ok.region_line.limit == 8
    with pytest.raises(QuotaError, match="low-priority") as info:
        check_quota(client, T4, 3, low_priority=True)
    assert "request more low-priority vCPUs" in str(info.value)
    with pytest.raises(QuotaError):
        check_quota(client, T4, 1)  # dedicated: family quota 0


def test_a_family_without_a_quota_line_warns() -> None:
    client, _ = _client(family_usage("standardDSv3Family", 10), regional_usage(100))
    check = check_quota(client, T4, 1)
    assert check.family_line is None
    assert any("no dedicated quota line" in warning for warning in check.warnings)


def test_quota_check_rejects_retired_and_unknown_sizes() -> None:
    client, _ = _client(regional_usage(100))
    with pytest.raises(SpecError, match="retired"):
        check_quota(client, "Standard_NC6s_v3", 1)
    with pytest.raises(SpecError, match="unknown VM size"):
        check_quota(client, "Standard_Bogus", 1)


def test_list_quota_passes_the_location() -> None:
    client, compute = _client(family_usage(T4_FAMILY, 4), regional_usage(10))
    lines = list_quota(client, "westeurope")
    assert [line.scope for line in lines] == ["family", "region"]
    assert compute.calls_to("list_usage")[0].kwargs == {"location": "westeurope"}
