"""No credential reaches an artefact: secrets in the environment and in flag values never appear in the captured
output, the exception texts, or any file a dry run writes (job.yml, snapshot, environment files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from azure_dl import catalog, staging
from azure_dl.cli.main import main

ACCOUNT_KEY = "c2VjcmV0S2V5Rm9yVGVzdHNPbmx5MTIzNDU2Nzg5MA=="
SAS_SIG = "Zm9vYmFyU2lnbmF0dXJlMTIzNDU2"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"
SECRETS = (ACCOUNT_KEY, SAS_SIG, BEARER)
CONNECTION = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
SAS_URL = f"https://acct.blob.core.windows.net/c/x?sv=2022-11-02&sig={SAS_SIG}"


@pytest.fixture(autouse=True)
def secret_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(tmp_path / "none.toml"))
    monkeypatch.setattr(staging, "git_commit", lambda folder: "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", CONNECTION)
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", f"?sv=2022-11-02&sig={SAS_SIG}")
    monkeypatch.setenv("AZURE_ACCESS_TOKEN", BEARER)
    monkeypatch.setenv("HTTP_AUTHORIZATION", f"Authorization: Bearer {BEARER}")


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


def assert_folder_clean(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            assert_clean(path.read_bytes().decode("utf-8", errors="replace"), str(path))


@pytest.mark.parametrize("verb", ["submit", "sweep"])
def test_dry_runs_leave_environment_secrets_out(tmp_path: Path, capsys: pytest.CaptureFixture, verb: str) -> None:
    out = tmp_path / "out"
    assert main([verb, "resnet", "--data", "azureml:chest-xray:1", "--dry-run", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert_clean(captured.out + captured.err, "the captured output")
    assert any(out.glob("*.yml")), "the dry run wrote no YAML to search"
    assert_folder_clean(out)


@pytest.mark.parametrize(
    "extra",
    [
        ["--data", SAS_URL],
        ["--env", f"AZURE_STORAGE_CONNECTION_STRING={CONNECTION}"],
        ["--env", f"TOKEN={BEARER}"],
        ["--tag", f"note=Bearer {BEARER}"],
    ],
)
def test_secret_flag_values_are_refused_without_echo(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str]
) -> None:
    out = tmp_path / "out"
    data = [] if "--data" in extra else ["--data", "azureml:chest-xray:1"]
    assert main(["submit", "resnet", *data, *extra, "--dry-run", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "credential" in captured.err or "looks like a secret" in captured.err
    assert_clean(captured.out + captured.err, "the refusal message")
    assert not out.exists()
