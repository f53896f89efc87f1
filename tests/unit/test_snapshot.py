"""Code snapshots: only what the job needs, a content hash that is stable and changes with the code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from azure_dl.errors import SpecError
from azure_dl.snapshot import MARKER, package_dir, stage_snapshot


def make_project(root: Path) -> Path:
    root.mkdir()
    (root / "train.py").write_text("print('train')\n")
    (root / "lib").mkdir()
    (root / "lib" / "util.py").write_text("X = 1\n")
    for excluded in ("tests", "__pycache__", ".venv", ".git", "data", "mlruns", "runs", "checkpoints", "outputs"):
        (root / excluded).mkdir()
        (root / excluded / "file.py").write_text("excluded\n")
    (root / "lib" / "__pycache__").mkdir()
    (root / "lib" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"\0")
    (root / "lib" / "stale.pyc").write_bytes(b"\0")
    (root / "mlflow.db").write_bytes(b"sqlite")
    return root


def test_user_code_is_staged_without_excluded_folders(tmp_path: Path) -> None:
    snapshot = stage_snapshot(make_project(tmp_path / "project"), tmp_path / "out" / "snapshot")
    assert snapshot.files == ("lib/util.py", "train.py")
    assert (snapshot.path / "train.py").read_text() == "print('train')\n"
    assert snapshot.size_bytes == len("print('train')\n") + len("X = 1\n")
    assert len(snapshot.sha256) == 64 and snapshot.short_hash in snapshot.describe()


def test_hash_is_stable_across_stagings_and_machines(tmp_path: Path) -> None:
    first = stage_snapshot(make_project(tmp_path / "a"), tmp_path / "s1")
    second = stage_snapshot(make_project(tmp_path / "b"), tmp_path / "s2")
    os.utime(tmp_path / "b" / "train.py", (1, 1))  # times never enter the hash
    third = stage_snapshot(tmp_path / "b", tmp_path / "s3")
    assert first.sha256 == second.sha256 == third.sha256


def test_hash_changes_when_a_script_changes_or_moves(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    before = stage_snapshot(project, tmp_path / "s").sha256
    (project / "train.py").write_text("print('train v2')\n")
    changed = stage_snapshot(project, tmp_path / "s").sha256
    (project / "train.py").rename(project / "main.py")
    moved = stage_snapshot(project, tmp_path / "s").sha256
    assert len({before, changed, moved}) == 3


def test_symlinks_and_large_files_are_skipped_with_a_note(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    (project / "link.py").symlink_to(project / "train.py")
    (project / "weights.bin").write_bytes(b"\0" * 2048)
    snapshot = stage_snapshot(project, tmp_path / "s", max_file_bytes=1024)
    assert "link.py" not in snapshot.files and "weights.bin" not in snapshot.files
    assert any("symlink link.py" in note for note in snapshot.notes)
    assert any("weights.bin" in note and "--data" in note for note in snapshot.notes)


def test_amlignore_is_honoured(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    (project / ".amlignore").write_text("# scratch\nnotebooks/\n*.ipynb\n/lib/util.py\n")
    (project / "notebooks").mkdir()
    (project / "notebooks" / "explore.py").write_text("x\n")
    (project / "analysis.ipynb").write_text("{}\n")
    snapshot = stage_snapshot(project, tmp_path / "s")
    assert snapshot.files == (".amlignore", "train.py")


def test_training_scripts_package_is_staged_as_a_package(tmp_path: Path) -> None:
    snapshot = stage_snapshot(package_dir("training_scripts"), tmp_path / "s")
    assert "training_scripts/__init__.py" in snapshot.files
    assert all(name.startswith("training_scripts/") for name in snapshot.files)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in snapshot.files)


def test_restaging_replaces_an_old_snapshot_but_never_a_foreign_folder(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    dest = tmp_path / "s"
    stage_snapshot(project, dest)
    (dest / "leftover.py").write_text("old\n")
    assert "leftover.py" not in stage_snapshot(project, dest).files
    assert (dest / MARKER).is_file()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me\n")
    with pytest.raises(SpecError, match="not an azure-dl snapshot"):
        stage_snapshot(project, foreign)
    assert (foreign / "precious.txt").read_text() == "keep me\n"


def test_amlignore_negation_keeps_only_what_it_reinstates(tmp_path: Path) -> None:
    """The repo root's own .amlignore (`/*` then `!/training_scripts`) uploads training_scripts/ and nothing else."""
    code = tmp_path / "repo"
    for relative in ("training_scripts/train.py", "training_scripts/sub/util.py", "docs/readme.md", "setup.py"):
        (code / relative).parent.mkdir(parents=True, exist_ok=True)
        (code / relative).write_text("x = 1\n")
    (code / ".amlignore").write_text("/*\n!/training_scripts\n**/util.py\n")
    snapshot = stage_snapshot(code, tmp_path / "snap")
    assert list(snapshot.files) == ["training_scripts/train.py"]


def test_repo_root_amlignore_uploads_only_the_data_plane(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    snapshot = stage_snapshot(repo, tmp_path / "snap")
    assert {name.split("/")[0] for name in snapshot.files} == {"training_scripts"}
