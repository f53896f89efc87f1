"""The real inference server (azmlinfsrv, 2 gunicorn workers) on loopback with the tiny LSTM, under faults:
SIGTERM drains a request already in flight (it gets its 200) while new connections are refused, through
LocalEndpoint.stop and through `azure-dl serve`; a SIGKILLed worker under load costs at most the requests in
flight, and the endpoint serves every request again once gunicorn has replaced it.

The in-flight request is a real slow client: it sends its headers and half of its body, and the rest only after
SIGTERM, so the worker is still reading it when the stop begins (no test hook in the scoring script)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from azure_dl.backends.local import endpoints
from benchmarks.bench_endpoint_load import kill_under_load, post_until, summarize, worker_pids
from tests.trained import script_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

BODY = json.dumps({"texts": ["a moving film, loved it"]}).encode()
WORKERS = 2
CONCURRENCY = 4


def _start_slow_request(port: int) -> socket.socket:
    """A POST /score whose body is only half sent: a worker has accepted it and is reading it."""
    client = socket.create_connection(("127.0.0.1", port), timeout=20)
    head = (
        f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode()
    client.sendall(head + BODY[: len(BODY) // 2])
    time.sleep(0.5)  # let a worker accept it and start reading
    return client


def _finish_slow_request(client: socket.socket) -> tuple[int, dict[str, object]]:
    client.sendall(BODY[len(BODY) // 2 :])
    data = b""
    while chunk := client.recv(65536):  # the sync worker closes the connection after the response
        data += chunk
    client.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.05)


@pytest.fixture()
def server(trained_lstm: Path, tmp_path: Path) -> Iterator[endpoints.LocalEndpoint]:
    spec = endpoints.ServerSpec(
        model_dir=trained_lstm, task="text-classification", port=endpoints.free_port(), workers=WORKERS
    )
    with endpoints.LocalEndpoint(spec, log_path=tmp_path / "server.log") as running:
        yield running


def test_stop_drains_an_in_flight_request_and_refuses_new_connections(server: endpoints.LocalEndpoint) -> None:
    port = server.spec.port
    assert server.process is not None
    assert len(worker_pids(server.process.pid)) == WORKERS
    client = _start_slow_request(port)
    stopping = threading.Thread(target=server.stop)
    stopping.start()
    try:
        _wait_for(lambda: _refused(port), 5, "refusing new connections after SIGTERM")
        assert stopping.is_alive(), "the server stopped without waiting for the request in flight"
        status, answer = _finish_slow_request(client)
    finally:
        stopping.join(timeout=45)
    assert status == 200, answer
    assert len(answer["predictions"]) == 1  # type: ignore[arg-type]
    assert not stopping.is_alive()
    assert server.process is not None and server.process.returncode == 0  # a graceful exit, not SIGKILL


def test_a_killed_worker_costs_at_most_the_requests_in_flight(server: endpoints.LocalEndpoint) -> None:
    spec = server.spec
    assert server.process is not None
    master = server.process.pid
    run = kill_under_load(
        master,
        spec.host,
        spec.port,
        BODY,
        concurrency=CONCURRENCY,
        seconds=10,
        kill_after=0.0,
        kill_after_requests=50,
        max_requests=300,
    )
    assert "at" in run, "the load ended before the kill"
    failed = [outcome for outcome in run["outcomes"] if not outcome.ok]
    assert len(failed) <= CONCURRENCY, summarize(run["outcomes"], 10)
    assert len(run["outcomes"]) == 300
    assert any(outcome.ok and outcome.started > run["at"] for outcome in run["outcomes"]), "nothing served after"
    _wait_for(lambda: len(worker_pids(master)) == WORKERS and run["pid"] not in worker_pids(master), 20, "a new worker")
    outcomes, _ = post_until(spec.host, spec.port, BODY, concurrency=CONCURRENCY, seconds=10, max_requests=100)
    assert summarize(outcomes, 1)["errors_by_kind"] == "none"
    assert len(outcomes) == 100


def test_serve_cli_drains_on_sigterm(trained_lstm: Path, tmp_path: Path) -> None:
    port = endpoints.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "azure_dl.cli.main", "serve", str(trained_lstm), "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=script_env(HOME=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        assert any("Press Ctrl-C" in line for line in lines), "".join(lines[-30:])
        # The server writes its log to this pipe: keep reading it so that it never blocks on a full pipe.
        threading.Thread(target=lines.extend, args=(process.stdout,), daemon=True).start()
        client = _start_slow_request(port)
        process.send_signal(signal.SIGTERM)
        _wait_for(lambda: _refused(port), 5, "refusing new connections after SIGTERM")
        assert process.poll() is None, "azure-dl serve exited before its request in flight was answered"
        status, answer = _finish_slow_request(client)
        assert status == 200, answer
        assert process.wait(timeout=45) == 0, "".join(lines[-30:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
