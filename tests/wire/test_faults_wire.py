"""Injected faults seen by the real SDK: a 503 / 429 is retried by azure-core and the PUT lands once; a dropped
response is retried and gives one resource; more faults than retries is a clean azure-dl error, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from azure_dl.workspace_service.faults import Faults
from azure_dl.workspace_service.service import WorkspaceService

IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"


def _versions(service: WorkspaceService, kind: str, name: str) -> list[str]:
    assert service.context is not None
    return sorted(record["version"] for record in service.context.store.list(kind) if record["name"] == name)


@pytest.mark.parametrize("status", [503, 429])
def test_an_injected_status_on_an_environment_put_is_retried_and_lands_once(
    ml_client, workspace_service: WorkspaceService, faults: Faults, status: int
) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import Environment

    name = f"faulted-env-{status}"
    fault = faults.add("PUT", f"/environments/{name}/versions/", status=status, times=2, retry_after=0.01)
    created = ml_client.environments.create_or_update(Environment(name=name, version="1", image=IMAGE))
    assert (created.name, created.version, created.image) == (name, "1", IMAGE)
    assert fault.hits == 2  # both injected answers were seen; the third attempt was served
    assert _versions(workspace_service, "environments", name) == ["1"]


def test_a_dropped_code_version_put_is_retried_and_gives_one_version(
    ml_client, workspace_service: WorkspaceService, faults: Faults, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities._assets import Code

    source = tmp_path / "src"
    source.mkdir()
    (source / "dropped.py").write_text("print('the first answer is lost')\n")
    fault = faults.add("PUT", "/codes/dropped-code/versions/", drop=True)
    created = ml_client._code.create_or_update(Code(path=str(source), name="dropped-code", version="1"))
    assert (created.name, created.version) == ("dropped-code", "1")
    assert fault.hits == 1
    assert _versions(workspace_service, "codes", "dropped-code") == ["1"]


def test_a_dropped_response_is_processed_before_the_connection_closes(
    workspace_service: WorkspaceService, faults: Faults
) -> None:
    import http.client
    import ssl

    from azure_dl.workspace_service.identity import issue_token

    assert workspace_service.context is not None
    context = workspace_service.context
    faults.add("PUT", "/environments/dropped-env/versions/1$", drop=True)
    token, _ = issue_token(context, context.base_url)
    tls = ssl.create_default_context(cafile=str(workspace_service.data_dir / "tls" / "ca-bundle.pem"))
    host, port = context.host.split(":")
    connection = http.client.HTTPSConnection(host, int(port), context=tls, timeout=10)
    body = b'{"properties": {"image": "' + IMAGE.encode() + b'"}}'
    connection.request(
        "PUT",
        f"{context.workspace_id}/environments/dropped-env/versions/1?api-version=2023-04-01",
        body=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        connection.getresponse()
    connection.close()
    assert _versions(workspace_service, "environments", "dropped-env") == ["1"]


def test_more_faults_than_retries_is_a_clean_cli_error(
    connection: dict[str, str], faults: Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure_dl.backends.azureml.client import RETRY_SETTINGS
    from azure_dl.cli.main import main

    attempts = RETRY_SETTINGS["retry_status"] + 1
    fault = faults.add("GET", "/jobs$", status=503, times=attempts + 3, retry_after=0.01)
    assert main(["jobs", "list"]) == 2
    err = capsys.readouterr().err
    assert "could not list jobs: Azure ML returned 503" in err
    assert "retried already" in err
    assert "Traceback" not in err
    assert fault.hits == attempts  # azure-core gave up after its own retries, the rest stay pending


def test_faults_are_set_listed_and_cleared_through_the_cli(
    workspace_service: WorkspaceService, faults: Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure_dl.cli.main import main

    directory = str(workspace_service.data_dir)
    args = ["workspace", "fault", "--dir", directory, "--method", "put", "--path", "/jobs/", "--status", "429"]
    assert main([*args, "--times", "2", "--retry-after", "1"]) == 0
    assert "PUT /jobs/: status 429, Retry-After 1 s, hit 0 of 2" in capsys.readouterr().out
    assert [(rule.method, rule.status, rule.times) for rule in faults.rules()] == [("PUT", 429, 2)]
    assert main(["workspace", "fault", "--dir", directory, "--clear"]) == 0
    assert "no faults pending" in capsys.readouterr().out
    assert faults.rules() == []


def test_a_bad_fault_is_refused_with_the_reason(
    workspace_service: WorkspaceService, faults: Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure_dl.cli.main import main

    directory = str(workspace_service.data_dir)
    assert main(["workspace", "fault", "--dir", directory, "--method", "PUT", "--path", "(", "--drop"]) == 2
    assert "is not a regular expression" in capsys.readouterr().err
    assert main(["workspace", "fault", "--dir", directory, "--method", "PUT", "--path", "x", "--status", "404"]) == 2
    assert "404 is not one of" in capsys.readouterr().err
    assert faults.rules() == []


def test_the_admin_route_needs_the_identity_secret(workspace_service: WorkspaceService, faults: Faults) -> None:
    import ssl
    import urllib.error
    import urllib.request

    assert workspace_service.context is not None
    request = urllib.request.Request(
        f"{workspace_service.context.base_url}/azure-dl/faults",
        data=b'{"method": "PUT", "path": "/jobs/", "drop": true}',
        headers={"X-IDENTITY-HEADER": "not-the-secret", "Content-Type": "application/json"},
    )
    tls = ssl.create_default_context(cafile=str(workspace_service.data_dir / "tls" / "ca-bundle.pem"))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=tls, timeout=10)
    assert refused.value.code == 401
    assert faults.rules() == []


def test_a_fault_for_a_folder_nothing_serves_names_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure_dl.cli.main import main

    assert main(["workspace", "fault", "--dir", str(tmp_path), "--method", "PUT", "--path", "x", "--drop"]) == 2
    assert f"no running local workspace serves {tmp_path}" in capsys.readouterr().err
