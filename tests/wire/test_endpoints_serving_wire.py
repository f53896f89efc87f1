"""Serving on the local workspace service, end to end: the tiny trained LSTM registered with `azure-dl register`,
deployed with `azure-dl deploy` (blue, then green smoke-tested through the header before it takes 10%), scored
with `azure-dl score`, plain requests and the SDK's `invoke`; the 90/10 split over 400 requests, mirror traffic,
401, a scoring script's 400 as 424, rollback and delete (its processes stop). Then what Azure's front adds on a
small echo deployment: a crash in init() fails the deployment with the log's tail, request_timeout_ms -> 408,
too many requests in flight -> 429. And an update rolls over: requests fired all along get only 200s, from the
old version until the new one is ready; a failed update leaves the old one answering.

The processes start once per module (module-scoped `served`); the tests run in file order over that endpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from azure_dl.workspace_service import data_collection, deployment_processes
from azure_dl.workspace_service.service import WorkspaceService

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
    "ignore::DeprecationWarning:azure.storage.blob",
)

MODEL = "reviews-srv"  # not "reviews": test_models_wire registers versions of that name with other labels
ENDPOINT = "reviews-ep"
DEPLOYMENT_HEADER = "azureml-model-deployment"
TEXTS = {"texts": ["A wonderful, moving film - loved it!"]}


@dataclass(frozen=True)
class Served:
    service: WorkspaceService
    scoring_uri: str
    key: str
    out: Path


def _cli(*argv: str) -> int:
    from azure_dl.cli.main import main

    return main(list(argv))


@pytest.fixture(scope="module")
def served(
    module_connection: dict[str, str],
    module_ml_client,  # type: ignore[no-untyped-def]
    workspace_service: WorkspaceService,
    trained_lstm: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """The LSTM registered and deployed as blue (100%) with the CLI, as a user would from a fresh clone."""
    root = tmp_path_factory.mktemp("serving")
    run = Path(shutil.copytree(trained_lstm, root / "runs" / "lstm"))
    assert _cli("register", str(run), "--name", MODEL) == 0
    assert _cli("deploy", f"{MODEL}:1", "--endpoint", ENDPOINT, "--yes", "--out", str(root / "blue")) == 0
    endpoint = module_ml_client.online_endpoints.get(ENDPOINT)
    key = module_ml_client.online_endpoints.get_keys(ENDPOINT).primary_key
    yield Served(workspace_service, endpoint.scoring_uri, key, root)
    if _cli("endpoint", "show", ENDPOINT) == 0:  # a failed test left it: stop its processes
        _cli("endpoint", "delete", ENDPOINT, "--yes")


def _session(key: str | None) -> requests.Session:
    session = requests.Session()
    session.headers["Content-Type"] = "application/json"
    if key is not None:
        session.headers["Authorization"] = f"Bearer {key}"
    return session


def _post(served: Served, body: Any = TEXTS, deployment: str | None = None, key: str | None = "") -> requests.Response:
    headers = {DEPLOYMENT_HEADER: deployment} if deployment else {}
    session = _session(served.key if key == "" else key)
    return session.post(served.scoring_uri, data=json.dumps(body), headers=headers, timeout=30)


def _answered_by(served: Served, count: int, threads: int = 2) -> Counter[str]:
    """Which deployment answered each of `count` requests (2 at a time: each deployment admits 2 in flight)."""

    def _batch(n: int) -> list[str]:
        session = _session(served.key)
        names = []
        for _ in range(n):
            response = session.post(served.scoring_uri, data=json.dumps(TEXTS), timeout=30)
            assert response.status_code == 200, response.text
            names.append(response.headers[DEPLOYMENT_HEADER])
        return names

    with ThreadPoolExecutor(threads) as pool:
        batches = list(pool.map(_batch, [count // threads] * threads))
    return Counter(name for batch in batches for name in batch)


def _scored(service: WorkspaceService, deployment: str) -> int:
    """How many scoring requests the deployment's own server logged."""
    assert service.context is not None
    log = deployment_processes.log_dir(service.context, ENDPOINT, deployment) / deployment_processes.LOG_FILE
    return sum(" - POST /score " in line for line in log.read_text().splitlines())


