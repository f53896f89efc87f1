"""GracefulStop: the first SIGTERM/SIGINT is a request, a late second one stops at once, handlers come back."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from training_scripts.interrupts import GracefulStop, ignore_in_worker


def test_first_signal_is_only_a_request_and_the_handlers_are_restored_afterwards(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    with GracefulStop() as stop:
        assert stop.requested == 0
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == signal.SIGTERM and stop.signal_name == "SIGTERM"
        os.kill(os.getpid(), signal.SIGINT)  # within the debounce window: the same request delivered twice
        assert stop.requested == signal.SIGTERM
    assert {signum: signal.getsignal(signum) for signum in before} == before
    assert "received SIGTERM: stopping after the current step with a checkpoint" in capsys.readouterr().out


def test_a_second_signal_after_the_debounce_window_stops_at_once() -> None:
    with pytest.raises(KeyboardInterrupt), GracefulStop(announce=False, debounce_s=0.01) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested == signal.SIGINT
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler raises before this ends
        pytest.fail("the second SIGINT did not stop the block")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_it_changes_nothing() -> None:
    seen: list[object] = []

    def body() -> None:
        with GracefulStop() as stop:
            seen.append(signal.getsignal(signal.SIGTERM))
            seen.append(stop.requested)

    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert seen == [before, 0]


def test_data_loader_workers_ignore_both_signals() -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        ignore_in_worker(0)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
