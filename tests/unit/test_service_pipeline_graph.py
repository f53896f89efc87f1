"""The local service's reading of a pipeline job: bindings checked, steps ordered, inputs resolved, reuse keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from azure_dl.workspace_service import pipeline_graph
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError
from tests.service_fakes import WS, component, literal, service_context


@pytest.fixture()
def pipeline(tmp_path: Path) -> tuple[ServiceContext, dict[str, Any]]:
    context = service_context(tmp_path)
    prepare = component(context, "p", {"data": {"type": "uri_file"}}, {"prepared": {"type": "uri_folder"}})
    train = component(
        context,
        "t",
        {
            "data": {"type": "uri_folder"},
            "epochs": {"type": "integer", "default": "10"},
            "glove": {"type": "uri_file", "optional": True},
        },
        {"model": {"type": "uri_folder"}},
    )
    properties = {
        "jobType": "Pipeline",
        "inputs": {
            "data": {
                "uri": "azureml://datastores/workspaceblobstore/paths/LocalUpload/abc/d.csv",
                "jobInputType": "uri_file",
            },
            "epochs": {"value": "2", "jobInputType": "literal"},
            "cpu": {"value": "d4s-v3", "jobInputType": "literal"},
        },
        "outputs": {"registered_model": {"assetName": "m", "jobOutputType": "custom_model"}},
        "jobs": {
            # Declared out of order: train reads prepare.
            "train": {
                "type": "command",
                "componentId": train,
                "computeId": "${{parent.inputs.cpu}}",
                "inputs": {
                    "data": literal("${{parent.jobs.prepare.outputs.prepared}}"),
                    "epochs": literal("${{parent.inputs.epochs}}"),
                },
                "outputs": {"model": {"value": "${{parent.outputs.registered_model}}", "type": "literal"}},
            },
            "prepare": {
                "type": "command",
                "componentId": prepare,
                "inputs": {"data": literal("${{parent.inputs.data}}")},
            },
        },
    }
    return context, properties


def test_steps_run_after_what_they_read_and_inputs_resolve(pipeline: tuple[ServiceContext, dict[str, Any]]) -> None:
    context, properties = pipeline
    steps = pipeline_graph.parse(context, properties)
    assert [step.name for step in steps] == ["prepare", "train"]
    prepare, train = steps
    assert train.upstream == {"prepare"} and train.output_bindings == {"model": "registered_model"}
    assert pipeline_graph.resolve_compute(train, properties["inputs"]) == "d4s-v3"
    assert pipeline_graph.resolve_compute(prepare, properties["inputs"]) is None
    upstream = {"prepare": {"prepared": "azureml://datastores/workspaceblobstore/paths/azureml/job1/prepared/"}}
    inputs = pipeline_graph.resolve_inputs(train, properties["inputs"], upstream)
    assert inputs == {
        "data": {"jobInputType": "uri_folder", "uri": upstream["prepare"]["prepared"]},
        "epochs": {"value": "2", "jobInputType": "literal"},
    }  # glove is optional and unbound: left out, so the step's $[[...]] block drops out
    assert pipeline_graph.resolve_inputs(prepare, properties["inputs"], {})["data"]["jobInputType"] == "uri_file"


def test_reuse_keys_follow_content_and_inputs(pipeline: tuple[ServiceContext, dict[str, Any]]) -> None:
    context, properties = pipeline
    _, train = pipeline_graph.parse(context, properties)
    a = pipeline_graph.resolve_inputs(train, properties["inputs"], {"prepare": {"prepared": "azureml://x/1/"}})
    b = pipeline_graph.resolve_inputs(train, properties["inputs"], {"prepare": {"prepared": "azureml://x/2/"}})
    assert pipeline_graph.reuse_key(train, a) == pipeline_graph.reuse_key(train, dict(a))
    assert pipeline_graph.reuse_key(train, a) != pipeline_graph.reuse_key(train, b)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda p: p["jobs"]["train"]["inputs"].update(data=literal("${{parent.jobs.nope.outputs.x}}")),
            "reads step 'nope'",
        ),
        (
            lambda p: p["jobs"]["train"]["inputs"].update(data=literal("${{parent.jobs.prepare.outputs.x}}")),
            "output 'x' of step 'prepare'",
        ),
        (
            lambda p: p["jobs"]["train"]["inputs"].update(epochs=literal("${{parent.inputs.missing}}")),
            "pipeline input 'missing'",
        ),
        (lambda p: p["jobs"]["train"]["inputs"].update(extra=literal("1")), "input 'extra' is not an input"),
        (lambda p: p["jobs"]["prepare"]["inputs"].clear(), "required input 'data' is not bound"),
        (lambda p: p["jobs"]["prepare"].update(componentId=f"{WS}/components/x/versions/9"), "does not exist"),
        (
            lambda p: p["jobs"]["prepare"]["inputs"].update(data=literal("${{parent.jobs.train.outputs.model}}")),
            "cycle",
        ),
    ],
)
def test_bad_bindings_are_400s_naming_the_step(
    pipeline: tuple[ServiceContext, dict[str, Any]], mutate: Any, message: str
) -> None:
    context, properties = pipeline
    mutate(properties)
    with pytest.raises(ApiError, match=message) as raised:
        pipeline_graph.parse(context, properties)
    assert raised.value.status == 400


def test_node_types_the_service_does_not_run_are_501s(pipeline: tuple[ServiceContext, dict[str, Any]]) -> None:
    context, properties = pipeline
    properties["jobs"]["prepare"]["type"] = "parallel"
    with pytest.raises(ApiError, match="'parallel' node") as raised:
        pipeline_graph.parse(context, properties)
    assert raised.value.status == 501
