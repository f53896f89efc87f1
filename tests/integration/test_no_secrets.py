"""No secret anywhere: with a fake storage key, SAS token, connection string and bearer token in the environment
and offered in flags, every artefact of the dry-run and local verbs is searched for them (issue 13's secrets test).

A flag carrying a secret must be refused, and the refusal must not repeat it; the environment's secrets must not
reach job.yml, sweep.yml, pipeline.yml, the snapshot, logs, metrics.json, MLflow params/tags/artifacts or the CLI's
output. A planted leak (the secret in a job tag) is caught, so the search can fail.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from azure_dl.cli.main import main

ACCOUNT_KEY = "FAKEaccountKEYb64Zm9vYmFyYmF6cXV4cXV1eA=="
SAS_SIGNATURE = "FAKEsasSIGNATUREabc123%2Bdef%3D"
CONNECTION_STRING = f"DefaultEndpointsProtocol=https;AccountName=fakeacct;AccountKey={ACCOUNT_KEY};EndpointSuffix=x"
BEARER = "eyJFAKEbearerTOKEN.eyJzdWIiOiJmYWtlIn0.FAKEsignatureXYZ"
SECRETS = (ACCOUNT_KEY, SAS_SIGNATURE, BEARER)
SAS_URL = f"https://fakeacct.blob.core.windows.net/data/reviews.csv?sv=2024-05-04&sr=b&sig={SAS_SIGNATURE}"


@pytest.fixture(autouse=True)
def secrets_in_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", CONNECTION_STRING)
    monkeypatch.setenv("AZURE_STORAGE_KEY", ACCOUNT_KEY)
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", f"sv=2024-05-04&sig={SAS_SIGNATURE}")
    monkeypatch.setenv("AZURE_ACCESS_TOKEN", BEARER)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", BEARER)
    monkeypatch.setenv("AZURE_DL_CATALOG", str(tmp_path / "no-catalog.toml"))
    monkeypatch.chdir(tmp_path)


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def _files_leaking(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".db":  # MLflow's store: params, tags, metrics, run names
            with sqlite3.connect(path) as db:
                tables = [row[0] for row in db.execute("select name from sqlite_master where type='table'")]
                data = "\n".join(
                    str(row) for table in tables for row in db.execute(f'select * from "{table}"')
                ).encode()
        if any(secret.encode() in data for secret in SECRETS):
            found.append(str(path.relative_to(root)))
    return found


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (["--env", f"AZURE_STORAGE_KEY={ACCOUNT_KEY}"], "looks like a secret"),
        (["--env", f"STORAGE={CONNECTION_STRING}"], "keep secrets out of job definitions"),
        (["--tag", f"source={CONNECTION_STRING}"], "keep secrets out of job definitions"),
        (["--data", SAS_URL], "carries a credential"),
        (["--input", f"extra={SAS_URL}"], "carries a credential"),
    ],
)
def test_a_secret_in_a_flag_is_refused_without_being_repeated(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], why: str
) -> None:
    out = tmp_path / "out"
    assert main(["submit", "lstm", *flags, "--dry-run", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert why in captured.err
    assert _leaks(captured.out + captured.err) == []
    assert not out.exists()


def test_no_artefact_of_the_dry_run_and_local_verbs_holds_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    runs = tmp_path / "runs"
    tiny = ["--", "--epochs", "1", "--max-steps", "2"]
    assert main(["submit", "lstm", "--dry-run", "--out", str(runs / "submit")]) == 0
    assert main(["sweep", "lstm", "--dry-run", "--out", str(runs / "sweep")]) == 0
    assert main(["pipeline", "lstm", "--dry-run", "--out", str(runs / "pipeline")]) == 0
    assert main(["submit", "lstm", "--local", "--env", "OMP_NUM_THREADS=1", "--out", str(runs / "local"), *tiny]) == 0
    assert main(["register", str(runs / "local"), "--name", "reviews", "--local"]) == 0
    assert main(["deploy", str(runs / "local"), "--endpoint", "reviews", "--dry-run", "--out", str(runs / "d")]) == 0
    captured = capsys.readouterr()
    assert _leaks(captured.out + captured.err) == []
    assert (runs / "local" / "metrics.json").is_file()
    assert _files_leaking(tmp_path) == []
    store = Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))  # the suite's per-test store
    assert store.is_file() and _files_leaking(store.parent) == []

    # The search can fail: a secret planted in the run's log, or in a dry-run's tag, is found.
    with (runs / "local" / "train.log").open("a", encoding="utf-8") as log:
        log.write(f"debug: connection {CONNECTION_STRING}\n")
    assert _files_leaking(runs / "local") == ["train.log"]
    planted = runs / "planted"
    # (an account key alone has no pattern to refuse it by, so it is what a careless tag would leak)
    assert main(["submit", "lstm", "--tag", f"note={ACCOUNT_KEY}", "--dry-run", "--out", str(planted)]) == 0
    assert _files_leaking(planted) == ["job.yml"]
