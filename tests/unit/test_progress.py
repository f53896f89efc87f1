"""The progress-line format round trip, and the CLI's renderer in plain and terminal mode."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pytest

from azure_dl.progress import ProgressRenderer, describe
from training_scripts import progress

STEP = {"epoch": 1, "epochs": 3, "step": 10, "steps": 50, "loss": 0.6931, "lr": 1e-3, "samples_per_s": 812.5}
EPOCH = {
    "epoch": 2,
    "epochs": 3,
    "train_loss": 0.5,
    "val_loss": 0.45,
    "val_accuracy": 0.8,
    "val_macro_f1": 0.79,
    "seconds": 12.3,
    "best": True,
}


def test_format_is_prefix_plus_compact_json_and_round_trips() -> None:
    line = progress.format_line("step", **STEP)
    assert line.startswith("@azure-dl:progress {")
    assert " " not in line[len(progress.PREFIX) :]
    assert progress.parse_line(line + "\n") == {"event": "step", **STEP}


def test_non_finite_numbers_become_null() -> None:
    line = progress.format_line("step", **{**STEP, "loss": float("nan"), "samples_per_s": float("inf")})
    parsed = progress.parse_line(line)
    assert parsed is not None
    assert parsed["loss"] is None
    assert parsed["samples_per_s"] is None
    json.loads(line[len(progress.PREFIX) :])  # strict JSON


def test_missing_required_field_is_an_error() -> None:
    with pytest.raises(ValueError, match="missing field"):
        progress.format_line("epoch", epoch=1)


@pytest.mark.parametrize(
    "line",
    [
        "plain output",
        "@azure-dl:progress not json",
        '@azure-dl:progress ["event"]',
        '@azure-dl:progress {"no_event": 1}',
        ' @azure-dl:progress {"event":"x"}',
    ],
)
def test_other_lines_do_not_parse(line: str) -> None:
    assert progress.parse_line(line) is None


def test_emit_writes_on_rank_zero_only(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setenv("RANK", "1")
    progress.emit("warning", stream=out, message="hidden")
    assert out.getvalue() == ""
    monkeypatch.setenv("RANK", "0")
    progress.emit("warning", stream=out, message="shown")
    assert progress.parse_line(out.getvalue()) == {"event": "warning", "message": "shown"}


def test_plain_renderer_passes_other_lines_through_unchanged() -> None:
    out = io.StringIO()
    renderer = ProgressRenderer(out, fancy=False)
    raw = ["hello   world\t!", "\x1b[31mred\x1b[0m", "", "{not progress}"]
    for text in raw:
        assert renderer.feed(text + "\n") is None
    assert out.getvalue() == "".join(text + "\n" for text in raw)


def test_plain_renderer_throttles_steps_but_shows_every_epoch() -> None:
    now = [0.0]
    out = io.StringIO()
    renderer = ProgressRenderer(out, fancy=False, step_interval_s=10.0, clock=lambda: now[0])
    for step in (10, 20, 30):
        now[0] += 1.0
        renderer.feed(progress.format_line("step", **{**STEP, "step": step}))
    now[0] += 20.0
    renderer.feed(progress.format_line("step", **{**STEP, "step": 40}))
    renderer.feed(progress.format_line("epoch", **EPOCH))
    renderer.feed(progress.format_line("epoch", **{**EPOCH, "epoch": 3, "best": False}))
    lines = out.getvalue().splitlines()
    assert [line.split(" loss")[0] for line in lines[:2]] == ["epoch 1/3 step 10/50", "epoch 1/3 step 40/50"]
    assert lines[2] == ("epoch 2/3 train_loss 0.5000 val_loss 0.4500 val_acc 0.8000 val_macro_f1 0.7900 (12.3s) *best*")
    assert lines[3].startswith("epoch 3/3") and "*best*" not in lines[3]
    assert len(lines) == 4


def test_renderer_keeps_the_last_done_event() -> None:
    out = io.StringIO()
    renderer = ProgressRenderer(out, fancy=False)
    done = {"output": "/o", "run_id": "abc", "tracking_uri": "sqlite:///x.db", "metrics": {"val_accuracy": 0.9}}
    renderer.feed(progress.format_line("done", **done))
    assert renderer.last_events["done"] == {"event": "done", **done}
    assert out.getvalue().strip() == "done: output /o; MLflow run abc at sqlite:///x.db; val_accuracy 0.9000"


def test_describe_covers_every_documented_event() -> None:
    samples: dict[str, dict[str, Any]] = {
        "start": {"task": "resnet", "epochs": 3, "steps_per_epoch": 50, "world_size": 2, "device": "cuda"},
        "step": STEP,
        "epoch": EPOCH,
        "early_stop": {"epoch": 4, "reason": "no improvement"},
        "artifact": {"kind": "onnx", "path": "/o/model.onnx"},
        "done": {"output": "/o", "run_id": None, "tracking_uri": None, "metrics": {}},
        "warning": {"message": "careful"},
    }
    assert set(samples) | {"resume"} == set(progress.REQUIRED_FIELDS)
    for kind, fields in samples.items():
        text = describe({"event": kind, **fields})
        assert text, kind
    assert describe({"event": "resume", "checkpoint": "c", "epoch": 1, "step": 2}) is None
    assert describe({"event": "custom", "a": 1}) == "custom: a=1"


def test_terminal_renderer_draws_a_bar_and_keeps_raw_lines() -> None:
    out = io.StringIO()
    renderer = ProgressRenderer(out, fancy=True)
    assert renderer._bar is not None
    with renderer:
        renderer.feed(
            progress.format_line("start", task="toy", epochs=3, steps_per_epoch=50, world_size=1, device="cpu")
        )
        renderer.feed(progress.format_line("step", **STEP))
        renderer.feed("user line [bold]kept[/bold]")
        renderer.feed(progress.format_line("epoch", **EPOCH))
    text = out.getvalue()
    assert "user line [bold]kept[/bold]" in text
    assert "epoch 2/3 train_loss 0.5000" in text


def test_modules_import_no_torch() -> None:
    code = "import sys, azure_dl.progress, training_scripts.progress; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_counter_prints_plain_lines_off_a_terminal_and_redraws_on_one(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = io.StringIO()
    counter = progress.Counter("decoding", 4, unit="images", every_s=0.0, stream=plain)
    counter.advance(2)
    counter.advance(2)
    counter.finish()
    lines = plain.getvalue().splitlines()
    assert lines[0].startswith("decoding: 2/4 images (50%)") and lines[-1].startswith("decoding: 4 images in ")
    assert "\r" not in plain.getvalue()
    tty = _Tty()
    bar = progress.Counter("decoding", 4, stream=tty)
    bar.advance(4)
    bar.finish()
    assert tty.getvalue().startswith("\r[" + "#" * 30 + "]") and tty.getvalue().count("\n") == 1
    monkeypatch.setenv("RANK", "1")
    quiet = io.StringIO()
    other_rank = progress.Counter("decoding", 4, stream=quiet)
    other_rank.advance(4)
    other_rank.finish()
    assert quiet.getvalue() == ""
