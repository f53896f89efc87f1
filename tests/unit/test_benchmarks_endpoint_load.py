"""The load-and-kill benchmark's arithmetic (latency, errors, recovery time), its /proc worker lookup, the
launcher's SIGTERM wrapper, and a smoke run against the tiny trained models."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from azure_dl.backends.local import endpoint_launcher
from benchmarks import bench_endpoint_load as load
from benchmarks.common import load_results
from benchmarks.report import render


def _steady(start: float, end: float, per_window: int, result: str = "200") -> list[load.Outcome]:
    """`per_window` requests of 10 ms ending in every 0.25 s window between start and end."""
    outcomes = []
    window = start
    while window < end - 1e-9:
        for index in range(per_window):
            ended = window + (index + 0.5) * load.WINDOW_S / per_window
            outcomes.append(load.Outcome(ended - 0.01, ended, result))
        window += load.WINDOW_S
    return outcomes


def test_summarize_counts_200s_per_second_and_errors_by_kind() -> None:
    outcomes = [load.Outcome(0.0, 0.01 * (i + 1), "200") for i in range(100)]
    outcomes += [load.Outcome(0.0, 0.5, "503"), load.Outcome(0.0, 0.5, "ConnectionResetError")] * 2
    row = load.summarize(outcomes, seconds=2.0)
    assert row["requests"] == 104
    assert row["requests_per_s"] == 50.0  # the 200s only
    assert row["p50_ms"] == pytest.approx(505.0)
    assert row["p99_ms"] == pytest.approx(990.1)
    assert (row["errors"], row["errors_by_kind"]) == (4, "503:2 ConnectionResetError:2")
    assert load.summarize(outcomes[:100], 1.0)["errors_by_kind"] == "none"


def test_recovery_finds_the_first_window_back_at_the_rate_before_the_kill() -> None:
    killed_at = 2.0
    outcomes = _steady(0.0, killed_at, 8)  # 32 req/s before
    outcomes.append(load.Outcome(1.99, 2.01, "RemoteDisconnected"))  # the request on the killed worker
    outcomes += _steady(killed_at, 3.0, 4)  # one worker left: half the rate for a second
    outcomes += _steady(3.0, 4.0, 8)
    row = load.recovery(sorted(outcomes, key=lambda o: o.started), killed_at, end=4.0)
    assert row["failed"] == 1 and row["failed_by_kind"] == "RemoteDisconnected:1"
    assert row["failed_started_before_kill"] == 1
    assert row["rate_before_per_s"] == 32.0
    assert row["throughput_back_s"] == pytest.approx(1.25)


def test_recovery_says_none_when_the_rate_never_comes_back() -> None:
    outcomes = _steady(0.0, 2.0, 8) + _steady(2.0, 4.0, 2)
    assert load.recovery(sorted(outcomes, key=lambda o: o.started), 2.0, end=4.0)["throughput_back_s"] is None


def test_worker_pids_are_the_child_processes() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in load.worker_pids(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_ready_time_reads_the_workers_log_line(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("2026-12-07 04:52:23,419 I [20224] azmlinfsrv - Worker with pid 20224 ready for serving traffic\n")
    assert load.ready_time(log, 20224) is not None
    assert load.ready_time(log, 1) is None


def test_the_launchers_sigterm_shuts_the_listening_socket_then_lets_gunicorn_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gunicorn.arbiter import Arbiter

    calls: list[object] = []
    monkeypatch.setattr(Arbiter, "handle_term", lambda self: calls.append(self))  # restored after the test
    endpoint_launcher.refuse_new_connections_on_term()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    class FakeArbiter:
        def __init__(self) -> None:
            self.LISTENERS = [listener]

    arbiter = FakeArbiter()
    Arbiter.handle_term(arbiter)  # type: ignore[arg-type]
    assert calls == [arbiter]  # gunicorn's own graceful stop still runs
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    Arbiter.handle_term(arbiter)  # type: ignore[arg-type]  # a second SIGTERM: the socket is already shut
    listener.close()


@pytest.mark.slow
def test_bench_endpoint_load_smoke(trained_resnet: Path, trained_lstm: Path, tmp_path: Path) -> None:
    argv = ["--smoke", "--save", "--results-dir", str(tmp_path), "--resnet", str(trained_resnet)]
    assert load.main([*argv, "--lstm", str(trained_lstm)]) == 0
    (result,) = load_results(tmp_path)
    assert result.name == "endpoint_load_cpu"
    levels, kills = result.tables
    assert [(row["model"], row["concurrency"]) for row in levels["rows"]] == [
        ("resnet", 1),
        ("resnet", 4),
        ("lstm", 1),
        ("lstm", 4),
    ]
    for row in levels["rows"]:
        assert row["errors"] == 0, row
        assert row["requests_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    for row in kills["rows"]:
        assert row["failed"] <= row["concurrency"], row
        assert row["workers_after"] == load.WORKERS
    assert "under load and with a worker killed" in render([result])
