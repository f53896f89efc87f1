"""What `azure-dl serve` reports at exit, read from azmlinfsrv's request lines."""

from __future__ import annotations

import io
import time
from pathlib import Path

from azure_dl.backends.local.request_log import LogFollower, describe, summarize

LINES = [
    '2026-12-07 10:52:08,017 I [11312] gunicorn.access - 127.0.0.1 - - [07/Dec/2026] "POST /score HTTP/1.1" 200 152',
    "2026-12-07 10:52:09,579 I [11312] azmlinfsrv - POST /score 200 1.168ms 152",
    "2026-12-07 10:52:09,600 I [11312] azmlinfsrv - GET / 200 0.300ms 7",  # a health probe: not a request
    "2026-12-07 10:52:11,180 I [11312] azmlinfsrv - POST /score 200 5.284ms 152",
    "2026-12-07 10:52:12,180 I [11312] azmlinfsrv - POST /score 400 2.000ms 80",
    "2026-12-07 10:52:13,180 I [11312] azmlinfsrv - POST /score 500 9.000ms 80",
]


def test_scoring_requests_are_counted_by_status_class_with_latency_percentiles() -> None:
    summary = summarize(LINES)
    assert summary.requests == 4
    assert summary.by_class == {"2xx": 2, "4xx": 1, "5xx": 1}
    assert summary.latency_ms == {"P50": 2.0, "P90": 9.0, "P99": 9.0}  # nearest rank over 1.168, 2, 5.284, 9
    assert describe(summary).startswith("requests: 4 scoring requests (2xx 2, 4xx 1, 5xx 1); RequestLatency P50 2.0")


def test_no_request_is_said_as_zero() -> None:
    assert describe(summarize(LINES[2:3])) == "requests: 0 scoring requests answered"


def test_the_follower_echoes_what_the_server_appends(tmp_path: Path) -> None:
    log, out = tmp_path / "server.log", io.StringIO()
    follower = LogFollower(log, out, poll_s=0.01).start()
    log.write_text("starting\n")
    time.sleep(0.1)
    with log.open("a") as appended:
        appended.write("ready\n")
    follower.stop()
    assert out.getvalue() == "starting\nready\n"
