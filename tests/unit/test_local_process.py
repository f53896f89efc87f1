"""run_command: live streaming, exit codes, the log file, rendering, the done event, Ctrl-C forwarding."""

from __future__ import annotations

import io
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from azure_dl.backends.local.process import run_command, torchrun_argv, torchrun_wrap
from training_scripts import progress


class _Watcher(io.StringIO):
    """A render stream that runs `on_text(text)` whenever the renderer writes something."""

    def __init__(self, on_text: object) -> None:
        super().__init__()
        self.on_text = on_text

    def write(self, text: str) -> int:
        count = super().write(text)
        self.on_text(text)  # type: ignore[operator]
        return count


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}


def test_lines_stream_while_the_command_runs(tmp_path: Path) -> None:
    # The child prints its second line only after the parent has rendered the first: with buffered output
    # (no streaming) it would wait for nothing and exit 9.
    flag = tmp_path / "seen-first"
    argv = _script(
        tmp_path,
        f"""
        import pathlib, sys, time
        print("first")
        deadline = time.time() + 20
        while not pathlib.Path({str(flag)!r}).exists():
            if time.time() > deadline:
                sys.exit(9)
            time.sleep(0.02)
        print("second")
        """,
    )

    def on_text(text: str) -> None:
        if "first" in text:
            flag.touch()

    out = _Watcher(on_text)
    result = run_command(argv, cwd=tmp_path, env=_env(), stream=out)
    assert result.returncode == 0
    assert out.getvalue() == "first\nsecond\n"


def test_exit_code_log_file_rendering_and_done_event(tmp_path: Path) -> None:
    done = {
        "output": "/out",
        "run_id": "r1",
        "tracking_uri": "sqlite:////x/mlflow.db",
        "metrics": {"val_accuracy": 0.5},
    }
    lines = [
        "user output  with   spaces",
        progress.format_line(
            "epoch",
            epoch=1,
            epochs=2,
            train_loss=0.5,
            val_loss=0.4,
            val_accuracy=0.75,
            val_macro_f1=0.7,
            seconds=1.5,
            best=True,
        ),
        progress.format_line("done", **done),
    ]
    argv = _script(
        tmp_path,
        f"""
        import sys
        for line in {lines!r}:
            print(line)
        print("to stderr", file=sys.stderr)
        sys.exit(7)
        """,
    )
    log = tmp_path / "logs" / "run.log"
    out = io.StringIO()
    result = run_command(argv, cwd=tmp_path, env=_env(), log_path=log, stream=out)

    assert result.returncode == 7 and not result.ok
    assert result.log_path == log
    assert log.read_text() == "\n".join([*lines, "to stderr"]) + "\n"  # raw, progress lines included
    rendered = out.getvalue().splitlines()
    assert rendered[0] == "user output  with   spaces"
    assert rendered[1].startswith("epoch 1/2 train_loss 0.5000")
    assert rendered[2] == "done: output /out; MLflow run r1 at sqlite:////x/mlflow.db; val_accuracy 0.5000"
    assert rendered[3] == "to stderr"
    assert result.done == {"event": "done", **done}
    assert set(result.last_events) == {"epoch", "done"}


def test_render_false_shows_nothing_but_keeps_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = progress.format_line("warning", message="hi")
    argv = _script(tmp_path, f"print({line!r}); print('plain')")
    result = run_command(argv, cwd=tmp_path, env=_env(), render=False)
    assert result.returncode == 0
    assert result.last_events == {"warning": {"event": "warning", "message": "hi"}}
    assert capsys.readouterr().out == ""


def test_environment_and_working_directory_are_the_given_ones(tmp_path: Path) -> None:
    argv = _script(tmp_path, "import os; print(os.getcwd()); print(os.environ['AZURE_DL_X'])")
    out = io.StringIO()
    run_command(argv, cwd=tmp_path, env={**_env(), "AZURE_DL_X": "42"}, stream=out)
    assert out.getvalue().splitlines() == [str(tmp_path), "42"]


def _interrupt_when(marker: str) -> _Watcher:
    def on_text(text: str) -> None:
        if marker in text:
            # As if the user pressed Ctrl-C in the terminal: the signal reaches this process only.
            threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGINT)).start()

    return _Watcher(on_text)


def test_ctrl_c_is_forwarded_to_the_command(tmp_path: Path) -> None:
    argv = _script(
        tmp_path,
        """
        import signal, sys, time
        def stop(signum, frame):
            print("got SIGINT, saving", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGINT, stop)
        print("ready", flush=True)
        time.sleep(30)
        """,
    )
    out = _interrupt_when("ready")
    handler_before = signal.getsignal(signal.SIGINT)
    result = run_command(argv, cwd=tmp_path, env=_env(), stream=out, log_path=tmp_path / "run.log")
    assert result.interrupted
    assert result.returncode == 3
    assert "got SIGINT, saving" in (tmp_path / "run.log").read_text()
    assert signal.getsignal(signal.SIGINT) == handler_before  # the forwarding handler is gone again


def test_a_command_that_ignores_ctrl_c_is_terminated_after_the_grace_period(tmp_path: Path) -> None:
    argv = _script(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(30)
        """,
    )
    result = run_command(argv, cwd=tmp_path, env=_env(), stream=_interrupt_when("ready"), interrupt_grace_s=0.3)
    assert result.interrupted
    assert result.returncode == 128 + signal.SIGTERM


def test_sigterm_to_us_is_forwarded_so_the_command_does_not_outlive_us(tmp_path: Path) -> None:
    argv = _script(
        tmp_path,
        """
        import signal, sys, time
        def stop(signum, frame):
            print("got SIGTERM, saving", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(30)
        """,
    )

    def on_text(text: str) -> None:
        if "ready" in text:
            # As `kill PID` or a CI runner's timeout would: the signal reaches this process only.
            threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGTERM)).start()

    handler_before = signal.getsignal(signal.SIGTERM)
    result = run_command(argv, cwd=tmp_path, env=_env(), stream=_Watcher(on_text), log_path=tmp_path / "run.log")
    assert result.interrupted
    assert result.returncode == 7
    assert "got SIGTERM, saving" in (tmp_path / "run.log").read_text()
    assert signal.getsignal(signal.SIGTERM) == handler_before


def test_missing_program_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-program-xyz"):
        run_command(["no-such-program-xyz"], cwd=tmp_path, env=_env(), render=False)


def test_torchrun_argv() -> None:
    argv = torchrun_argv(2, "training_scripts.train_resnet", ["--epochs", "1"])
    assert argv == [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        "-m", "training_scripts.train_resnet", "--epochs", "1",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="nproc=0"):
        torchrun_argv(0, "m", [])


def test_torchrun_wrap_turns_a_single_process_command_into_torchrun() -> None:
    assert torchrun_wrap(["py", "-m", "pkg.mod", "--x", "1"], 4) == torchrun_argv(
        4, "pkg.mod", ["--x", "1"], python="py"
    )
    assert torchrun_wrap(["py", "train.py", "--x"], 2) == [
        "py", "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "train.py", "--x",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="interpreter option -u"):
        torchrun_wrap(["py", "-u", "train.py"], 2)
