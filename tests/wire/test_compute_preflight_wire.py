"""`azure-dl submit|sweep` cluster and quota checks through main() against the local service, stopped before the job.

The local service has no jobs yet, so these stop at the check (a refusal) or let the job PUT fail (501): what is
tested is the cluster and quota preflight over the wire, and that a refusal comes before any upload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from azure_dl.cli.main import main
from azure_dl.workspace_service import codes, computes
from azure_dl.workspace_service.service import WorkspaceService

T4 = "Standard_NC4as_T4_v3"  # 4 vCPUs, family standardNCASv3_T4Family
CPU = "Standard_DS3_v2"  # 4 vCPUs, family standardDSv2Family

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)


@pytest.fixture()
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AZURE_DL_CATALOG", str(tmp_path / "no-user-catalog.toml"))  # the packaged catalogue only
    return tmp_path


def _uploads(service: WorkspaceService) -> tuple[list[dict[str, Any]], list[Path]]:
    """Code versions and blob files: what a submission would have uploaded."""
    assert service.context is not None
    blobs = service.data_dir / "blobs"
    files = sorted(path for path in blobs.rglob("*") if path.is_file()) if blobs.is_dir() else []
    return service.context.store.list(codes.KIND), files


def _cluster(service: WorkspaceService, name: str) -> dict[str, Any] | None:
    assert service.context is not None
    return service.context.store.get(computes.KIND, name)


def test_a_zero_family_quota_refuses_submit_before_any_upload(
    connection, cwd: Path, quota_file: Path, workspace_service: WorkspaceService, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    quota_file.write_text("[dedicated.families]\nstandardNCASv3_T4Family = 0\n")
    before = _uploads(workspace_service)
    code = main(["submit", "resnet", "--ensure-compute", "--compute", "t4-zero", "--vm-size", T4, "--out", "run"])
    err = capsys.readouterr().err
    assert code != 0
    assert "not enough dedicated vCPU quota" in err
    assert "the job needs 4 vCPUs (1 node x 4 of Standard_NC4as_T4_v3)" in err
    assert "family standardNCASv3_T4Family" in err and "allows 0" in err
    assert _uploads(workspace_service) == before  # refused before the code or data went anywhere
    assert _cluster(workspace_service, "t4-zero") is None


def test_submit_ensure_compute_grows_an_existing_cluster_then_reaches_the_job_put(
    connection, cwd: Path, workspace_service: WorkspaceService, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    assert main(["compute", "ensure", "cpu-grow", "--size", CPU, "--max-nodes", "1"]) == 0
    try:
        code = main(
            [
                *("submit", "lstm", "--ensure-compute", "--compute", "cpu-grow", "--vm-size", CPU),
                *("--instance-count", "2", "--out", "run"),
            ]
        )
        out, err = capsys.readouterr()
        assert "compute cluster cpu-grow: updated (Standard_DS3_v2, 0-2 nodes)" in err  # it crashed in the SDK
        cluster = _cluster(workspace_service, "cpu-grow")
        assert cluster is not None
        assert cluster["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 2
        assert cluster["properties"]["properties"]["remoteLoginPortPublicAccess"] == "NotSpecified"
        assert code == 0, err
        # The job PUT went through; this test is about the cluster before it, so the job is stopped at once.
        job_name = next(line.split()[-1] for line in out.splitlines() if line.startswith("Submitted job "))
        assert main(["jobs", "cancel", job_name]) == 0
    finally:
        main(["compute", "delete", "cpu-grow", "--yes"])


def test_low_priority_on_an_existing_dedicated_cluster_is_refused_before_any_upload(
    connection, cwd: Path, workspace_service: WorkspaceService, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    assert main(["compute", "ensure", "cpu-dedicated", "--size", CPU, "--max-nodes", "2"]) == 0
    try:
        before = _uploads(workspace_service)
        code = main(
            ["submit", "resnet", "--low-priority", "--compute", "cpu-dedicated", "--vm-size", CPU, "--out", "r"]
        )
        err = capsys.readouterr().err
        assert code != 0
        assert "--low-priority was asked for, but compute cluster 'cpu-dedicated' is dedicated" in err
        assert _uploads(workspace_service) == before
    finally:
        main(["compute", "delete", "cpu-dedicated", "--yes"])


def test_a_sweep_checks_quota_for_nodes_times_concurrent_trials(
    connection, cwd: Path, quota_file: Path, workspace_service: WorkspaceService, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    # 8 vCPUs: one trial of 2 nodes x 4 vCPUs fits, 3 concurrent trials (24 vCPUs) do not.
    quota_file.write_text("[dedicated.families]\nstandardDSv2Family = 8\n")
    before = _uploads(workspace_service)
    code = main(
        [
            *("sweep", "resnet", "--ensure-compute", "--compute", "cpu-sweep", "--vm-size", CPU),
            *("--instance-count", "2", "--max-trials", "3", "--max-concurrent", "3", "--out", "sweep"),
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert "the job needs 24 vCPUs (6 nodes x 4 of Standard_DS3_v2)" in err
    assert "allows 8" in err
    assert _uploads(workspace_service) == before
    assert _cluster(workspace_service, "cpu-sweep") is None
