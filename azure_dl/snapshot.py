"""Stage the code a job uploads into one folder, leaving out what the job does not need, and hash it.

The hash covers sorted relative paths and file bytes only (not times or permissions), so the same code gives the
same hash on any machine and Azure ML can reuse an uploaded snapshot; any change to a script changes it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure_dl.errors import SpecError

# Folder and file names never uploaded: tests, caches, environments, data, tracking stores and run outputs.
EXCLUDED_NAMES = frozenset(
    {
        "tests",
        "__pycache__",
        ".venv",
        "venv",
        ".git",
        ".hg",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
        "data",
        "mlruns",
        "mlflow.db",
        "runs",
        "checkpoints",
        "outputs",
        ".azure-dl",
        ".DS_Store",
    }
)
EXCLUDED_PATTERNS = ("*.pyc", "*.pyo", "*.egg-info", "*.db")
MAX_FILE_BYTES = 5 * 1024 * 1024
MARKER = ".azure-dl-snapshot"
IGNORE_FILE = ".amlignore"


@dataclass(frozen=True)
class Snapshot:
    path: Path
    sha256: str
    size_bytes: int
    files: tuple[str, ...]  # relative POSIX paths, sorted
    notes: tuple[str, ...] = field(default=())  # what was skipped and why (symlinks, large files)

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    def describe(self) -> str:
        return f"{len(self.files)} files, {_human(self.size_bytes)}, sha256 {self.short_hash}"


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def package_dir(package: str = "training_scripts") -> Path:
    """The folder of an importable package (works from a checkout and from an installed wheel)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SpecError(f"package {package!r} is not importable", hint="install azure-dl (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _read_ignore(root: Path) -> list[str]:
    ignore = root / IGNORE_FILE
    if not ignore.is_file():
        return []
    lines = (line.rstrip("\n") for line in ignore.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _ignored(relative: str, is_dir: bool, patterns: list[str]) -> bool:
    """gitignore semantics (negation `!`, anchoring `/`, `**`, directory-only `dir/`), as Azure ML reads .amlignore."""
    if not patterns:
        return False
    import pathspec  # an azure-ai-ml dependency; imported here to keep `--help` light

    spec = _SPEC_CACHE.get(tuple(patterns))
    if spec is None:
        spec = _SPEC_CACHE.setdefault(tuple(patterns), pathspec.GitIgnoreSpec.from_lines(patterns))
    return bool(spec.match_file(relative + "/" if is_dir else relative))


_SPEC_CACHE: dict[tuple[str, ...], Any] = {}


def _walk(root: Path, patterns: list[str], notes: list[str], max_file_bytes: int) -> Iterator[tuple[Path, str]]:
    """(absolute path, relative POSIX path) of every file to upload, in sorted order."""
    stack = [root]
    found: list[tuple[Path, str]] = []
    while stack:
        folder = stack.pop()
        for entry in sorted(folder.iterdir()):
            relative = entry.relative_to(root).as_posix()
            if entry.name in EXCLUDED_NAMES or any(fnmatch.fnmatch(entry.name, p) for p in EXCLUDED_PATTERNS):
                continue
            if entry.is_symlink():
                notes.append(f"skipped symlink {relative} (a job snapshot holds plain files only)")
                continue
            if _ignored(relative, entry.is_dir(), patterns):
                continue
            if entry.is_dir():
                stack.append(entry)
            elif entry.is_file():
                size = entry.stat().st_size
                if size > max_file_bytes:
                    notes.append(
                        f"skipped {relative} ({_human(size)} > {_human(max_file_bytes)}): pass large files as --data "
                        "inputs, not as code"
                    )
                    continue
                found.append((entry, relative))
    yield from sorted(found, key=lambda item: item[1])


def stage_snapshot(
    sources: Path | Iterable[Path],
    dest: Path,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> Snapshot:
    """Copy the code into `dest` and hash it.

    A package folder (one with __init__.py, e.g. training_scripts/) is staged as dest/<package>/ so that
    `python -m package.module` runs from dest; any other folder (a user's --code DIR) is staged as dest itself,
    honouring a `.amlignore` in it. `dest` is replaced if it is an earlier snapshot, refused if it holds anything else.
    """
    roots = [sources] if isinstance(sources, Path) else list(sources)
    if dest.exists():
        if not (dest / MARKER).is_file() and any(dest.iterdir()):
            raise SpecError(f"{dest} exists and is not an azure-dl snapshot", hint="choose an empty --out folder")
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    notes: list[str] = []
    digest = hashlib.sha256()
    files: list[str] = []
    total = 0
    for root in roots:
        root = root.resolve()
        if not root.is_dir():
            raise SpecError(f"code folder {root} does not exist", hint="give --code DIR with your script in it")
        prefix = f"{root.name}/" if (root / "__init__.py").is_file() else ""
        patterns = _read_ignore(root)
        for path, relative in _walk(root, patterns, notes, max_file_bytes):
            target_relative = prefix + relative
            if target_relative in files:
                raise SpecError(f"two code folders both provide {target_relative}")
            target = dest / target_relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            files.append(target_relative)
            total += path.stat().st_size
    for relative in sorted(files):
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update((dest / relative).read_bytes() + b"\0")
    (dest / MARKER).write_text("staged by azure-dl; safe to delete\n", encoding="utf-8")
    return Snapshot(
        path=dest, sha256=digest.hexdigest(), size_bytes=total, files=tuple(sorted(files)), notes=tuple(notes)
    )
