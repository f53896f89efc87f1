"""Golden files for rendered YAML: machine-specific values normalised, `UPDATE_GOLDEN=1` rewrites them."""

from __future__ import annotations

import os
import re
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def normalise(text: str, *, out_dir: Path) -> str:
    """Replace what differs between machines and commits: the staging folder, hashes and commit ids."""
    text = text.replace(str(out_dir.resolve()), "<out>")
    text = re.sub(r"(snapshot_sha256: )[0-9a-f]{64}", r"\1<sha256>", text)
    text = re.sub(r"(git_commit: )[0-9a-f]{40}(-dirty)?", r"\1<git-commit>", text)
    return text


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"golden file {path} missing: run with UPDATE_GOLDEN=1 and review it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file; if intended, rerun with UPDATE_GOLDEN=1 and review"
