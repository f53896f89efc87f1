"""Crash-safe training checkpoints that `torch.load(path, weights_only=True)` reads back.

A checkpoint is a dict of tensors, Python scalars, strings, lists and dicts only (RNG states included: numpy's
state would be rejected by `weights_only=True`, so it is stored as a tensor plus numbers). Files are written to a
temporary name in the same folder, fsynced and renamed over (`os.replace`), so a kill at any instant leaves either
the old set of files or the new one, never half a file under a checkpoint's name. Names sort by global step:
``ckpt-e0003-s00001200.pt``. The best weights live in their own plain state_dict file, ``best-e0003.pt``, named by
the epoch that produced them and referenced from the checkpoint by file name; a best file no kept checkpoint
refers to is deleted. Only the last `keep` checkpoints are kept (default 2).
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training_scripts import progress
from training_scripts.training_errors import CheckpointWriteError

FORMAT_VERSION = 1
_CHECKPOINT_NAME = re.compile(r"^ckpt-e(\d+)-s(\d+)\.pt$")
_BEST_NAME = re.compile(r"^best-e(\d+)\.pt$")
_TEMP_PREFIX = ".tmp-"


def atomic_save(obj: object, path: Path) -> None:
    """`torch.save` to a temporary file beside `path`, fsync, then rename over `path` (and fsync the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp_name).replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems (blobfuse mounts) refuse to open a folder: not fatal.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU (and the current GPU's, when CUDA is in use) RNG states: tensors and scalars."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        # This process's own GPU only: get_rng_state_all() would open a CUDA context on every visible GPU
        # from every DDP rank.
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Undo `capture_rng_state` (the GPU state goes to the current device)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_states[0])  # the current device (`init_distributed` selected it)


def checkpoint_name(epoch: int, global_step: int) -> str:
    return f"ckpt-e{epoch:04d}-s{global_step:08d}.pt"


def best_weights_name(epoch: int) -> str:
    return f"best-e{epoch:04d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files in `directory`, oldest first (by global step, then epoch)."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _CHECKPOINT_NAME.match(path.name)
        if match:
            found.append(((int(match.group(2)), int(match.group(1))), path))
    return [path for _, path in sorted(found)]


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not an azure-dl checkpoint of format version {FORMAT_VERSION}")
    return state


@dataclass(frozen=True)
class LoadedCheckpoint:
    path: Path
    state: dict[str, Any]

    @property
    def best_weights_path(self) -> Path | None:
        name = self.state.get("best_weights_file")
        return self.path.parent / name if name else None


def latest_valid_checkpoint(directory: Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint | None:
    """The newest checkpoint that loads; a truncated or corrupt one is skipped with a warning naming it."""
    for path in reversed(list_checkpoints(directory)):
        try:
            state = load_checkpoint(path, map_location)
            best = state.get("best_weights_file")
            if best and not (directory / best).is_file():
                raise ValueError(f"its best-weights file {best} is missing")
        except Exception as exc:
            progress.warning(f"skipping unreadable checkpoint {path}: {type(exc).__name__}: {exc}")
            continue
        return LoadedCheckpoint(path=path, state=state)
    return None


class CheckpointManager:
    """Writes checkpoints and best weights into one folder and keeps the newest `keep` checkpoints.

    `enabled=False` (every rank but 0) makes every write a no-op, so callers need no rank checks.
    """

    def __init__(self, directory: Path, *, keep: int = 2, enabled: bool = True) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}: at least the newest checkpoint must be kept (keep >= 1)")
        self.directory = Path(directory)
        self.keep = keep
        self.enabled = enabled
        self.saved: list[Path] = []
        if enabled:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # e.g. a file where the folder should be
                raise CheckpointWriteError(self.directory, exc, None) from exc
            # Leftovers of a writer killed mid-write: never a valid checkpoint, only disk space.
            for leftover in self.directory.glob(_TEMP_PREFIX + "*"):
                leftover.unlink(missing_ok=True)

    def save_best_weights(self, state_dict: Mapping[str, torch.Tensor], epoch: int) -> str | None:
        """Write the best weights (a plain state_dict); returns the file name to record in the checkpoint."""
        if not self.enabled:
            return None
        name = best_weights_name(epoch)
        self._write({key: value.detach().cpu() for key, value in state_dict.items()}, self.directory / name)
        return name

    def _write(self, obj: object, path: Path) -> None:
        try:
            atomic_save(obj, path)
        except OSError as exc:  # ENOSPC, EROFS, EACCES, ENOTDIR ...: the user's to fix, not a traceback
            checkpoints = list_checkpoints(self.directory) if self.directory.is_dir() else []
            raise CheckpointWriteError(path, exc, checkpoints[-1] if checkpoints else None) from exc

    def save(self, state: Mapping[str, Any], *, epoch: int, global_step: int) -> Path | None:
        """Write one checkpoint atomically, then delete what no longer needs keeping."""
        if not self.enabled:
            return None
        path = self.directory / checkpoint_name(epoch, global_step)
        self._write({"format_version": FORMAT_VERSION, **state}, path)
        self.saved.append(path)
        self._prune()
        return path

    def _prune(self) -> None:
        checkpoints = list_checkpoints(self.directory)
        for old in checkpoints[: -self.keep]:
            old.unlink(missing_ok=True)
        referenced = set()
        for kept in checkpoints[-self.keep :]:
            try:
                # mmap: only the small header entries are read, not the weights.
                state = torch.load(kept, map_location="cpu", weights_only=True, mmap=True)
                referenced.add(state.get("best_weights_file"))
            except Exception:
                # A corrupt kept file protects nothing; it is skipped at resume time anyway.
                continue
        for best in self.directory.iterdir():
            if _BEST_NAME.match(best.name) and best.name not in referenced:
                best.unlink(missing_ok=True)
