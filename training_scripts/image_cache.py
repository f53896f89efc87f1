"""Decode-once image cache: every image decoded, converted and resized ONCE into a memory-mapped uint8 array.

Decoding a 1024 px 16-bit X-ray costs about 19 ms (a windowed DICOM about 32 ms), every image, every epoch; a GPU
training a ResNet-50 needs thousands of images per second. `ensure_cache` does that work once per data folder:

- Each image goes through `image_decode.open_image` (16-bit and DICOM rescaled exactly as the decode path does),
  then `image_transforms.resize_shorter_side` to the preset's `resize_size`, then the central `resize_size`
  square is kept, placed so that the evaluation centre crop of `image_size` taken from it is exactly the crop
  `image_transforms.image_to_array` takes from the decoded image (see `_square_offset`). Stored as uint8
  [N, R, R, C] in `images.npy` (C = 3, or 1 for greyscale data), beside `index.json` (paths relative to the data
  folder, labels, shape, the settings, and the files that could not be decoded, with reasons).
- The cache folder's name is a key over the files' CONTENT (sha256 of every file's bytes, read in a thread pool;
  size and mtime are not trusted) and the preprocessing (`CacheSettings`: resize and crop size, channels,
  the pixel limit, a fingerprint of the decoding modules' source and the Pillow / pydicom versions). A change of
  either gives a new key, so a stale cache is never read; an unchanged folder reuses the cache.
- Built in a temporary folder beside the final one and published with one `os.replace`: a crash leaves only a
  `.tmp-*` folder that is never read (and is removed by a later build on the same host), never a half cache.
  Two processes building the same key at once both succeed; the second rename loses and uses the first's.
- Decoding runs in `workers` processes (default min(cores, 8)) in chunks written in order, with a progress line.
- Before building, the size (N x R x R x C bytes) is checked against the free space (`shutil.disk_usage`).

Training reads the array through `image_augment.CachedImageDataset`; random crops and normalisation run there, on
the training device. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import itertools
import json
import math
import multiprocessing
import os
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from training_scripts import progress
from training_scripts.image_decode import open_image, to_rgb
from training_scripts.image_formats import ImageDecodeError
from training_scripts.image_transforms import resize_shorter_side
from training_scripts.splits import DatasetError

LAYOUT_VERSION = 1
ARRAY_FILE = "images.npy"
INDEX_FILE = "index.json"
DEFAULT_CACHE_DIRNAME = ".azure-dl-cache"
_TEMP_PREFIX = ".tmp-"
_HASH_CHUNK = 1 << 20
_BUILD_CHUNK = 16  # images per task sent to a worker process: large enough to amortise the pickling
_SPACE_MARGIN = 64 << 20  # keep this much free beyond the cache itself
# The modules whose code decides the cached pixels: a change in any of them invalidates every cache.
_DECODER_MODULES = ("image_decode.py", "image_rescale.py", "image_formats.py", "dicom.py", "image_transforms.py")


class CacheError(DatasetError):
    """The cache cannot be built or read (no room, unwritable folder, corrupt index); exit code 2."""


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _decoder_fingerprint() -> str:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _DECODER_MODULES:
        digest.update(name.encode())
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class CacheSettings:
    """The preprocessing a cache depends on; every field is part of its key."""

    resize_size: int
    image_size: int
    channels: int = 3  # 1 keeps one grey channel (exact for greyscale images, 3x smaller); 3 keeps RGB
    max_pixels: int | None = None
    decoder: str = field(default_factory=_decoder_fingerprint)
    pillow: str | None = field(default_factory=lambda: _version("pillow"))
    pydicom: str | None = field(default_factory=lambda: _version("pydicom"))
    layout: int = LAYOUT_VERSION

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"cache channels must be 1 or 3, got {self.channels!r}")
        if not 1 <= self.image_size <= self.resize_size:
            raise ValueError(f"need 1 <= image_size <= resize_size, got {self.image_size} and {self.resize_size}")

    @property
    def image_bytes(self) -> int:
        return self.resize_size * self.resize_size * self.channels


@dataclass
class CachedImages:
    """An opened cache: rows of `images.npy` for the usable images, and what was left out."""

    folder: Path
    shape: tuple[int, int, int, int]  # [rows, R, R, C] of the whole array (skipped files keep a zero row)
    samples: list[tuple[Path, int]]  # usable images (absolute paths) and labels, in the data folder's order
    rows: list[int]  # the array row of each sample
    skipped: list[tuple[Path, str]]  # images that passed the folder scan but could not be decoded
    status: str  # "hit" (reused) or "built"
    hash_seconds: float = 0.0
    build_seconds: float = 0.0

    @property
    def array_path(self) -> Path:
        return self.folder / ARRAY_FILE

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape)

    def report(self) -> dict[str, Any]:
        """What the data report and MLflow show about this cache."""
        return {
            "status": self.status,
            "path": str(self.folder),
            "images": len(self.samples),
            "bytes": self.nbytes,
            "skipped": len(self.skipped),
            "hash_seconds": round(self.hash_seconds, 2),
            "build_seconds": round(self.build_seconds, 2),
        }


# ---------------------------------------------------------------------------------------------------- the key


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (hashlib releases the GIL, so threads hash in parallel)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(
    root: Path, samples: Sequence[tuple[Path, int]], settings: CacheSettings, *, workers: int | None = None
) -> str:
    """The cache's name: sha256 over the settings and every sample's (relative path, label, content digest)."""
    paths = [Path(path) for path, _ in samples]
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        digests = list(pool.map(file_digest, paths))
    digest = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode())
    for path, (_, label), content in zip(paths, samples, digests):
        digest.update(f"{_relative(path, root)}\0{int(label)}\0{content}\n".encode())
    return digest.hexdigest()[:32]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


# ------------------------------------------------------------------------------------------ one image's pixels


def _square_offset(length: int, resize_size: int, image_size: int) -> int:
    """Where the stored R-square starts along a side of `length` (>= R) pixels.

    The evaluation crop takes `image_size` pixels from `round((length - image_size) / 2)` of the resized image
    (image_transforms.center_crop); from the stored square it takes them from `round((R - image_size) / 2)`.
    Starting the square at the difference makes both crops the very same pixels.
    """
    offset = round((length - image_size) / 2.0) - round((resize_size - image_size) / 2.0)
    return min(max(offset, 0), length - resize_size)


def cached_pixels(img: Image.Image, settings: CacheSettings, label: str = "image") -> np.ndarray:
    """A decoded image -> the uint8 [R, R, C] array stored in the cache."""
    size = settings.resize_size
    resized = resize_shorter_side(to_rgb(img), size)
    width, height = resized.size
    left = _square_offset(width, size, settings.image_size)
    top = _square_offset(height, size, settings.image_size)
    square = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)
    if settings.channels == 3:
        return square
    if not ((square[..., 0] == square[..., 1]).all() and (square[..., 1] == square[..., 2]).all()):
        raise CacheError(
            f"{label} is a colour image, but the cache keeps one grey channel (--cache-channels 1): "
            "use --cache-channels 3 for colour data"
        )
    return square[..., :1]


def _decode_chunk(
    items: Sequence[tuple[int, str]], settings: CacheSettings
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Worker task: decode `items` (position, path) -> their stacked pixels and the (position, reason) failures."""
    out = np.zeros((len(items), settings.resize_size, settings.resize_size, settings.channels), dtype=np.uint8)
    failures: list[tuple[int, str]] = []
    for slot, (position, path) in enumerate(items):
        try:
            out[slot] = cached_pixels(open_image(path, max_pixels=settings.max_pixels), settings, label=path)
        except ImageDecodeError as exc:
            failures.append((position, str(exc)))
        except OSError as exc:  # vanished or unreadable since the scan
            failures.append((position, f"cannot read {path}: {exc}"))
    return out, failures


