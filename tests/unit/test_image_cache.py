"""The decoded-image cache: its key, atomic build and reuse, skipped files, the disk check, and that training on it
sees the scoring preprocessing's pixels (within one grey level) and batched augmentation of the right shape."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.image_files import encoded, noise_image, png_with_corrupt_data_but_valid_crc
from training_scripts import image_cache
from training_scripts.image_augment import (
    CachedImageDataset,
    EvalBatchTransform,
    TrainBatchTransform,
    random_resized_crop_boxes,
)
from training_scripts.image_cache import (
    INDEX_FILE,
    CacheError,
    CacheSettings,
    cache_key,
    choose_cache_dir,
    ensure_cache,
)
from training_scripts.image_folder import scan_image_folder
from training_scripts.image_transforms import preprocess_images
from training_scripts.preprocess_config import ImagePreprocessConfig

CFG = ImagePreprocessConfig(image_size=16, resize_size=18)


def settings(cfg: ImagePreprocessConfig = CFG, **changes: Any) -> CacheSettings:
    return CacheSettings(resize_size=cfg.resize_size, image_size=cfg.image_size, **changes)


def image_folder(root: Path, sizes: list[tuple[int, int]] | None = None) -> Path:
    """ROOT/a and ROOT/b with RGB noise PNGs of the given (width, height) sizes, alternating classes."""
    for position, size in enumerate(sizes or [(24, 24), (37, 53), (64, 40), (30, 30)]):
        folder = root / ("a" if position % 2 == 0 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{position}.png").write_bytes(encoded(noise_image(size, seed=position), "PNG"))
    return root


def scanned(root: Path) -> list[tuple[Path, int]]:
    return scan_image_folder(root).samples


def cached_eval(cached: image_cache.CachedImages, cfg: ImagePreprocessConfig) -> np.ndarray:
    data = CachedImageDataset(cached.array_path, cached.rows, [label for _, label in cached.samples])
    batch = torch.stack([data[i][0] for i in range(len(data))])
    return EvalBatchTransform(cfg)(batch).numpy()


def grey_levels(a: np.ndarray, b: np.ndarray, cfg: ImagePreprocessConfig) -> float:
    """The largest difference of two normalised batches, in 8-bit grey levels."""
    std = np.asarray(cfg.std, dtype=np.float64).reshape(1, 3, 1, 1)
    return float((np.abs(a.astype(np.float64) - b) * std * 255).max())


# --------------------------------------------------------------------------------------------------------- key


def test_key_follows_the_bytes_not_size_and_mtime(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "data")
    samples = scanned(root)
    before = cache_key(root, samples, settings())
    assert cache_key(root, samples, settings()) == before
    # Same size, same mtime, different bytes: a stat-based key would miss it.
    target = samples[0][0]
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size and target.stat().st_mtime_ns == stat.st_mtime_ns
    assert cache_key(root, samples, settings()) != before


def test_key_follows_the_preprocessing_and_the_labels(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "data")
    samples = scanned(root)
    base = cache_key(root, samples, settings())
    other_sizes = ImagePreprocessConfig(image_size=16, resize_size=20)
    assert cache_key(root, samples, settings(other_sizes)) != base
    assert cache_key(root, samples, settings(channels=1)) != base
    assert cache_key(root, samples, settings(max_pixels=10_000)) != base
    assert cache_key(root, samples, settings(decoder="changed decoder")) != base
    relabelled = [(path, 1 - label) for path, label in samples]
    assert cache_key(root, relabelled, settings()) != base


# -------------------------------------------------------------------------------------------- build and reuse


def test_a_second_call_reuses_the_cache_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = image_folder(tmp_path / "data")
    first = ensure_cache(root, scanned(root), settings(), tmp_path / "cache", workers=1)
    assert first.status == "built" and len(first.samples) == 4 and first.shape == (4, 18, 18, 3)

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt a cache that exists")

    monkeypatch.setattr(image_cache, "build_cache", no_build)
    second = ensure_cache(root, scanned(root), settings(), tmp_path / "cache", workers=1)
    assert second.status == "hit" and second.folder == first.folder and second.samples == first.samples
    assert [path.name for path in (tmp_path / "cache").iterdir()] == [first.folder.name]


def test_parallel_build_matches_the_serial_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_cache, "_BUILD_CHUNK", 2)  # 2 chunks of 2 images: two worker processes
    root = image_folder(tmp_path / "data")
    serial = ensure_cache(root, scanned(root), settings(), tmp_path / "serial", workers=1)
    parallel = ensure_cache(root, scanned(root), settings(), tmp_path / "parallel", workers=2)
    assert serial.folder.name == parallel.folder.name
    assert np.array_equal(np.load(serial.array_path), np.load(parallel.array_path))


def test_a_crash_mid_build_leaves_nothing_that_is_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = image_folder(tmp_path / "data")
    cache_dir = tmp_path / "cache"

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # e.g. Ctrl-C or a kill while the array is half written

    original = image_cache._write_array
    monkeypatch.setattr(image_cache, "_write_array", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_cache(root, scanned(root), settings(), cache_dir, workers=1)
    assert list(cache_dir.iterdir()) == []  # the temporary folder went with it

    # A harder crash (SIGKILL) leaves its temporary folder behind: never read, and removed by the next build.
    key = cache_key(root, scanned(root), settings())
    monkeypatch.setattr(image_cache.socket, "gethostname", lambda: "node-with-dashes-0")
    dead = cache_dir / f".tmp-{key}-node-with-dashes-0-999999999"
    dead.mkdir()
    (dead / INDEX_FILE).write_text("{}")
    other_host = cache_dir / f".tmp-{key}-another-node-999999999"  # may be alive elsewhere: left alone
    other_host.mkdir()
    monkeypatch.setattr(image_cache, "_write_array", original)
    cached = ensure_cache(root, scanned(root), settings(), cache_dir, workers=1)
    assert cached.status == "built" and sorted(p.name for p in cache_dir.iterdir()) == [other_host.name, key]


def test_losing_a_publish_race_uses_the_winners_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = image_folder(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    winner = ensure_cache(root, scanned(root), settings(), cache_dir, workers=1)
    # Another process published the same key while this one was building: its rename fails, it keeps the winner's.
    image_cache.build_cache(root, scanned(root), settings(), cache_dir, winner.folder.name, workers=1)
    assert sorted(p.name for p in cache_dir.iterdir()) == [winner.folder.name]


def test_broken_images_are_skipped_and_counted_with_reasons(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "data")
    (root / "a" / "truncated.png").write_bytes(encoded(noise_image((20, 20)), "PNG")[:60])
    (root / "b" / "late.png").write_bytes(png_with_corrupt_data_but_valid_crc())  # passes the quick scan
    index = scan_image_folder(root)
    assert [path.name for path, _ in index.skipped] == ["truncated.png"]
    cached = ensure_cache(root, index.samples, settings(), tmp_path / "cache", workers=1)
    assert [(path.name, "late.png" in reason) for path, reason in cached.skipped] == [("late.png", True)]
    assert len(cached.samples) == 4 and "late.png" not in {path.name for path, _ in cached.samples}
    index_json = json.loads((cached.folder / INDEX_FILE).read_text())
    assert index_json["skipped"][0][0] == "b/late.png"
    # Reused, the cache still names what it left out.
    assert ensure_cache(root, index.samples, settings(), tmp_path / "cache", workers=1).skipped == cached.skipped


def test_refuses_to_build_when_the_disk_is_too_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = image_folder(tmp_path / "data")
    real = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda path: real._replace(free=1000))
    with pytest.raises(CacheError) as caught:
        ensure_cache(root, scanned(root), settings(), tmp_path / "cache", workers=1)
    message = str(caught.value)
    needed = image_cache.required_bytes(4, settings())
    assert str(tmp_path / "cache") in message and f"{needed:,}" in message and "1,000" in message
    assert "--cache-dir" in message and "--no-cache" in message
    assert not (tmp_path / "cache").exists()


def test_one_grey_channel_is_exact_for_grey_images_and_refuses_colour(tmp_path: Path) -> None:
    root = tmp_path / "grey"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.asarray(noise_image((20, 26)))[..., 0]).save(root / name / "x.png")
    grey = ensure_cache(root, scanned(root), settings(channels=1), tmp_path / "cache", workers=1)
    assert grey.shape[-1] == 1
    expected = preprocess_images([path for path, _ in grey.samples], CFG)
    assert grey_levels(cached_eval(grey, CFG), expected, CFG) <= 1.0
    colour = image_folder(tmp_path / "colour")
    with pytest.raises(CacheError, match="--cache-channels 3"):
        ensure_cache(colour, scanned(colour), settings(channels=1), tmp_path / "cache", workers=1)


def test_default_folder_is_beside_the_data_or_the_fallback_when_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = image_folder(tmp_path / "mnt" / "data")
    assert choose_cache_dir(data, tmp_path / "ckpt" / "image-cache") == (tmp_path / "mnt" / ".azure-dl-cache", None)
    monkeypatch.setattr(image_cache, "_writable", lambda folder: "OSError: Read-only file system")
    folder, why = choose_cache_dir(data, tmp_path / "ckpt" / "image-cache")
    assert folder == tmp_path / "ckpt" / "image-cache" and why is not None and "Read-only" in why


# ------------------------------------------------------------------------------------- what training sees


def sixteen_bit_png(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 4096, (size[1], size[0]), dtype=np.uint16)).save(path)


def test_cached_then_evaluated_equals_decoded_then_evaluated(tmp_path: Path) -> None:
    """8-bit RGB, 16-bit grey PNG and DICOM, square and not: within one grey level of the scoring preprocessing."""
    root = image_folder(tmp_path / "data", [(24, 24), (37, 53), (64, 40)])
    sixteen_bit_png(root / "a" / "wide16.png", (50, 31), seed=1)
    sixteen_bit_png(root / "b" / "tall16.png", (29, 47), seed=2)
    pytest.importorskip("pydicom")
    from tests.unit.test_dicom import dicom_bytes

    ramp = np.tile(np.arange(40, dtype=np.uint16) * 100, (33, 1))
    (root / "b" / "xray.dcm").write_bytes(dicom_bytes(ramp))
    for cfg in (CFG, ImagePreprocessConfig(image_size=21, resize_size=24)):
        cached = ensure_cache(root, scanned(root), settings(cfg), tmp_path / "cache", workers=1)
        assert len(cached.samples) == 6 and not cached.skipped
        expected = preprocess_images([path for path, _ in cached.samples], cfg)  # what scoring runs
        assert grey_levels(cached_eval(cached, cfg), expected, cfg) <= 1.0


def test_scoring_preprocessing_is_unchanged(tmp_path: Path) -> None:
    """The cache changes training only: preprocess.json's config and the scoring transform are what they were."""
    path = tmp_path / "x.png"
    noise_image((30, 20)).save(path)
    assert ImagePreprocessConfig(image_size=224, resize_size=256).to_dict() == {
        "task": "image-classification",
        "image_size": 224,
        "resize_size": 256,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "input_name": "pixel_values",
    }
    from training_scripts.image_data import eval_transform

    assert np.array_equal(eval_transform(CFG)(path).numpy(), preprocess_images([path], CFG)[0])


