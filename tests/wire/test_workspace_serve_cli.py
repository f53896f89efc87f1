"""`azure-dl workspace serve` as a user runs it: a process that writes connection.env when ready and removes it on
SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from azure_dl.workspace_service.service import read_connection_file

READY_TIMEOUT_S = 30


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not path.is_file():
        assert process.poll() is None, f"the service exited early: {process.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear in {READY_TIMEOUT_S} s"
        time.sleep(0.05)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_writes_the_connection_file_when_ready_and_removes_it_on_a_signal(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    command = [sys.executable, "-m", "azure_dl", "workspace", "serve", "--dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "connection.env", process)
        values = read_connection_file(tmp_path / "connection.env")
        assert values["AZURE_TOKEN_CREDENTIALS"] == "ManagedIdentityCredential"
        assert Path(values["REQUESTS_CA_BUNDLE"]).is_file()
        process.send_signal(stop_signal)
        out, _err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "connection.env" in out
    assert not (tmp_path / "connection.env").exists()


def test_a_port_out_of_range_is_a_clear_error(tmp_path: Path) -> None:
    from azure_dl.cli.main import main

    assert main(["workspace", "serve", "--dir", str(tmp_path), "--port", "70000"]) == 2
