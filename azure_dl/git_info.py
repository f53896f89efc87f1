"""The git commit a job, a snapshot or a registered model came from: one `git` call for the whole control plane."""

from __future__ import annotations

import subprocess
from pathlib import Path

_TIMEOUT_S = 5


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):  # no git installed, or it hung: the commit is just unknown
        return None


def git_commit(folder: Path) -> str | None:
    """The HEAD commit of the repository holding `folder`, with '-dirty' when files under it are uncommitted.

    None outside a git checkout (or without git): provenance is recorded when known, never required.
    """
    head = _git(Path(folder), "rev-parse", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return None
    status = _git(Path(folder), "status", "--porcelain", "--", ".")
    dirty = status is not None and bool(status.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")