def test_train_batch_transform_shapes_ranges_and_seeding() -> None:
    cfg = ImagePreprocessConfig(image_size=16, resize_size=18)
    images = torch.randint(0, 256, (5, 18, 18, 3), dtype=torch.uint8)
    transform = TrainBatchTransform(cfg)
    torch.manual_seed(3)
    out = transform(images)
    assert out.shape == (5, 3, 16, 16) and out.dtype == torch.float32
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    assert (out >= (0 - mean) / std - 1e-5).all() and (out <= (1 - mean) / std + 1e-5).all()
    torch.manual_seed(3)
    assert torch.equal(transform(images), out)
    assert not torch.equal(transform(images), out)  # a new draw
    grey = TrainBatchTransform(cfg)(images[..., :1])
    pixels = grey * std + mean  # one grey channel copied into R, G and B
    assert grey.shape == (5, 3, 16, 16) and torch.allclose(pixels[:, 0], pixels[:, 1], atol=1e-6)


def test_full_crop_is_the_identity_and_flip_mirrors() -> None:
    cfg = ImagePreprocessConfig(image_size=12, resize_size=12)
    images = torch.randint(0, 256, (3, 12, 12, 3), dtype=torch.uint8)
    plain = EvalBatchTransform(cfg)(images)
    whole = TrainBatchTransform(cfg, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0)(images)
    flipped = TrainBatchTransform(cfg, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0)(images)
    assert torch.allclose(whole, plain, atol=1e-5)
    assert torch.allclose(flipped, plain.flip(-1), atol=1e-5)