def test_the_first_deployment_is_blue_with_all_traffic_and_answers(
    served: Served, connection, ml_client, capsys, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.constants._endpoint import EndpointInvokeFields

    capsys.readouterr()
    assert _cli("endpoint", "show", ENDPOINT) == 0
    shown = capsys.readouterr().out
    assert "blue" in shown and "100" in shown and "Succeeded" in shown

    assert _cli("score", ENDPOINT, "--text", "A wonderful, moving film - loved it!", "--json") == 0
    (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
    labels = json.loads((served.out / "runs" / "lstm" / "labels.json").read_text())
    assert prediction["label"] in labels and 0 <= prediction["score"] <= 1

    # The plain SDK call. azure-ai-ml 1.35.2 keeps the azureml-model-deployment header of an earlier invoke in a
    # class-level dict (EndpointInvokeFields.DEFAULT_HEADER); deploy's smoke test set it in this process.
    EndpointInvokeFields.DEFAULT_HEADER.pop(EndpointInvokeFields.MODEL_DEPLOYMENT, None)
    request = tmp_path / "request.json"
    request.write_text(json.dumps(TEXTS))
    answer = json.loads(ml_client.online_endpoints.invoke(ENDPOINT, request_file=str(request)))
    assert answer["predictions"][0]["label"] == prediction["label"]

    assert _post(served, key=None).status_code == 401
    assert _post(served, key="not-the-key").status_code == 401


def test_green_is_smoke_tested_through_the_header_then_takes_ten_percent(served: Served, connection) -> None:  # type: ignore[no-untyped-def]
    assert (
        _cli(
            "deploy",
            f"{MODEL}:1",
            "--endpoint",
            ENDPOINT,
            "--deployment",
            "green",
            "--traffic",
            "blue=90,green=10",
            "--collect-data",  # model data collection: test_green_collects_its_inputs_and_outputs
            "--yes",
            "--out",
            str(served.out / "green"),
        )
        == 0
    )
    assert _scored(served.service, "green") == 1  # the smoke test, sent with the header before traffic moved

    answered = _answered_by(served, 400)
    assert set(answered) == {"blue", "green"}
    assert 5 <= 100 * answered["green"] / 400 <= 15, answered

    assert _cli("endpoint", "traffic", ENDPOINT, "blue=100,green=0") == 0
    assert _answered_by(served, 40) == Counter({"blue": 40})
    response = _post(served, deployment="green")
    assert response.status_code == 200 and response.headers[DEPLOYMENT_HEADER] == "green"


def _collected(served: Served, collection: str) -> list[dict[str, Any]]:
    """The JSON lines the local collection agent wrote for green's `collection`, where Azure writes them."""
    assert served.service.context is not None
    folder = data_collection.local_folder(served.service.context, ENDPOINT, "green", collection)
    return [json.loads(line) for path in sorted(folder.rglob("*.jsonl")) for line in path.read_text().splitlines()]


def test_green_collects_its_inputs_and_outputs_in_the_blob_store(
    served: Served, connection, ml_client, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """deploy --collect-data: the scoring script's Collector sends to the service's agent, which writes JSON lines
    under modelDataCollector/ENDPOINT/DEPLOYMENT/COLLECTION/yyyy/MM/dd/HH/, inputs and outputs correlated."""
    from azure.ai.ml._artifacts._artifact_utilities import download_artifact_from_aml_uri

    texts = [f"collected review {n}: a fine film" for n in range(3)]
    for text in texts:
        assert _post(served, {"texts": [text]}, deployment="green").status_code == 200
    deadline = time.monotonic() + 10
    while True:  # the library sends from a thread of its own, after the answer
        inputs = [e for e in _collected(served, "model_inputs") if e["data"][0].get("text") in texts]
        ids = {e["correlationid"] for e in inputs}
        outputs = [e for e in _collected(served, "model_outputs") if e["correlationid"] in ids]
        if (len(inputs), len(outputs)) == (3, 3) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(e["data"][0]["text"] for e in inputs) == texts and len(ids) == 3
    assert len(outputs) == 3 and all(set(e["data"][0]) == {"label", "score", "probabilities"} for e in outputs)
    assert {e["type"] for e in inputs + outputs} == {
        "azureml.inference.model_inputs",
        "azureml.inference.model_outputs",
    }
    assert all(e["source"].endswith(f"/onlineEndpoints/{ENDPOINT}/deployments/green") for e in inputs)

    # What the SDK registered for the collections, and read back through the SDK's own datastore download.
    asset = ml_client.data.get(f"{ENDPOINT}-green-model_inputs", "1")
    assert asset.path.endswith(f"/paths/modelDataCollector/{ENDPOINT}/green/model_inputs")
    download_artifact_from_aml_uri(asset.path, str(tmp_path), ml_client.datastores)
    downloaded = [line for path in tmp_path.rglob("*.jsonl") for line in path.read_text().splitlines()]
    assert sum(text in line for line in downloaded for text in texts) == 3
    deployment = ml_client.online_deployments.get("green", ENDPOINT)
    assert deployment.data_collector.collections["model_outputs"].enabled == "true"
    assert "modelDataCollector" in ml_client.online_deployments.get_logs("green", ENDPOINT, lines=400)


def test_mirrored_copies_reach_green_and_their_answers_are_dropped(served: Served, connection) -> None:  # type: ignore[no-untyped-def]
    assert _cli("endpoint", "traffic", ENDPOINT, "--mirror", "green=10") == 0
    before = _scored(served.service, "green")
    assert _answered_by(served, 200) == Counter({"blue": 200})  # the client sees only the live answers
    deadline = time.monotonic() + 5
    mirrored = _scored(served.service, "green") - before
    while time.monotonic() < deadline:  # the copies are sent on their own threads
        time.sleep(0.3)
        now = _scored(served.service, "green") - before
        if now == mirrored:
            break
        mirrored = now
    assert 5 <= mirrored <= 40, mirrored  # 10% of 200: 20 expected
    assert _cli("endpoint", "traffic", ENDPOINT, "--mirror", "none") == 0


def test_a_400_from_the_scoring_script_arrives_as_424_and_score_unwraps_it(served: Served, connection, capsys) -> None:  # type: ignore[no-untyped-def]
    response = _post(served, {"texts": "not a list"})
    assert response.status_code == 424
    assert response.headers["ms-azureml-model-error-statuscode"] == "400"
    assert "texts" in response.json()["message"]  # the scoring script's own message, as it sent it

    capsys.readouterr()
    too_many = [f"review {n}" for n in range(65)]  # the deployment's AZURE_DL_MAX_BATCH is 64
    assert _cli("score", ENDPOINT, "--text", *too_many, "--batch-size", "65") == 2
    error = capsys.readouterr().err
    assert "answered 400 (reported by the endpoint as 424)" in error


def test_rollback_restores_the_split_before_the_last_change(served: Served, connection, ml_client) -> None:  # type: ignore[no-untyped-def]
    assert _cli("endpoint", "traffic", ENDPOINT, "blue=90,green=10") == 0
    assert ml_client.online_endpoints.get(ENDPOINT).traffic == {"blue": 90, "green": 10}
    assert _cli("endpoint", "rollback", ENDPOINT) == 0
    assert ml_client.online_endpoints.get(ENDPOINT).traffic == {"blue": 100, "green": 0}


def test_endpoint_delete_stops_the_deployments_processes(served: Served, connection, ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import ResourceNotFoundError

    assert served.service.context is not None
    processes = deployment_processes.of(served.service.context)
    running = [processes.get(ENDPOINT, name) for name in ("blue", "green")]
    pids = [r.server.process.pid for r in running if r is not None and r.server.process is not None]
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    assert _cli("endpoint", "delete", ENDPOINT, "--yes") == 0
    assert not any(_alive(pid) for pid in pids)
    assert processes.get(ENDPOINT, "blue") is None
    with pytest.raises(ResourceNotFoundError):
        ml_client.online_endpoints.get(ENDPOINT)


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)  # the group: gunicorn's workers too
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------------------ what Azure's front adds
# One echo script for every deployment below: ECHO_CRASH makes init() fail, ECHO_VERSION is what run() answers.
_ECHO = """import json
import os
import time


def init():
    if os.environ.get("ECHO_CRASH"):
        raise RuntimeError("init failed on purpose: " + os.environ["ECHO_CRASH"])


def run(raw):
    time.sleep(float(json.loads(raw).get("sleep", 0)))
    return {"version": os.environ.get("ECHO_VERSION", "")}
"""
ECHO_ENDPOINT = "wire-limits"


@dataclass
class Echo:
    """The echo endpoint's "slow" deployment (as the SDK entity, to update it), scoring URI and key."""

    deployment: Any
    scoring_uri: str
    key: str
    code: Path  # the echo script's folder


def _echo_deployment(code: Path, name: str, **variables: str):  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment, OnlineRequestSettings

    return ManagedOnlineDeployment(
        name=name,
        endpoint_name=ECHO_ENDPOINT,
        code_configuration=CodeConfiguration(code=str(code), scoring_script="score.py"),
        environment="azureml:AzureML-sklearn-1.5@latest",
        instance_type="Standard_DS3_v2",
        instance_count=1,
        request_settings=OnlineRequestSettings(request_timeout_ms=1500, max_concurrent_requests_per_instance=1),
        environment_variables=variables,
    )


@pytest.fixture(scope="module")
def echo(
    module_connection: dict[str, str],
    module_ml_client,  # type: ignore[no-untyped-def]
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Echo]:
    """The echo endpoint with its "slow" deployment (version 1), made once for the tests below, which run in file
    order: the front's limits, a restart, then rolling updates of "slow"."""
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    code = tmp_path_factory.mktemp("echo") / "code"
    code.mkdir()
    (code / "score.py").write_text(_ECHO)
    module_ml_client.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name=ECHO_ENDPOINT)).result()
    deployment = _echo_deployment(code, "slow", ECHO_VERSION="1")
    module_ml_client.online_deployments.begin_create_or_update(deployment).result()
    uri = module_ml_client.online_endpoints.get(ECHO_ENDPOINT).scoring_uri
    yield Echo(deployment, uri, module_ml_client.online_endpoints.get_keys(ECHO_ENDPOINT).primary_key, code)
    module_ml_client.online_endpoints.begin_delete(ECHO_ENDPOINT).result()


def test_init_crash_fails_the_deployment_and_the_front_answers_408_and_429(echo: Echo, ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError, match="init failed on purpose") as failed:
        ml_client.online_deployments.begin_create_or_update(
            _echo_deployment(echo.code, "broken", ECHO_CRASH="no model here")
        ).result()
    assert "ResourceNotReady" in str(failed.value)
    assert ml_client.online_deployments.get("broken", ECHO_ENDPOINT).provisioning_state == "Failed"
    assert "init failed on purpose" in ml_client.online_deployments.get_logs("broken", ECHO_ENDPOINT, lines=200)

    def _send(sleep: float, session: requests.Session | None = None) -> int:
        body = json.dumps({"sleep": sleep})
        headers = {DEPLOYMENT_HEADER: "slow"}
        return (
            (session or _session(echo.key)).post(echo.scoring_uri, data=body, headers=headers, timeout=30).status_code
        )

    assert _send(0) == 200
    assert _send(1.6) == 408  # longer than its request_timeout_ms, 1500
    time.sleep(0.5)  # let the worker finish that request (the two admitted below queue at its one worker)

    # 4 at once; 2 x max_concurrent_requests_per_instance (1) x instances (1) are admitted. The connections are
    # opened first (a request the front answers itself: no such deployment), so that all 4 arrive together.
    sessions = [_session(echo.key) for _ in range(4)]
    for session in sessions:
        assert session.post(echo.scoring_uri, data="{}", headers={DEPLOYMENT_HEADER: "nope"}).status_code == 404
    barrier = threading.Barrier(4)

    def _together(session: requests.Session) -> int:
        barrier.wait()
        return _send(0.6, session)

    with ThreadPoolExecutor(4) as pool:
        statuses = Counter(pool.map(_together, sessions))
    assert statuses == Counter({200: 2, 429: 2}), statuses
    response = _session(echo.key).post(echo.scoring_uri, data="{}", headers={DEPLOYMENT_HEADER: "broken"}, timeout=30)
    assert response.status_code == 503 and "failed" in response.json()["error"]["message"]
    ml_client.online_deployments.begin_delete("broken", ECHO_ENDPOINT).result()


def test_a_restarted_service_runs_its_deployments_again_and_stop_ends_them(
    echo: Echo, workspace_service: WorkspaceService, tmp_path: Path
) -> None:
    # The same state under another folder, as if this service had stopped and started again there.
    copy = tmp_path / "restarted"
    for part in ("state", "blobs"):
        shutil.copytree(workspace_service.data_dir / part, copy / part)
    for record in (copy / "state" / "online-deployments").glob("*.json"):
        if not record.name.startswith(ECHO_ENDPOINT):
            record.unlink()  # other tests' deployments: not this test's to start

    restarted = WorkspaceService(copy)
    context = restarted.start()
    try:
        running = deployment_processes.of(context).get(ECHO_ENDPOINT, "slow")
        assert running is not None and running.ready.wait(60), running and running.failed
        assert running.server.process is not None
        pid = running.server.process.pid
        assert _alive(pid)
    finally:
        restarted.stop()
    assert not _alive(pid)  # service.stop() stopped the process group


@dataclass
class _Answers:
    """What a client firing requests at one deployment saw: (time, status, version) per request."""

    seen: list[tuple[float, int, str]]
    stop: threading.Event


def _fire(echo: Echo, threads: int = 2) -> tuple[_Answers, list[threading.Thread]]:
    answers = _Answers([], threading.Event())

    def _loop() -> None:
        session = _session(echo.key)
        while not answers.stop.is_set():
            response = session.post(echo.scoring_uri, data="{}", headers={DEPLOYMENT_HEADER: "slow"}, timeout=30)
            version = response.json().get("version", "") if response.status_code == 200 else response.text
            answers.seen.append((time.monotonic(), response.status_code, version))
            time.sleep(0.02)  # leave the CPUs to the group that is starting

    workers = [threading.Thread(target=_loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    return answers, workers


def test_an_update_rolls_over_without_a_failed_request_and_a_failed_update_leaves_the_old_one_serving(
    echo: Echo, ml_client, workspace_service: WorkspaceService
) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    assert workspace_service.context is not None
    processes = deployment_processes.of(workspace_service.context)
    deployment = echo.deployment
    first = processes.pids(ECHO_ENDPOINT, "slow")
    answers, workers = _fire(echo)
    try:
        # An update: another version (the code is the same; its variable changes) on two instances.
        deployment.environment_variables = {"ECHO_VERSION": "2"}
        deployment.instance_count = 2
        updating = time.monotonic()
        ml_client.online_deployments.begin_create_or_update(deployment).result()
        updated = time.monotonic()
        deadline = updated + 5
        while not any(at > updated for at, _, _ in answers.seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        during = [version for at, _, version in answers.seen if updating < at < updated]
        assert "1" in during, "the old group answered while the new one started"
        after = [version for at, _, version in answers.seen if at > updated]
        assert after and set(after) == {"2"}, "after the update the new version answers"
        slow = ml_client.online_deployments.get("slow", ECHO_ENDPOINT)
        assert (slow.provisioning_state, slow.instance_count) == ("Succeeded", 2)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in first) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in first), "the old group stopped once it had finished its requests"

        # A broken update: init() raises in the new group; the serving one (version 2) keeps answering.
        deployment.environment_variables = {"ECHO_VERSION": "3", "ECHO_CRASH": "this update is broken"}
        deployment.instance_count = 1
        failing = time.monotonic()
        with pytest.raises(HttpResponseError, match="this update is broken") as failed:
            ml_client.online_deployments.begin_create_or_update(deployment).result()
        assert "ResourceNotReady" in str(failed.value)
        time.sleep(0.2)
    finally:
        answers.stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert {status for _, status, _ in answers.seen} == {200}, Counter(s for _, s, _ in answers.seen)
    assert {version for at, _, version in answers.seen if at > failing} == {"2"}
    assert ml_client.online_deployments.get("slow", ECHO_ENDPOINT).provisioning_state == "Failed"
    assert "this update is broken" in ml_client.online_deployments.get_logs("slow", ECHO_ENDPOINT, lines=100)
    serving = processes.pids(ECHO_ENDPOINT, "slow")
    assert len(serving) == 1 and _alive(serving[0]) and processes.rolling(ECHO_ENDPOINT, "slow") is None
    ml_client.online_deployments.begin_delete("slow", ECHO_ENDPOINT).result()  # no traffic: header-routed
    assert not _alive(serving[0]) and processes.pids(ECHO_ENDPOINT, "slow") == []