# ------------------------------------------------------------------------------------------- building, opening


def required_bytes(count: int, settings: CacheSettings) -> int:
    """Disk space a cache of `count` images takes: the array, its header and the index (estimated)."""
    return count * settings.image_bytes + 128 + count * 256


def check_free_space(cache_dir: Path, needed: int) -> None:
    """CacheError naming the folder, the bytes needed and free, and what to do, when `needed` would not fit."""
    probe = cache_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + _SPACE_MARGIN > free:
        raise CacheError(
            f"the decoded-image cache needs {needed:,} bytes ({needed / 2**30:.2f} GiB) in {cache_dir}, but only "
            f"{free:,} bytes ({free / 2**30:.2f} GiB) are free there: give --cache-dir on a disk with more room, "
            "or --no-cache to decode the images every epoch instead"
        )


def _executor(workers: int) -> Executor:
    # fork: the workers need only PIL and numpy, and a spawned one would re-import the training script and torch.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def _chunks(paths: Sequence[Path]) -> Iterator[list[tuple[int, str]]]:
    for start in range(0, len(paths), _BUILD_CHUNK):
        yield [(position, str(paths[position])) for position in range(start, min(start + _BUILD_CHUNK, len(paths)))]


def _write_array(
    target: Path, paths: Sequence[Path], settings: CacheSettings, workers: int, label: str
) -> dict[int, str]:
    """Decode every path into `target` (a .npy file written front to back); returns {position: reason} failures."""
    shape = (len(paths), settings.resize_size, settings.resize_size, settings.channels)
    failures: dict[int, str] = {}
    counter = progress.Counter(f"decoding {label} into the image cache", len(paths), unit="images")
    # Sequential writes, no shared mmap: friendlier to network-backed folders (an Azure datastore mount).
    with target.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False, "shape": shape})
        chunks = list(_chunks(paths))
        pool = _executor(min(workers, len(chunks))) if workers > 1 and len(chunks) > 1 else None
        try:
            results: Iterator[tuple[np.ndarray, list[tuple[int, str]]]] = (
                pool.map(_decode_chunk, chunks, itertools.repeat(settings))
                if pool is not None
                else (_decode_chunk(chunk, settings) for chunk in chunks)
            )
            for pixels, chunk_failures in results:
                handle.write(pixels.tobytes())
                failures.update(chunk_failures)
                counter.advance(len(pixels))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        handle.flush()
        os.fsync(handle.fileno())
    counter.finish()
    return failures