def test_crop_boxes_stay_inside_and_fall_back_to_the_centre() -> None:
    torch.manual_seed(0)
    boxes = random_resized_crop_boxes(500, 40, 30, (0.5, 1.0), (0.75, 4 / 3))
    left, top, w, h = boxes.unbind(1)
    assert (left >= 0).all() and (top >= 0).all() and (left + w <= 40).all() and (top + h <= 30).all()
    area = w * h / (40 * 30)
    assert (area > 0.45).all() and (area <= 1.0).all()
    # No try can fit (area 100% at aspect 2 on a square): the centre crop within the ratio, as torchvision.
    fallback = random_resized_crop_boxes(4, 20, 20, (1.0, 1.0), (2.0, 2.0))
    assert fallback.tolist() == [[0.0, 5.0, 20.0, 10.0]] * 4


def test_cached_dataset_pickles_without_its_pixels(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "data")
    cached = ensure_cache(root, scanned(root), settings(), tmp_path / "cache", workers=1)
    data = CachedImageDataset(cached.array_path, cached.rows, [label for _, label in cached.samples])
    first = data[0][0]
    assert first.dtype == torch.uint8 and first.shape == (18, 18, 3)
    clone = pickle.loads(pickle.dumps(data))  # what a DataLoader worker gets
    assert clone._array is None and torch.equal(clone[0][0], first) and clone.labels == data.labels


