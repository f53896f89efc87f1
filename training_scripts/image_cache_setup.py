"""The decoded-image cache of one training run: where it lives, one builder per node under DDP, and what the data
report and MLflow say about it. The cache itself (key, build, layout) is image_cache.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_scripts import progress
from training_scripts.distributed import DistContext, barrier, broadcast_object
from training_scripts.image_cache import CachedImages, CacheSettings, choose_cache_dir, ensure_cache, open_cache
from training_scripts.splits import DatasetError


@dataclass
class ImageFolderData:
    """One data folder's usable images, what was skipped and why, and its cache (None: decode every epoch)."""

    path: str
    samples: list[tuple[Path, int]]
    skipped: list[tuple[Path, str]]
    cache: CachedImages | None = None


def attach_caches(
    folders: dict[str, ImageFolderData],
    settings: CacheSettings,
    ctx: DistContext,
    *,
    cache_dir: Path | None,
    fallback: Path,
    workers: int,
) -> None:
    """Give every folder its cache, reused or built, and narrow its samples to the images the cache holds.

    `cache_dir` None: `.azure-dl-cache` beside the training folder, else `fallback` (image_cache.choose_cache_dir).
    Under DDP the first process of each node builds (the others would only repeat its reading and decoding)
    while the rest wait at a barrier; then every rank opens the folders rank 0 names.
    """
    names = list(folders)
    published: list[str] = []
    if ctx.local_rank == 0:
        if cache_dir is None:
            cache_dir, why = choose_cache_dir(folders[names[0]].path, fallback)
            if why and ctx.is_main:
                progress.warning(f"image cache: {why}; using {cache_dir} instead (give --cache-dir to choose)")
        for name in names:
            folder = folders[name]
            folder.cache = ensure_cache(folder.path, folder.samples, settings, cache_dir, workers=workers)
            published.append(str(folder.cache.folder))
    if ctx.distributed:
        try:
            barrier(ctx)
        except RuntimeError as exc:  # the builder failed (and says why) and left the process group
            raise DatasetError(f"the image cache was not prepared by the first process ({exc}); see its error") from exc
        published = broadcast_object(published, ctx)
        for name, location in zip(names, published):
            if folders[name].cache is None:
                folders[name].cache = open_cache(Path(location), Path(folders[name].path))
    for name in names:
        folder = folders[name]
        cached = folder.cache
        if cached is None:
            continue
        folder.samples = list(cached.samples)
        folder.skipped += cached.skipped
        if ctx.is_main:
            print(
                f"image cache ({name}): {cached.status} {cached.folder} - {len(cached.samples)} images, "
                f"{cached.nbytes / 2**30:.2f} GiB; content hash {cached.hash_seconds:.1f} s, "
                f"build {cached.build_seconds:.1f} s",
                flush=True,
            )
            if cached.skipped:
                shown = "; ".join(f"{p.name}: {reason}" for p, reason in cached.skipped[:3])
                progress.warning(
                    f"{name} data: {len(cached.skipped)} image(s) failed to decode and are left out ({shown})"
                )


def cache_report(folders: dict[str, ImageFolderData]) -> dict[str, Any]:
    """data_report.json entries: each folder's cache (or "off"), and how many were reused or built."""
    caches = {name: folder.cache.report() for name, folder in folders.items() if folder.cache is not None}
    return {
        "image_cache": caches or "off",
        "image_cache_hits": sum(1 for cache in caches.values() if cache["status"] == "hit"),
        "image_cache_builds": sum(1 for cache in caches.values() if cache["status"] == "built"),
    }


def cache_metrics(folders: dict[str, ImageFolderData]) -> dict[str, float]:
    """MLflow metrics of the cache: how many folders were reused or built, its size, what it cost this run."""
    caches = [folder.cache for folder in folders.values() if folder.cache is not None]
    if not caches:
        return {}
    return {
        "image_cache_hits": float(sum(cache.status == "hit" for cache in caches)),
        "image_cache_builds": float(sum(cache.status == "built" for cache in caches)),
        "image_cache_bytes": float(sum(cache.nbytes for cache in caches)),
        "image_cache_hash_seconds": sum(cache.hash_seconds for cache in caches),
        "image_cache_build_seconds": sum(cache.build_seconds for cache in caches),
    }
