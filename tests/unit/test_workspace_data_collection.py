"""The local service's model data collection (workspace_service/data_collection.py): the dataCollector checks and
spelling, the variables and config file a deployment's process gets, and the agent's JSON lines and folders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from azure_dl.workspace_service import data_collection
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError
from azure_dl.workspace_service.store import Store

WHERE = "deployment green of endpoint ep"


@pytest.fixture
def context(tmp_path: Path) -> Iterator[ServiceContext]:
    context = ServiceContext(
        base_url="https://127.0.0.1:1",
        subscription_id="s",
        resource_group="g",
        workspace="w",
        data_dir=tmp_path,
        store=Store(tmp_path / "state"),
        identity_secret="x",
        signing_key=b"k",
    )
    yield context
    data_collection.agents(context).stop()


def _properties(**collections: Any) -> dict[str, Any]:
    return {"dataCollector": {"collections": collections}}


def test_the_collector_is_answered_as_the_rest_model_spells_it() -> None:
    sent = _properties(model_inputs={"dataCollectionMode": "enabled", "dataId": "/x/data/ep-green-model_inputs/1"})
    spelled = data_collection.checked(WHERE, sent)["dataCollector"]
    # azure-ai-ml reads back only "Enabled" as enabled (DeploymentCollection._from_rest_object).
    assert spelled["collections"]["model_inputs"]["dataCollectionMode"] == "Enabled"
    assert spelled["collections"]["model_inputs"]["dataId"].endswith("ep-green-model_inputs/1")
    assert spelled["rollingRate"] == "Hour"
    assert data_collection.checked(WHERE, {"dataCollector": None}) == {"dataCollector": None}


@pytest.mark.parametrize(
    ("collector", "status", "message"),
    [
        ({"collections": {}}, 400, "at least one collection"),
        ({"collections": {"model_inputs": {"dataCollectionMode": "enabled"}}, "rollingRate": "week"}, 400, "'Week'"),
        ({"collections": {"model_inputs": {"dataCollectionMode": "maybe"}}}, 400, "'Maybe' is not Enabled"),
        ({"collections": {"model_inputs": {"dataCollectionMode": "enabled", "samplingRate": 2}}}, 400, "0.0-1.0"),
        (
            {"collections": {"request": {"dataCollectionMode": "enabled"}}},
            501,
            "payload logging (collection 'request')",
        ),
    ],
)
def test_what_the_service_cannot_take_is_refused_naming_it(collector: Any, status: int, message: str) -> None:
    with pytest.raises(ApiError) as refused:
        data_collection.checked(WHERE, {"dataCollector": collector})
    assert refused.value.status == status and message in refused.value.message


def test_a_deployment_without_enabled_collections_gets_nothing(context: ServiceContext, tmp_path: Path) -> None:
    off = data_collection.checked(WHERE, _properties(model_inputs={"dataCollectionMode": "disabled"}))
    assert data_collection.environment(context, "ep", "green", off, tmp_path / "log") == {}
    assert data_collection.environment(context, "ep", "green", {}, tmp_path / "log") == {}
    assert data_collection.agents(context).get("ep", "green") is None


def test_the_agent_writes_azures_json_lines_in_rolled_folders(context: ServiceContext, tmp_path: Path) -> None:
    properties = data_collection.checked(
        WHERE,
        {
            "dataCollector": {
                "collections": {"model_inputs": {"dataCollectionMode": "Enabled", "samplingRate": 0.5}},
                "rollingRate": "Minute",
            }
        },
    )
    variables = data_collection.environment(context, "ep", "green", properties, tmp_path / "log")
    config = json.loads(Path(variables["AZUREML_MDC_CONFIG_PATH"]).read_text())
    assert config == {
        "collections": {"model_inputs": {"enabled": True, "sampleRatePercentage": 50.0}},
        "runMode": "cloud",
    }
    assert "modelDataCollector" in (tmp_path / "log" / "server.log").read_text()

    url = f"http://{variables['AZUREML_MDC_HOST']}:{variables['AZUREML_MDC_PORT']}/modeldata/log"
    headers = {  # what azureml-ai-monitoring's MdcSender sends
        "Content-Type": "application/json",
        "trace-id": "event-1",
        "ce-time": "1796000000",  # 2026-11-30 00:53:20 UTC
        "ce-type": "azureml.inference.model_inputs",
        "ce-x-request-id": "corr-1",
        "ce-collect-data-type": "pandas.core.frame.DataFrame",
        "ce-agent": "azureml-ai-monitoring/1.0.0",
        "ce-model-version": "default",
    }
    assert requests.post(url, data='[{"text":"good"}]', headers=headers, timeout=10).status_code == 200
    other = {**headers, "ce-type": "azureml.inference.model_outputs"}
    refused = requests.post(url, data="[]", headers=other, timeout=10)
    assert refused.status_code == 400 and "model_outputs" in refused.text

    folder = data_collection.local_folder(context, "ep", "green", "model_inputs")
    (path,) = folder.rglob("*.jsonl")
    assert path.parent.relative_to(folder).as_posix() == "2026/11/30/00/53"
    (event,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert event["data"] == [{"text": "good"}]
    assert (event["id"], event["correlationid"], event["xrequestid"]) == ("event-1", "corr-1", "corr-1")
    assert event["type"] == "azureml.inference.model_inputs" and event["time"] == "2026-11-30T00:53:20Z"
    assert event["source"] == f"{context.workspace_id}/onlineEndpoints/ep/deployments/green"
    assert event["contentrange"] == "bytes 0-16/17"
    # The same agent (port) when the deployment's processes are replaced.
    again = data_collection.environment(context, "ep", "green", properties, tmp_path / "log")
    assert again["AZUREML_MDC_PORT"] == variables["AZUREML_MDC_PORT"]