def test_under_ddp_one_process_per_node_builds_and_the_others_open_what_rank_0_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordination, with the collectives replaced: local rank 0 builds, rank 1 only opens."""
    from training_scripts import image_cache_setup, train_resnet
    from training_scripts.distributed import DistContext

    root = image_folder(tmp_path / "data")
    args = train_resnet.get_args_parser().parse_args(
        ["--data", str(root), "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    )
    named: list[Any] = []
    monkeypatch.setattr(image_cache_setup, "barrier", lambda ctx: None)

    def broadcast(value: Any, ctx: DistContext) -> Any:
        if ctx.rank == 0:
            named.append(value)
        return named[0]

    monkeypatch.setattr(image_cache_setup, "broadcast_object", broadcast)
    cpu = torch.device("cpu")
    folders = {}
    for rank in (0, 1):
        if rank == 1:
            monkeypatch.setattr(image_cache, "build_cache", lambda *a, **k: pytest.fail("rank 1 built a cache"))
            monkeypatch.setattr(image_cache, "cache_key", lambda *a, **k: pytest.fail("rank 1 hashed the data"))
        scanned_folders, _ = train_resnet._scan_folders(args)
        ctx = DistContext(rank=rank, world_size=2, local_rank=rank, device=cpu)
        image_cache_setup.attach_caches(
            scanned_folders, settings(), ctx, cache_dir=tmp_path / "cache", fallback=tmp_path / "unused", workers=1
        )
        folders[rank] = scanned_folders["train"]
    assert folders[0].cache is not None and folders[1].cache is not None
    assert folders[1].cache.folder == folders[0].cache.folder and folders[1].samples == folders[0].samples
    assert named == [[str(folders[0].cache.folder)]]