def _remove_stale_temps(cache_dir: Path) -> None:
    """Temporary folders a crashed build of this host left (their process is gone)."""
    mine = f"-{socket.gethostname()}-"
    for entry in cache_dir.glob(_TEMP_PREFIX + "*"):
        # .tmp-<key>-<host>-<pid>: host names may hold dashes, so match the host and take the pid after it.
        head, found, pid = entry.name.rpartition("-")
        if not (entry.is_dir() and found and pid.isdigit() and (head + "-").endswith(mine)):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:
            continue  # alive, another user's


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def build_cache(
    root: Path,
    samples: Sequence[tuple[Path, int]],
    settings: CacheSettings,
    cache_dir: Path,
    key: str,
    *,
    workers: int,
) -> Path:
    """Decode `samples` into cache_dir/<key>, atomically; returns the published folder."""
    check_free_space(cache_dir, required_bytes(len(samples), settings))
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"cannot create the image cache folder {cache_dir}: {exc}; give another --cache-dir") from exc
    _remove_stale_temps(cache_dir)
    final = cache_dir / key
    temp = cache_dir / f"{_TEMP_PREFIX}{key}-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    try:
        paths = [Path(path) for path, _ in samples]
        started = time.perf_counter()
        failures = _write_array(temp / ARRAY_FILE, paths, settings, workers, str(root))
        index = {
            "layout": LAYOUT_VERSION,
            "key": key,
            "root": str(root),
            "settings": asdict(settings),
            "shape": [len(paths), settings.resize_size, settings.resize_size, settings.channels],
            "dtype": "uint8",
            "entries": [
                [_relative(path, root), int(label), row]
                for row, (path, label) in enumerate(samples)
                if row not in failures
            ],
            "skipped": [[_relative(paths[row], root), reason] for row, reason in sorted(failures.items())],
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        # The index is written last: a folder without a complete index.json is never a cache.
        with (temp / INDEX_FILE).open("w", encoding="utf-8") as handle:
            json.dump(index, handle)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(temp)
        try:
            temp.replace(final)
        except OSError:
            if not (final / INDEX_FILE).is_file():
                raise
            shutil.rmtree(temp, ignore_errors=True)  # another process published the same key first: use it
        _fsync_dir(cache_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return final


def open_cache(folder: Path, root: Path, *, status: str = "hit") -> CachedImages:
    """Read a published cache folder; CacheError when its index or array does not match."""
    try:
        index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        shape = tuple(int(v) for v in index["shape"])
        array = np.load(folder / ARRAY_FILE, mmap_mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise CacheError(f"image cache {folder} is unreadable ({exc}); delete the folder to rebuild it") from exc
    if array.shape != shape or array.dtype != np.uint8 or len(shape) != 4:
        raise CacheError(f"image cache {folder}: array {array.shape} {array.dtype} does not match its index {shape}")
    samples = [(root / rel, int(label)) for rel, label, _ in index["entries"]]
    rows = [int(row) for _, _, row in index["entries"]]
    skipped = [(root / rel, str(reason)) for rel, reason in index["skipped"]]
    return CachedImages(
        folder=folder,
        shape=(shape[0], shape[1], shape[2], shape[3]),
        samples=samples,
        rows=rows,
        skipped=skipped,
        status=status,
        build_seconds=float(index.get("build_seconds", 0.0)) if status == "built" else 0.0,
    )


def ensure_cache(
    root: str | os.PathLike[str],
    samples: Sequence[tuple[Path, int]],
    settings: CacheSettings,
    cache_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
) -> CachedImages:
    """The cache of `samples` (a folder scan's usable images) under `cache_dir`: reused when its key exists, else
    built. Raises CacheError when it would not fit or cannot be written."""
    root, cache_dir = Path(root), Path(cache_dir)
    workers = workers or default_workers()
    started = time.perf_counter()
    key = cache_key(root, samples, settings, workers=workers)
    hash_seconds = time.perf_counter() - started
    folder = cache_dir / key
    if (folder / INDEX_FILE).is_file():
        cached = open_cache(folder, root, status="hit")
    else:
        build_cache(root, samples, settings, cache_dir, key, workers=workers)
        cached = open_cache(folder, root, status="built")
    cached.hash_seconds = hash_seconds
    return cached


# ------------------------------------------------------------------------------------------------- where it lives


def _writable(folder: Path) -> str | None:
    """None when files can be created in `folder` (made if missing), else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f"{_TEMP_PREFIX}probe-{socket.gethostname()}-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return None


def choose_cache_dir(data: str | os.PathLike[str], fallback: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """The default cache folder: `.azure-dl-cache` beside the data folder (not inside it, so uploading the data
    does not upload the cache), else, when that is read-only (an Azure ML input mount is), `fallback` (the
    checkpoint folder's `image-cache`: on Azure a read-write output that a restarted job gets back). Returns the
    folder and, when the fallback was taken, why."""
    preferred = Path(data).resolve().parent / DEFAULT_CACHE_DIRNAME
    problem = _writable(preferred)
    if problem is None:
        return preferred, None
    return Path(fallback), f"{preferred} is not writable ({problem})"
