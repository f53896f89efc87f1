"""The requests azmlinfsrv answered, read back from its log: what `azure-dl serve` reports when it stops.

azmlinfsrv logs one line per request, e.g. `azmlinfsrv - POST /score 200 1.168ms 152` (method, path, status,
latency, bytes). The summary uses the metric names Azure Monitor gives a managed online endpoint (requests by
status class, RequestLatency percentiles), so a local run and `azure-dl endpoint metrics` read alike.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

_REQUEST = re.compile(r"azmlinfsrv - (?P<method>[A-Z]+) (?P<path>/\S*) (?P<status>\d{3}) (?P<ms>[\d.]+)ms")


@dataclass(frozen=True)
class RequestSummary:
    """Scoring requests (POST /score) by status class, and their latency percentiles in milliseconds."""

    requests: int
    by_class: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # P50, P90, P99: nearest rank


def _nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))  # ceil(p/100 * n), as Azure Monitor's percentiles
    return ordered[rank - 1]


def summarize(lines: Iterable[str]) -> RequestSummary:
    """Count the scoring requests in azmlinfsrv's log lines (health probes and other paths are left out)."""
    classes: Counter[str] = Counter()
    latencies: list[float] = []
    for line in lines:
        match = _REQUEST.search(line)
        if match is None or match["method"] != "POST" or not match["path"].startswith("/score"):
            continue
        classes[f"{match['status'][0]}xx"] += 1
        latencies.append(float(match["ms"]))
    percentiles = {f"P{p}": _nearest_rank(latencies, p) for p in (50, 90, 99)} if latencies else {}
    return RequestSummary(len(latencies), dict(sorted(classes.items())), percentiles)


def describe(summary: RequestSummary) -> str:
    """One line for the terminal; 0 requests is said as such, never left out."""
    if not summary.requests:
        return "requests: 0 scoring requests answered"
    classes = ", ".join(f"{name} {count}" for name, count in summary.by_class.items())
    latency = ", ".join(f"{name} {value:.1f} ms" for name, value in summary.latency_ms.items())
    return f"requests: {summary.requests} scoring requests ({classes}); RequestLatency {latency}"


class LogFollower:
    """Prints what is appended to a log file, as it comes (the server writes there so that it can be read back)."""

    def __init__(self, path: Path, out: TextIO, poll_s: float = 0.2) -> None:
        self.path, self.out, self.poll_s = path, out, poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="serve-log", daemon=True)

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _follow(self) -> None:
        position = 0
        while True:
            stopping = self._stop.is_set()
            if self.path.is_file():
                with self.path.open("r", encoding="utf-8", errors="replace") as log:
                    log.seek(position)
                    chunk = log.read()
                    position = log.tell()
                if chunk:
                    self.out.write(chunk)
                    self.out.flush()
            if stopping:
                return
            time.sleep(self.poll_s)
