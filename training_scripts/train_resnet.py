"""Train a ResNet image classifier by transfer learning (the chest X-ray scenario) and export it to ONNX.

    python -m training_scripts.train_resnet --data DIR --output OUT [--arch resnet50] [--pretrained default] ...

DIR holds one subfolder per class (torchvision's ImageFolder layout). Runs unchanged as one process, under
`torchrun --nproc_per_node N`, and as an Azure ML command job (PyTorch distribution). Unreadable images are
skipped and counted (OUT/data_report.json). Defaults follow the reference scenario: ResNet-50 from torchvision's
ImageNet weights with the stem, layer1 and layer2 frozen, Adam at lr 1e-4, batch 32, up to 50 epochs with early
stopping on validation loss, and inverse-frequency loss weights for the class imbalance.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from training_scripts import progress
from training_scripts.distributed import DistContext
from training_scripts.export_onnx import PIXEL_VALUES
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


def _splits(args: argparse.Namespace) -> tuple[dict[str, list[tuple[Path, int]]], list[str], dict[str, Any]]:
    train_index = _scan(args.data, "training data", args.max_image_pixels)
    classes = list(train_index.classes)
    samples = train_index.samples
    report: dict[str, Any] = {"skipped_images": len(train_index.skipped), "classes": classes}
    labels = [label for _, label in samples]
    val_fraction = 0.0 if args.val_data else args.val_fraction
    test_fraction = 0.0 if args.test_data else args.test_fraction
    split = split_indices(labels, val_fraction, test_fraction, seed=args.seed)
    subsets = {
        "train": [samples[i] for i in split.train],
        "val": [samples[i] for i in split.val],
        "test": [samples[i] for i in split.test],
    }
    for name, path in (("val", args.val_data), ("test", args.test_data)):
        if path:
            index = _scan(path, f"{name} data", args.max_image_pixels)
            _same_classes(classes, index, name, path)
            subsets[name] = index.samples
            report["skipped_images"] += len(index.skipped)
    if not subsets["val"]:
        raise DatasetError("no validation data: give --val-data or a --val-fraction above 0")
    for name, items in subsets.items():
        counts = [0] * len(classes)
        for _, label in items:
            counts[label] += 1
        report[f"{name}_counts"] = dict(zip(classes, counts))
    return subsets, classes, report


def prepare(args: argparse.Namespace, ctx: DistContext) -> PreparedTask:
    if args.image_size < 16:
        raise DatasetError(f"--image-size {args.image_size} is too small for a ResNet; use 32 or more")
    subsets, classes, report = _splits(args)
    cfg = ImagePreprocessConfig(image_size=args.image_size, resize_size=round(args.image_size * RESIZE_RATIO))
    max_pixels = args.max_image_pixels
    train = ImageDataset(subsets["train"], train_transform(cfg, max_pixels=max_pixels))
    val = ImageDataset(subsets["val"], eval_transform(cfg, max_pixels=max_pixels))
    test = ImageDataset(subsets["test"], eval_transform(cfg, max_pixels=max_pixels)) if subsets["test"] else None

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
        images = [val[i % len(val)][0] for i in range(3)]
        return [torch.stack(images[:1]), torch.stack(images)]

    return PreparedTask(
        task="resnet",
        model=model,
        train=train,
        val=val,
        test=test,
        class_names=classes,
        train_labels=[label for _, label in subsets["train"]],
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
        # Rank 0's own count: each DDP rank loads (and counts) only its shard.
        failed_items=lambda: [str(path) for ds in (train, val) for path in ds.failed_samples()],
        channels_last=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(get_args_parser, prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
