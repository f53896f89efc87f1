"""`azure-dl data synth images|text` end to end, in-process through the real dispatcher."""

from __future__ import annotations

import argparse
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from azure_dl.cli.main import build_parser, main
from training_scripts.synth import synth_images, synth_text
from training_scripts.text_table import read_text_table


def test_synth_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "xr"
    argv = ["data", "synth", "images", "--out", str(out), "--per-class", "6", "--image-size", "24", "--corrupt", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"wrote 8 images to {out}: normal 6, pneumonia 2 (+1 deliberately broken)" in printed
    assert f"submit resnet --local --data {out}" in printed
    assert len(list((out / "normal").glob("normal_*.png"))) == 6

    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "is not empty" in error and "hint:" in error and "--overwrite" in error
    assert main([*argv, "--overwrite", "--imbalance", "1", "--classes", "a,b,c", "--mode", "I;16"]) == 0
    assert "normal" not in capsys.readouterr().out
    assert sorted(path.name for path in out.iterdir()) == ["a", "b", "c", "synth.json"]


def test_synth_text_into_a_folder_or_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", "text", "--out", str(tmp_path), "--n", "50", "--corrupt", "2"]) == 0
    assert f"wrote 50 rows to {tmp_path / 'reviews.csv'}" in capsys.readouterr().out
    table = read_text_table(tmp_path / "reviews.csv")
    assert len(table) == 50 and len(table.skipped) == 2

    assert main(["data", "synth", "text", "--out", str(tmp_path / "sub"), "--format", "jsonl", "--n", "20"]) == 0
    assert (tmp_path / "sub" / "reviews.jsonl").is_file()
    assert main(["data", "synth", "text", "--out", str(tmp_path / "r.JSONL"), "--n", "30", "--imbalance", "2"]) == 0
    counts = re.search(r"wrote 30 rows .*: negative (\d+), positive (\d+)", capsys.readouterr().out)
    assert counts and int(counts.group(1)) >= 18 and int(counts.group(2)) <= 12  # 2:1 before 1% label noise

    assert main(["data", "synth", "text", "--out", str(tmp_path / "r.csv"), "--format", "jsonl"]) == 2
    assert "error: data synth text:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "synth", "images", "--out", "x", "--imbalance", "0.5"],
        ["data", "synth", "images", "--out", "x", "--per-class", "0"],
        ["data", "synth", "images", "--out", "x", "--classes", "only"],
        ["data", "synth", "images", "--out", "x", "--classes", "a,../b"],
        ["data", "synth", "text", "--out", "x", "--corrupt", "-1"],
        ["data", "synth", "text"],
    ],
)
def test_bad_flags_are_rejected_by_argparse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_incomplete_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data"]) == 2
    assert "synth" in capsys.readouterr().out
    assert main(["data", "synth"]) == 2
    assert "images" in capsys.readouterr().out


def _subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize(("kind", "function"), [("images", synth_images), ("text", synth_text)])
def test_help_defaults_are_synth_defaults(kind: str, function: object) -> None:
    parser = _subparser(build_parser(), "data", "synth", kind)
    defaults = inspect.signature(function).parameters  # type: ignore[arg-type]
    checked = 0
    for action in parser._actions:
        if action.dest not in defaults or action.dest in ("format", "overwrite"):  # stated in words
            continue
        stated = re.search(r"\(default: ([^)]*)\)", action.help or "")
        assert stated, f"--{action.dest} help states no default"
        default = defaults[action.dest].default
        if isinstance(default, tuple):
            expected = ",".join(default)
        else:
            expected = f"{default:g}" if isinstance(default, float) else str(default)
        assert stated.group(1) == expected, action.dest
        checked += 1
    assert checked >= 4


def test_generating_data_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom azure_dl.cli.main import main\n"
        f"assert main(['data', 'synth', 'images', '--out', {str(tmp_path / 'x')!r}, '--per-class', '2']) == 0\n"
        f"assert main(['data', 'synth', 'text', '--out', {str(tmp_path)!r}, '--n', '10']) == 0\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"
