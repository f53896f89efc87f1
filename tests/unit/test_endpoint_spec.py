"""Endpoint/deployment specs and traffic rules: every bad value is refused before any I/O, with what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from azure_dl.endpoint_spec import (
    MANAGED_ONLINE_SKUS,
    DeploymentSpec,
    EndpointSpec,
    ModelRef,
    check_instance_type,
    check_name,
    parse_model_ref,
    parse_split,
    validate_mirror,
    validate_traffic,
)
from azure_dl.environments import environment_spec
from azure_dl.errors import SpecError


@pytest.fixture
def code(tmp_path: Path) -> Path:
    for script in ("score_resnet.py", "score_lstm.py"):
        path = tmp_path / "code" / "training_scripts" / script
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    return tmp_path / "code"


def deployment(code: Path, **overrides: object) -> DeploymentSpec:
    fields: dict[str, object] = {
        "name": "green",
        "endpoint_name": "xray-endpoint",
        "model": ModelRef("xray", "3"),
        "task": "image-classification",
        "code": code,
        "environment": environment_spec("inference"),
    }
    fields.update(overrides)
    return DeploymentSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["ab", "1endpoint", "endpoint-", "end_point", "x" * 33])
def test_invalid_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(SpecError, match="3-32 characters"):
        check_name(name, "endpoint")


def test_valid_name_passes() -> None:
    assert check_name("xray-v2", "deployment") == "xray-v2"


def test_cpu_sizes_on_the_managed_list_are_accepted() -> None:
    assert check_instance_type("Standard_DS3_v2").name == "Standard_DS3_v2"
    assert check_instance_type("standard_e4s_v3").name == "Standard_E4s_v3"


def test_a_catalogue_size_that_managed_endpoints_reject_is_refused_with_the_list() -> None:
    # Dsv3 is not on Microsoft's managed online endpoint SKU list (checked 2023-10-18 revision).
    assert "standard_d4s_v3" not in MANAGED_ONLINE_SKUS
    with pytest.raises(SpecError) as raised:
        check_instance_type("Standard_D4s_v3")
    assert "not one managed online endpoints accept" in str(raised.value)
    assert "Standard_DS3_v2" in str(raised.value) and "vm-sku-list" in str(raised.value)


def test_retired_and_unknown_sizes_are_refused_by_the_catalogue() -> None:
    with pytest.raises(SpecError, match="retired"):
        check_instance_type("Standard_NC6s_v3")
    with pytest.raises(SpecError, match="unknown VM size"):
        check_instance_type("Standard_Nope_v9")


def test_model_refs() -> None:
    assert parse_model_ref("xray:3") == ModelRef("xray", "3")
    assert parse_model_ref("azureml:xray").asset == "azureml:xray@latest"
    assert ModelRef("xray", "3").asset == "azureml:xray:3"
    with pytest.raises(SpecError, match="model name"):
        parse_model_ref("bad name:1")


def test_endpoint_auth_mode_is_checked() -> None:
    assert EndpointSpec("xray-endpoint", auth_mode="aml_token").auth_mode == "aml_token"
    with pytest.raises(SpecError, match="auth mode"):
        EndpointSpec("xray-endpoint", auth_mode="aad_token")


def test_deployment_spec_picks_the_scoring_script_by_task(code: Path) -> None:
    assert deployment(code).scoring_script == "training_scripts/score_resnet.py"
    assert deployment(code, task="text-classification").scoring_script == "training_scripts/score_lstm.py"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "segmentation"}, "no scoring script"),
        ({"instance_count": 0}, "instance-count"),
        ({"request_timeout_ms": 200_000}, "the service's limit"),
        ({"max_concurrent_requests": 0}, "concurrent"),
        ({"env_vars": {"API_KEY": "x"}}, "credential"),
        ({"env_vars": {"1BAD": "x"}}, "variable name"),
        ({"instance_type": "Standard_D4s_v3"}, "managed online endpoints"),
    ],
)
def test_deployment_spec_refuses_bad_values(code: Path, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        deployment(code, **overrides)


def test_deployment_spec_needs_the_scoring_script_in_the_code_folder(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"scoring script training_scripts/score_resnet\.py not found"):
        deployment(tmp_path)


def test_parse_split() -> None:
    assert parse_split("blue=90, green=10") == {"blue": 90, "green": 10}
    assert parse_split("blue:100") == {"blue": 100}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("blue", "NAME=PERCENT"),
        ("blue=ninety", "whole number"),
        ("blue=101", "between 0 and 100"),
        ("blue=50,blue=50", "twice"),
        ("", "empty"),
    ],
)
def test_parse_split_refuses(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_split(text)


def test_traffic_must_sum_to_100_over_existing_deployments() -> None:
    assert validate_traffic({"green": 100}, ["blue", "green"]) == {"blue": 0, "green": 100}
    with pytest.raises(SpecError, match="sums to 90"):
        validate_traffic({"blue": 80, "green": 10}, ["blue", "green"])
    with pytest.raises(SpecError, match="does not have") as raised:
        validate_traffic({"blue": 90, "red": 10}, ["blue", "green"])
    assert "its deployments: blue, green" in str(raised.value)


def test_mirror_rules() -> None:
    traffic = {"blue": 100, "green": 0}
    assert validate_mirror({"green": 10}, traffic, ["blue", "green"]) == {"green": 10}
    assert validate_mirror({"green": 0}, traffic, ["blue", "green"]) == {}
    with pytest.raises(SpecError, match="at most 50%"):
        validate_mirror({"green": 60}, traffic, ["blue", "green"])
    with pytest.raises(SpecError, match="takes 100% of live traffic"):
        validate_mirror({"blue": 10}, traffic, ["blue", "green"])
    with pytest.raises(SpecError, match="one deployment"):
        validate_mirror({"green": 10, "red": 5}, traffic, ["blue", "green", "red"])
    with pytest.raises(SpecError, match="does not have"):
        validate_mirror({"red": 10}, traffic, ["blue", "green"])
    with pytest.raises(SpecError, match="copy requests from"):
        validate_mirror({"green": 10}, {"blue": 0, "green": 0}, ["blue", "green"])


def test_batch_limit_variable_matches_the_scoring_scripts() -> None:
    from azure_dl.cli import deploy
    from azure_dl.endpoint_spec import DEFAULT_MAX_BATCH, MAX_BATCH_ENV
    from training_scripts import scoring_request

    assert (MAX_BATCH_ENV, DEFAULT_MAX_BATCH) == (scoring_request.MAX_BATCH_ENV, scoring_request.DEFAULT_MAX_BATCH)
    assert deploy.DEFAULT_MAX_BATCH == DEFAULT_MAX_BATCH


def test_check_split_offline() -> None:
    from azure_dl.endpoint_spec import check_split

    check_split({"blue": 90, "green": 10}, {"red": 20})
    check_split(None, {"green": 50})
    with pytest.raises(SpecError, match="sums to 110"):
        check_split({"blue": 90, "green": 20}, None)
    with pytest.raises(SpecError, match="at most 50%"):
        check_split(None, {"green": 51})
    with pytest.raises(SpecError, match="takes 10% of live traffic"):
        check_split({"blue": 90, "green": 10}, {"green": 10})
