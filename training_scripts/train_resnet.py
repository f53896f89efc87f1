"""Train a ResNet image classifier by transfer learning (the chest X-ray scenario) and export it to ONNX.

    python -m training_scripts.train_resnet --data DIR --output OUT [--arch resnet50] [--pretrained default] ...

DIR holds one subfolder per class (torchvision's ImageFolder layout). Runs unchanged as one process, under
`torchrun --nproc_per_node N`, and as an Azure ML command job (PyTorch distribution). Unreadable images are
skipped and counted (OUT/data_report.json). Defaults follow the reference scenario: ResNet-50 from torchvision's
ImageNet weights with the stem, layer1 and layer2 frozen, Adam at lr 1e-4, batch 32, up to 50 epochs with early
stopping on validation loss, and inverse-frequency loss weights for the class imbalance. Images are decoded once
into a cache (image_cache.py; `--cache-dir`, `--no-cache`) and augmented on the training device (image_augment.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from training_scripts import progress
from training_scripts.distributed import DistContext
from training_scripts.export_onnx import PIXEL_VALUES
from training_scripts.image_augment import CachedImageDataset, EvalBatchTransform, TrainBatchTransform
from training_scripts.image_cache import DEFAULT_CACHE_DIRNAME, CacheSettings, default_workers
from training_scripts.image_cache_setup import ImageFolderData, attach_caches, cache_metrics, cache_report
from training_scripts.image_data import ImageDataset, eval_transform, train_transform
from training_scripts.image_folder import ImageFolderIndex, scan_image_folder
from training_scripts.models import ARCHS, FREEZE_STAGES, build_model, freeze
from training_scripts.preprocess_config import ImagePreprocessConfig
from training_scripts.splits import DatasetError, split_indices
from training_scripts.train_common import PreparedTask, add_common_args, main_for

RESNETS = tuple(arch for arch in ARCHS if arch.startswith("resnet"))
DEFAULT_FREEZE = "layer2"
# torchvision's evaluation resize: 256 for a 224 crop, i.e. the crop is 87.5% of the resized shorter side.
RESIZE_RATIO = 256 / 224


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="ResNet transfer learning for image classification (one subfolder per class).",
    )
    add_common_args(parser, epochs=50, batch_size=32, lr=1e-4, patience=5, imbalance="weighted-loss")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--arch", choices=RESNETS, default="resnet50", help="architecture, torchvision layout (default resnet50)"
    )
    model.add_argument(
        "--pretrained",
        default="default",
        help="'default' = torchvision's ImageNet weights for --arch (downloaded once by torch.hub), a local "
        ".pth file, an https URL, or 'none' to train from scratch (default default)",
    )
    model.add_argument(
        "--freeze",
        choices=FREEZE_STAGES,
        default=None,
        help=f"freeze every stage up to this one (default {DEFAULT_FREEZE} with pretrained weights, none without)",
    )
    model.add_argument("--image-size", type=int, default=224, help="square input size in pixels (default 224)")
    cache = parser.add_argument_group("decoded-image cache")
    cache.add_argument(
        "--cache-dir",
        default=None,
        help="where each data folder's images are kept decoded and resized, reused by later and resumed runs "
        f"(default: {DEFAULT_CACHE_DIRNAME} beside --data; when that is read-only, as an Azure ML input mount "
        "is, CHECKPOINT_DIR/image-cache)",
    )
    cache.add_argument(
        "--no-cache", action="store_true", help="decode every image every epoch instead (default: use the cache)"
    )
    cache.add_argument(
        "--cache-workers",
        type=int,
        default=default_workers(),
        help=f"processes that build the cache (default min(cores, 8) = {default_workers()} here)",
    )
    cache.add_argument(
        "--cache-channels",
        type=int,
        choices=(1, 3),
        default=3,
        help="3 keeps RGB; 1 keeps one grey channel, a third of the space, for greyscale data such as X-rays "
        "(a colour image then stops the build) (default 3)",
    )
    model.add_argument(
        "--max-image-pixels",
        type=int,
        default=100_000_000,
        help="images with more pixels are skipped as suspected decompression bombs (default 100000000)",
    )
    return parser


def _scan(path: str, what: str, max_pixels: int) -> ImageFolderIndex:
    index = scan_image_folder(path, max_pixels=max_pixels)
    if index.skipped:
        shown = "; ".join(f"{p.name}: {reason}" for p, reason in index.skipped[:3])
        progress.warning(f"{what}: skipped {len(index.skipped)} unreadable image(s) in {path} ({shown})")
    return index


def _same_classes(reference: Sequence[str], other: ImageFolderIndex, what: str, path: str) -> None:
    if list(other.classes) != list(reference):
        raise DatasetError(
            f"{what} folder {path} has classes {other.classes} but the training data has {list(reference)}; "
            "give every split the same class subfolders"
        )


def _scan_folders(args: argparse.Namespace) -> tuple[dict[str, ImageFolderData], list[str]]:
    folders: dict[str, ImageFolderData] = {}
    classes: list[str] = []
    for name, path in (("train", args.data), ("val", args.val_data), ("test", args.test_data)):
        if not path:
            continue
        index = _scan(path, "training data" if name == "train" else f"{name} data", args.max_image_pixels)
        if name == "train":
            classes = list(index.classes)
        else:
            _same_classes(classes, index, name, path)
        folders[name] = ImageFolderData(path, list(index.samples), list(index.skipped))
    return folders, classes


def _split(
    folders: dict[str, ImageFolderData], args: argparse.Namespace
) -> dict[str, tuple[ImageFolderData, list[int]]]:
    """Each split as (its folder, positions in that folder's samples)."""
    train = folders["train"]
    labels = [label for _, label in train.samples]
    val_fraction = 0.0 if "val" in folders else args.val_fraction
    test_fraction = 0.0 if "test" in folders else args.test_fraction
    split = split_indices(labels, val_fraction, test_fraction, seed=args.seed)
    subsets = {
        "train": (train, list(split.train)),
        "val": (train, list(split.val)),
        "test": (train, list(split.test)),
    }
    for name in ("val", "test"):
        if name in folders:
            subsets[name] = (folders[name], list(range(len(folders[name].samples))))
    if not subsets["val"][1]:
        raise DatasetError("no validation data: give --val-data or a --val-fraction above 0")
    return subsets


def _data_report(
    folders: dict[str, ImageFolderData], subsets: dict[str, tuple[ImageFolderData, list[int]]], classes: list[str]
) -> dict[str, Any]:
    skipped = [(path, reason) for folder in folders.values() for path, reason in folder.skipped]
    report: dict[str, Any] = {
        "skipped_images": len(skipped),
        "classes": classes,
        "skipped_files": [{"path": str(path), "reason": reason} for path, reason in skipped[:100]],
    }
    for name, (folder, positions) in subsets.items():
        counts = [0] * len(classes)
        for position in positions:
            counts[folder.samples[position][1]] += 1
        report[f"{name}_counts"] = dict(zip(classes, counts))
    report.update(cache_report(folders))
    return report


def _dataset(
    folder: ImageFolderData, positions: list[int], transform: Callable[[Path], torch.Tensor] | None
) -> ImageDataset | CachedImageDataset:
    if folder.cache is not None:
        rows = [folder.cache.rows[i] for i in positions]
        return CachedImageDataset(folder.cache.array_path, rows, [folder.samples[i][1] for i in positions])
    assert transform is not None
    return ImageDataset([folder.samples[i] for i in positions], transform)


def prepare(args: argparse.Namespace, ctx: DistContext) -> PreparedTask:
    if args.image_size < 16:
        raise DatasetError(f"--image-size {args.image_size} is too small for a ResNet; use 32 or more")
    cfg = ImagePreprocessConfig(image_size=args.image_size, resize_size=round(args.image_size * RESIZE_RATIO))
    folders, classes = _scan_folders(args)
    use_cache = not args.no_cache
    if args.cache_workers < 1:
        raise DatasetError(f"--cache-workers {args.cache_workers}: give at least 1")
    if use_cache:
        settings = CacheSettings(
            resize_size=cfg.resize_size,
            image_size=cfg.image_size,
            channels=args.cache_channels,
            max_pixels=args.max_image_pixels,
        )
        checkpoints = Path(args.checkpoint_dir) if args.checkpoint_dir else Path(args.output) / "checkpoints"
        cache_dir = Path(args.cache_dir) if args.cache_dir else None
        attach_caches(
            folders,
            settings,
            ctx,
            cache_dir=cache_dir,
            fallback=checkpoints / "image-cache",
            workers=args.cache_workers,
        )
    subsets = _split(folders, args)
    report = _data_report(folders, subsets, classes)
    max_pixels = args.max_image_pixels
    train_tf = None if use_cache else train_transform(cfg, max_pixels=max_pixels)
    eval_tf = None if use_cache else eval_transform(cfg, max_pixels=max_pixels)
    train = _dataset(*subsets["train"], train_tf)
    val = _dataset(*subsets["val"], eval_tf)
    test = _dataset(*subsets["test"], eval_tf) if subsets["test"][1] else None
    train_batch = TrainBatchTransform(cfg) if use_cache else None
    eval_batch = EvalBatchTransform(cfg) if use_cache else None

    pretrained = None if str(args.pretrained).lower() == "none" else args.pretrained
    try:
        model = build_model(args.arch, num_classes=len(classes), pretrained=pretrained)
    except (OSError, RuntimeError, ValueError) as exc:
        raise DatasetError(f"cannot load --pretrained {args.pretrained}: {exc}") from exc
    stage = args.freeze or (DEFAULT_FREEZE if pretrained else "none")
    frozen = freeze(model, stage)
    if ctx.is_main and frozen:
        print(f"froze {len(frozen)} parameter tensors up to {stage}", flush=True)

    def parity_inputs() -> list[torch.Tensor]:
        # Held-out validation images (not random noise): batches of 1 and 3, repeating images if there are few.
        images = torch.stack([val[i % len(val)][0] for i in range(3)])
        if eval_batch is not None:
            images = eval_batch(images)
        return [images[:1], images]

    train_folder, train_positions = subsets["train"]
    return PreparedTask(
        task="resnet",
        model=model,
        train=train,
        val=val,
        test=test,
        class_names=classes,
        train_labels=[train_folder.samples[i][1] for i in train_positions],
        preprocess=cfg,
        input_name=PIXEL_VALUES,
        parity_inputs=parity_inputs,
        run_params={
            "arch": args.arch,
            "pretrained": str(args.pretrained),
            "freeze": stage,
            "image_size": args.image_size,
        },
        data_report=report,
        report_only_keys=("image_cache", "image_cache_hits", "image_cache_builds"),
        run_metrics=cache_metrics(folders),
        run_tags={
            "image_cache": "; ".join(
                f"{name}: {folder.cache.status} {folder.cache.folder}"
                for name, folder in folders.items()
                if folder.cache is not None
            )
            or "off"
        },
        # Rank 0's own count: each DDP rank loads (and counts) only its shard.
        failed_items=lambda: [str(path) for ds in (train, val) for path in ds.failed_samples()],
        channels_last=True,
        train_batch_transform=train_batch,
        eval_batch_transform=eval_batch,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(get_args_parser, prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
