"""The pipelines' data preparation step: validate a raw dataset and split it into train/validation/test.

An image folder (one subfolder per class) becomes OUTPUT/{train,validation,test}/<class>/...; a CSV/TSV/JSONL
table becomes OUTPUT/{train,validation,test}.jsonl with `text` and `label` fields. Unreadable images and
malformed rows are left out and listed in OUTPUT/prepare_report.json with the counts per class. The split is
stratified and a pure function of the data and --seed, so re-running gives byte-identical outputs (which is
what lets a pipeline reuse the steps after it).

    python -m training_scripts.prepare_data --task image --data DIR --output OUT --val-fraction 0.15 \
        --test-fraction 0.15 --seed 0
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training_scripts.splits import DatasetError, split_indices

SPLITS = ("train", "validation", "test")
REPORT_FILE = "prepare_report.json"
TEXT_SUFFIX = ".jsonl"


def split_path(root: Path, split: str, task: str) -> Path:
    """Where prepare_data put a split: a class-folder tree (image) or a JSONL file (text)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return root / split if task == "image" else root / f"{split}{TEXT_SUFFIX}"


def _find_table(data: Path) -> Path:
    """The table itself, or the single CSV/TSV/JSONL file in a folder (a uri_folder input)."""
    if data.is_file():
        return data
    if not data.is_dir():
        raise DatasetError(f"text data {data} does not exist")
    tables = sorted(p for p in data.iterdir() if p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson"))
    if len(tables) != 1:
        found = ", ".join(p.name for p in tables) or "none"
        raise DatasetError(f"{data} must hold exactly one .csv/.tsv/.jsonl file (found: {found}); pass the file")
    return tables[0]


def _subsets(labels: Sequence[Any], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    split = split_indices(labels, val_fraction, test_fraction, seed)
    return {"train": split.train, "validation": split.val, "test": split.test}


def _counts(labels: Sequence[Any], subsets: dict[str, list[int]], names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Samples per class name in each subset (labels compared as strings: text labels may be ints)."""
    counts = {}
    for subset, indices in subsets.items():
        counter = Counter(str(labels[i]) for i in indices)
        counts[subset] = {name: counter.get(name, 0) for name in names}
    return counts


def prepare_images(data: Path, output: Path, val_fraction: float, test_fraction: float, seed: int) -> dict[str, Any]:
    from training_scripts.image_folder import scan_image_folder

    index = scan_image_folder(data)
    labels = [label for _, label in index.samples]
    subsets = _subsets(labels, val_fraction, test_fraction, seed)
    for split, indices in subsets.items():
        for i in indices:
            path, label = index.samples[i]
            class_name = index.classes[label]
            target = output / split / class_name / path.relative_to(data / class_name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return {
        "classes": index.classes,
        "counts": _counts([index.classes[label] for label in labels], subsets, index.classes),
        "skipped": [{"file": path.relative_to(data).as_posix(), "reason": reason} for path, reason in index.skipped],
    }


def prepare_text(
    data: Path,
    output: Path,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    text_column: str,
    label_column: str,
) -> dict[str, Any]:
    from training_scripts.text_table import label_names, read_text_table

    table = read_text_table(_find_table(data), text_column, label_column)
    subsets = _subsets(table.labels, val_fraction, test_fraction, seed)
    names = label_names(table.labels)
    output.mkdir(parents=True, exist_ok=True)
    for split, indices in subsets.items():
        with split_path(output, split, "text").open("w", encoding="utf-8") as handle:
            for i in indices:
                row = {"text": table.texts[i], "label": table.labels[i]}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {
        "classes": names,
        "counts": _counts(table.labels, subsets, names),
        "skipped": [{"line": line, "reason": reason} for line, reason in table.skipped],
    }


def prepare(
    task: str,
    data: Path,
    output: Path,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    text_column: str = "text",
    label_column: str = "label",
) -> dict[str, Any]:
    """Split `data` into `output` and write the report; returns the report."""
    if val_fraction <= 0 or test_fraction <= 0:
        raise DatasetError(
            f"a pipeline needs a validation and a test split: got --val-fraction {val_fraction} and "
            f"--test-fraction {test_fraction}; use values in (0, 1) that sum to less than 1"
        )
    if output.exists() and any(output.iterdir()):
        raise DatasetError(f"output folder {output} is not empty; prepare_data writes into an empty folder")
    if task == "image":
        details = prepare_images(data, output, val_fraction, test_fraction, seed)
    elif task == "text":
        details = prepare_text(data, output, val_fraction, test_fraction, seed, text_column, label_column)
    else:
        raise DatasetError(f"--task must be image or text, got {task!r}")
    # Relative names only: the report is part of the step's output, whose content hash decides reuse downstream.
    report = {
        "task": task,
        "source": data.name,
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "classes": details["classes"],
        "counts": details["counts"],
        "totals": {split: sum(details["counts"][split].values()) for split in SPLITS},
        "skipped_count": len(details["skipped"]),
        "skipped": details["skipped"],
        "layout": {split: split_path(Path(), split, task).as_posix() for split in SPLITS},
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def summary(report: dict[str, Any]) -> str:
    lines = [f"{len(report['classes'])} classes: " + ", ".join(map(str, report["classes"]))]
    for split in SPLITS:
        counts = ", ".join(f"{name} {count}" for name, count in report["counts"][split].items())
        lines.append(f"{split}: {report['totals'][split]} ({counts})")
    if report["skipped_count"]:
        first = report["skipped"][0]
        where = first.get("file") or f"line {first.get('line')}"
        lines.append(f"skipped {report['skipped_count']} bad item(s); first: {where}: {first['reason']}")
    else:
        lines.append("skipped nothing")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Validate a dataset and split it into train/validation/test.")
    parser.add_argument("--task", choices=("image", "text"), required=True, help="image folder or text table")
    parser.add_argument("--data", type=Path, required=True, help="image folder, or CSV/TSV/JSONL file (or its folder)")
    parser.add_argument("--output", type=Path, required=True, help="empty folder that receives the splits")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="share for validation (default: 0.15)")
    parser.add_argument("--test-fraction", type=float, default=0.15, help="share for test (default: 0.15)")
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed of the stratified split (default: 0)")
    parser.add_argument("--text-column", default="text", help="text column of a table (default: text)")
    parser.add_argument("--label-column", default="label", help="label column of a table (default: label)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        report = prepare(
            args.task,
            args.data,
            args.output,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            text_column=args.text_column,
            label_column=args.label_column,
        )
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
