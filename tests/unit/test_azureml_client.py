"""The MLClient factory (offline), credentials, retry settings, studio URLs and redacted SDK errors."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pytest

from azure_dl.backends.azureml import client as client_module
from azure_dl.backends.azureml.client import (
    RETRY_SETTINGS,
    azure_error,
    client_from_args,
    get_ml_client,
    job_studio_url,
    make_credential,
    redact,
    require_sdk,
    sdk_errors,
)
from azure_dl.errors import AzureDLError, ConfigError
from azure_dl.workspace import WorkspaceSettings
from tests.azure_fakes import FakeCredential, http_error

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

SETTINGS = WorkspaceSettings("sub-1", "rg-1", "ws-1", source="test")
SAS_URL = "https://acct.blob.core.windows.net/c/model.onnx?sv=2022-11-02&se=2030-01-01&sr=b&sp=r&sig=AbC%2Bdef123%3D"
JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL21sLmF6dXJlLmNvbSJ9.c2lnbmF0dXJlLXBhcnQ"
ACCOUNT_KEY = "A" * 86 + "=="


def _retry_policies(ml_client: Any) -> list[Any]:
    """The RetryPolicy of every REST client behind the operation groups (`_service_client_*`)."""
    policies = []
    for name, value in vars(ml_client).items():
        if not name.startswith("_service_client"):
            continue
        config = getattr(value, "_config", None)
        policy = getattr(config, "retry_policy", None)
        if policy is not None and hasattr(policy, "total_retries"):
            policies.append(policy)
    return policies


def test_ml_client_is_built_offline_for_the_workspace() -> None:
    credential = FakeCredential()
    ml_client = get_ml_client(SETTINGS, credential=credential)
    assert (ml_client.subscription_id, ml_client.resource_group_name, ml_client.workspace_name) == (
        "sub-1",
        "rg-1",
        "ws-1",
    )
    assert credential.requests == []  # no token was asked for


def test_transient_errors_are_retried_by_azure_core() -> None:
    policies = _retry_policies(get_ml_client(SETTINGS, credential=FakeCredential()))
    assert len(policies) >= 5
    for policy in policies:
        assert policy.total_retries == RETRY_SETTINGS["retry_total"]
        assert policy.status_retries == RETRY_SETTINGS["retry_status"]
        assert policy.backoff_factor == RETRY_SETTINGS["retry_backoff_factor"]
        assert {429, 500, 502, 503, 504} <= set(policy._retry_on_status_codes)


@pytest.mark.parametrize(
    ("auth", "class_name"),
    [
        ("default", "DefaultAzureCredential"),
        ("cli", "AzureCliCredential"),
        ("managed-identity", "ManagedIdentityCredential"),
        ("interactive", "InteractiveBrowserCredential"),
    ],
)
def test_auth_choices_pick_the_azure_identity_credential(auth: str, class_name: str) -> None:
    assert type(make_credential(auth)).__name__ == class_name


def test_unknown_auth_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown --auth 'password'"):
        make_credential("password")


def test_missing_sdk_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.ai.ml", None)  # makes `import azure.ai.ml` raise ImportError
    with pytest.raises(ConfigError) as info:
        require_sdk()
    assert "pip install azure-ai-ml azure-identity" in str(info.value)
    with pytest.raises(ConfigError, match="pip install"):
        get_ml_client(SETTINGS, credential=FakeCredential())


def test_client_from_args_resolves_the_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def fake_credential(auth: str) -> FakeCredential:
        seen.append(auth)
        return FakeCredential()

    monkeypatch.setattr(client_module, "make_credential", fake_credential)
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "ws-env")
    args = argparse.Namespace(subscription="s", resource_group="r", workspace=None, auth="cli")
    ml_client = client_from_args(args)
    assert (ml_client.subscription_id, ml_client.workspace_name) == ("s", "ws-env")
    assert seen == ["cli"]


def test_studio_url() -> None:
    ml_client = get_ml_client(SETTINGS, credential=FakeCredential())
    assert job_studio_url(ml_client, "job-1") == (
        "https://ml.azure.com/runs/job-1?wsid=/subscriptions/sub-1/resourcegroups/rg-1/workspaces/ws-1"
    )


@pytest.mark.parametrize(
    ("secret_text", "secret"),
    [
        (f"cannot read {SAS_URL}", "AbC%2Bdef123%3D"),
        (f"Authorization: Bearer {JWT}", JWT),
        (f"token {JWT} expired", JWT),
        (f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={ACCOUNT_KEY};", ACCOUNT_KEY),
        ('{"primaryKey": "s3cr3tvalue", "name": "ep"}', "s3cr3tvalue"),
        ("password=hunter2 for user", "hunter2"),
        (f"key {ACCOUNT_KEY}", ACCOUNT_KEY),
    ],
)
def test_redact_hides_secrets(secret_text: str, secret: str) -> None:
    cleaned = redact(secret_text)
    assert secret not in cleaned
    assert "***" in cleaned


def test_redact_keeps_ordinary_text() -> None:
    text = "Compute gpu-t4 (Standard_NC4as_T4_v3) not found in workspace ws-1; see https://ml.azure.com/runs/x?wsid=/s"
    assert redact(text) == text


def test_http_errors_become_redacted_azure_dl_errors() -> None:
    error = azure_error(http_error(503, f"storage said no: {SAS_URL}"), "submit job j1")
    assert isinstance(error, AzureDLError)
    text = str(error)
    assert "could not submit job j1" in text and "503 Service Unavailable" in text
    assert "AbC%2Bdef123%3D" not in text and "sig=***" in text
    assert "try again" in text


def test_sign_in_and_not_found_errors() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    auth = azure_error(http_error(401, "no token"), "list jobs")
    assert isinstance(auth, ConfigError) and "az login" in str(auth)
    chain = "DefaultAzureCredential failed to retrieve a token.\nAttempted credentials:\n\tEnvironmentCredential: ..."
    short = str(azure_error(ClientAuthenticationError(message=chain), "list jobs"))
    assert "failed to retrieve a token" in short and "Attempted credentials" not in short
    missing = azure_error(http_error(404, "Job x was not found"), "read job x")
    assert "not found (404)" in str(missing)


def test_sdk_errors_wraps_without_chaining_the_raw_exception() -> None:
    with pytest.raises(AzureDLError) as info, sdk_errors("do a thing"):
        raise http_error(500, f"boom {JWT}")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert JWT not in str(info.value)


def test_sdk_errors_passes_azure_dl_errors_through() -> None:
    original = ConfigError("mine")
    with pytest.raises(ConfigError) as info, sdk_errors("do a thing"):
        raise original
    assert info.value is original
