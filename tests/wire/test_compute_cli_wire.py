"""`azure-dl compute ensure|delete|quota` through the CLI's main() against the local service (the real SDK)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from azure_dl.cli.main import main
from azure_dl.workspace_service import computes
from azure_dl.workspace_service.service import WorkspaceService

SIZE = "Standard_DS3_v2"

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)


@pytest.fixture()
def wire(workspace_service: WorkspaceService, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, Any]]]:
    """Every request the service answers during the test: (method, path, JSON body or None)."""
    seen: list[tuple[str, str, Any]] = []
    router = workspace_service._server.router  # type: ignore[union-attr]
    dispatch = router.dispatch

    def _recording(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        document = json.loads(body) if body and "json" in headers.get("Content-Type", "") else None
        seen.append((method, target.split("?", 1)[0], document))
        return dispatch(method, target, headers, body)

    monkeypatch.setattr(router, "dispatch", _recording)
    yield seen


@pytest.fixture()
def ml_client(connection: dict[str, str], module_ml_client):  # type: ignore[no-untyped-def]
    """This module's tests share one client (tests/wire/conftest.py: module_ml_client)."""
    return module_ml_client


@pytest.fixture()
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AZURE_DL_CATALOG", str(tmp_path / "no-user-catalog.toml"))  # the packaged catalogue only
    return tmp_path


def _stored(service: WorkspaceService, name: str) -> dict[str, Any] | None:
    assert service.context is not None
    return service.context.store.get(computes.KIND, name)


def _writes(wire: list[tuple[str, str, Any]], name: str) -> list[tuple[str, Any]]:
    return [(method, body) for method, path, body in wire if method in ("PUT", "PATCH") and path.endswith(f"/{name}")]


def test_ensure_creates_is_a_no_op_grows_only_the_nodes_and_delete_removes_it(
    connection, cwd: Path, wire, workspace_service: WorkspaceService, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    ensure = ["compute", "ensure", "cli-grow", "--size", SIZE, "--max-nodes", "1"]
    try:
        assert main(ensure) == 0
        assert "Compute cluster cli-grow: created" in capsys.readouterr().out
        created = _stored(workspace_service, "cli-grow")
        assert created is not None
        sent = created["properties"]["properties"]
        assert sent["remoteLoginPortPublicAccess"] == "NotSpecified"  # what the SDK sends for a new cluster

        assert main(ensure) == 0
        assert "Compute cluster cli-grow: unchanged" in capsys.readouterr().out

        wire.clear()
        assert main([*ensure[:-1], "3"]) == 0  # grow: max nodes 1 -> 3 (it crashed in the SDK with None.lower())
        assert "Compute cluster cli-grow: updated" in capsys.readouterr().out
        grown = _stored(workspace_service, "cli-grow")
        assert grown is not None
        assert grown["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 3
        # Only the scale settings went over the wire: no rewrite of remote login, subnet or credentials.
        ((method, body),) = _writes(wire, "cli-grow")
        assert (method, body) == (
            "PATCH",
            {"properties": {"properties": {"scaleSettings": sent["scaleSettings"] | {"maxNodeCount": 3}}}},
        )
        assert grown["properties"]["properties"]["remoteLoginPortPublicAccess"] == "NotSpecified"

        wire.clear()  # nodes and idle time both change: still one PATCH of the scale settings
        assert main([*ensure[:-1], "4", "--idle-minutes", "10"]) == 0
        scale = {"maxNodeCount": 4, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT10M"}
        assert _writes(wire, "cli-grow") == [("PATCH", {"properties": {"properties": {"scaleSettings": scale}}})]
        rescaled = _stored(workspace_service, "cli-grow")
        assert rescaled is not None
        assert rescaled["properties"]["properties"]["scaleSettings"] == scale
        capsys.readouterr()

        assert main(["compute", "delete", "cli-grow", "--yes"]) == 0
        assert "Deleted compute cli-grow" in capsys.readouterr().out
        assert _stored(workspace_service, "cli-grow") is None
        assert main(["compute", "delete", "cli-grow", "--yes"]) != 0
        assert "there is no compute named 'cli-grow'" in capsys.readouterr().err
    finally:
        if _stored(workspace_service, "cli-grow") is not None:
            main(["compute", "delete", "cli-grow", "--yes"])


def test_quota_lists_the_families_and_checks_a_size(
    connection, cwd: Path, quota_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    quota_file.write_text("[dedicated.families]\nstandardDSv2Family = 8\n")
    assert main(["compute", "quota"]) == 0
    out = capsys.readouterr().out
    assert "Standard DSv2 Family Cluster Dedicated vCPUs" in out
    assert "Total Cluster Dedicated Regional vCPUs" in out

    assert main(["compute", "quota", "--size", SIZE, "--nodes", "2"]) == 0
    assert main(["compute", "quota", "--size", SIZE, "--nodes", "3"]) != 0
    err = capsys.readouterr().err
    assert "needs 12 vCPUs (3 nodes x 4 of Standard_DS3_v2)" in err
    assert "allows 8" in err


def test_only_grow_keeps_a_larger_cluster_and_grows_a_smaller_one_keeping_its_settings(ml_client, wire) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import AmlCompute

    from azure_dl.backends.azureml.compute import ensure_compute

    cluster = AmlCompute(name="grow-only", size=SIZE, min_instances=1, max_instances=4, idle_time_before_scale_down=600)
    ml_client.compute.begin_create_or_update(cluster).result()
    try:
        assert ensure_compute(ml_client, "grow-only", SIZE, 1, only_grow=True).action == "unchanged"
        result = ensure_compute(ml_client, "grow-only", SIZE, 6, only_grow=True)
        assert result.action == "updated"
        assert (result.compute.min_instances, result.compute.max_instances) == (1, 6)
        assert result.compute.idle_time_before_scale_down == 600
        assert _writes(wire, "grow-only")[-1][1] == {
            "properties": {
                "properties": {
                    "scaleSettings": {"maxNodeCount": 6, "minNodeCount": 1, "nodeIdleTimeBeforeScaleDown": "PT10M"}
                }
            }
        }
    finally:
        ml_client.compute.begin_delete("grow-only").result()
