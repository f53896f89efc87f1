"""`endpoint autoscale`'s flags and the Azure Monitor autoscale setting it builds (backends/azureml/autoscale.py),
serialised as azure-mgmt-monitor sends it, without a network."""

from __future__ import annotations

from datetime import timedelta

import pytest

from azure_dl.backends.azureml.autoscale import AutoscaleRequest, build_setting, describe, setting_name
from azure_dl.errors import SpecError

DEPLOYMENT = (
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w/"
    "onlineEndpoints/e/deployments/blue"
)


def test_the_flags_default_the_scale_in_threshold_to_half_the_cpu() -> None:
    assert AutoscaleRequest.checked(1, 3, 70, None) == AutoscaleRequest(1, 3, 70, 35)
    with pytest.raises(SpecError, match="must be under --cpu 1"):  # half of 1 rounds to 0, at least 1: no room
        AutoscaleRequest.checked(2, 2, 1, None)


@pytest.mark.parametrize(
    ("minimum", "maximum", "cpu", "below", "message"),
    [
        (0, 3, 70, None, "1 <= min <= max"),
        (3, 2, 70, None, "1 <= min <= max"),
        (1, 51, 70, None, "1 <= min <= max <= 50"),
        (1, 3, 0, None, "not a percentage"),
        (1, 3, 101, None, "not a percentage"),
        (1, 3, 70, 70, "must be under --cpu 70"),
    ],
)
def test_bad_flags_are_refused_naming_them(
    minimum: int, maximum: int, cpu: int, below: int | None, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        AutoscaleRequest.checked(minimum, maximum, cpu, below)


def test_the_setting_targets_the_deployment_with_a_scale_out_and_a_scale_in_rule() -> None:
    setting = build_setting("westus", DEPLOYMENT, instances=5, wanted=AutoscaleRequest(1, 3, 70, 30))
    body = setting.serialize()
    assert body["location"] == "westus"
    properties = body["properties"]
    assert properties["targetResourceUri"] == DEPLOYMENT and properties["enabled"] is True
    (profile,) = properties["profiles"]
    assert profile["capacity"] == {"minimum": "1", "maximum": "3", "default": "3"}  # 5 instances, kept within max
    out, scale_in = profile["rules"]
    assert out["metricTrigger"] == {
        "metricName": "CpuUtilizationPercentage",
        "metricResourceUri": DEPLOYMENT,
        "timeGrain": "PT1M",
        "statistic": "Average",
        "timeWindow": "PT5M",
        "timeAggregation": "Average",
        "operator": "GreaterThan",
        "threshold": 70,
    }
    assert out["scaleAction"] == {"direction": "Increase", "type": "ChangeCount", "value": "1", "cooldown": "PT5M"}
    assert (scale_in["metricTrigger"]["operator"], scale_in["metricTrigger"]["threshold"]) == ("LessThan", 30)
    assert scale_in["scaleAction"]["direction"] == "Decrease"
    assert setting_name("e", "blue") == "e-blue-autoscale"


def test_describe_reads_back_what_azure_answers() -> None:
    from azure.mgmt.monitor.models import AutoscaleSettingResource

    answered = AutoscaleSettingResource.deserialize(
        {
            **build_setting("local", DEPLOYMENT, 1, AutoscaleRequest(1, 3, 70, 35)).serialize(),
            "name": "e-blue-autoscale",
        }
    )
    assert answered.profiles[0].rules[0].metric_trigger.time_window == timedelta(minutes=5)
    rows = dict(describe(answered)[:4])
    assert rows["instances"] == "min 1, max 3, default 1"
    rules = [value for key, value in describe(answered) if key == "rule"]
    assert rules == [
        "CpuUtilizationPercentage Average over 5m GreaterThan 70 -> +1 (cooldown 5m)",
        "CpuUtilizationPercentage Average over 5m LessThan 35 -> -1 (cooldown 5m)",
    ]
