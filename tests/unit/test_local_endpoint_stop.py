"""LocalEndpoint.stop on a process group that ignores SIGTERM: SIGKILL after the grace, and at once when a second
Ctrl-C interrupts the drain; nothing of the group outlives stop() either way."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from azure_dl.backends.local import endpoints

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
)


def _stubborn_endpoint(tmp_path: Path) -> endpoints.LocalEndpoint:
    server = endpoints.LocalEndpoint(endpoints.ServerSpec(model_dir=tmp_path, task="text-classification"))
    server.process = subprocess.Popen(
        [sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE, start_new_session=True
    )
    assert server.process.stdout is not None and server.process.stdout.readline() == b"up\n"
    return server


def test_stop_kills_what_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    server = _stubborn_endpoint(tmp_path)
    started = time.monotonic()
    server.stop(grace_s=0.5)
    assert 0.5 <= time.monotonic() - started < 10
    assert server.process is not None and server.process.returncode is not None


def test_a_second_ctrl_c_during_the_drain_stops_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = _stubborn_endpoint(tmp_path)
    process = server.process
    assert process is not None
    wait = process.wait

    def interrupted(timeout: float | None = None) -> int:
        if timeout is not None:  # the drain's wait: Ctrl-C arrives
            raise KeyboardInterrupt
        return wait()

    monkeypatch.setattr(process, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        server.stop()  # default grace: without the interrupt this would wait 35 s
    assert process.poll() is not None
