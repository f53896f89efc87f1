"""`azure-dl data synth images|text`: write a synthetic, learnable dataset to try every verb without real data.

Only argparse and the standard library at import time; the handlers import training_scripts.synth (numpy + PIL,
no torch). The defaults stated in the help are synth's own (a test keeps them in step).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from azure_dl.cli._shared import show_help
from azure_dl.errors import AzureDLError

TEXT_SUFFIXES = (".csv", ".jsonl")


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _count(text: str) -> int:
    return _whole_number(text, 0)


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 3 or 1.5, got {text!r}") from None
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"the majority:minority ratio must be >= 1, got {text}")
    return value


def _class_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if len(names) < 2 or any(not name for name in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected 2 to 4 distinct comma-separated names, got {text!r}")
    if any(name.startswith(".") or "/" in name or "\\" in name for name in names):
        raise argparse.ArgumentTypeError(f"class names become folder names: no '/', '\\' or leading '.' ({text!r})")
    return names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="generate synthetic datasets (X-ray-like images, labelled reviews)",
        description="Datasets for trying azure-dl without real data.",
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")
    synth = actions.add_parser(
        "synth",
        help="write a synthetic, learnable dataset",
        description=(
            "Deterministic for a seed and quick to generate. Images: an X-ray-like class-per-folder tree for "
            "`submit resnet --data DIR`. Text: a CSV/JSONL of reviews for `submit lstm --data FILE`."
        ),
    )
    kinds = synth.add_subparsers(dest="synth_kind", metavar="KIND")

    images = kinds.add_parser(
        "images",
        help="greyscale chest-X-ray-like PNGs, one subfolder per class",
        description=(
            "Writes OUT/<class>/<class>_00000.png and OUT/synth.json. The first class is healthy; the others "
            "have opacities in the lung fields. The first class gets --per-class images, the last "
            "--per-class / --imbalance."
        ),
    )
    images.add_argument("--out", type=Path, required=True, metavar="DIR", help="new or empty folder to write")
    images.add_argument(
        "--per-class",
        type=_positive_int,
        metavar="N",
        help="images of the first (largest) class (default: 900)",
    )
    images.add_argument(
        "--imbalance",
        type=_ratio,
        metavar="R",
        help="majority:minority ratio; public pneumonia X-ray sets are about 3:1 (default: 3)",
    )
    images.add_argument(
        "--image-size", type=_positive_int, metavar="S", help="width and height in pixels (default: 64)"
    )
    images.add_argument(
        "--classes",
        type=_class_names,
        metavar="A,B",
        help="2 to 4 class names, healthy first (default: normal,pneumonia)",
    )
    images.add_argument(
        "--mode",
        choices=("L", "I;16", "RGB"),
        help="L: 8-bit PNG; I;16: 12-bit values in a 16-bit PNG, like X-ray exports; RGB (default: L)",
    )
    images.add_argument("--seed", type=int, metavar="S", help="random seed (default: 0)")
    images.add_argument(
        "--corrupt",
        type=_count,
        metavar="N",
        help="also write N broken files, to see training skip and count them (default: 0)",
    )
    images.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a folder that `data synth images` wrote before (default: refuse a non-empty folder)",
    )
    images.set_defaults(handler=_synth_images)

    text = kinds.add_parser(
        "text",
        help="movie-review-like texts labelled negative/positive (CSV or JSONL)",
        description="Writes id,text,label rows (CSV) or {id, text, label} lines (JSONL). An existing file is replaced.",
    )
    text.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="PATH",
        help="a .csv or .jsonl file, or a folder to write reviews.csv / reviews.jsonl into",
    )
    text.add_argument("--n", type=_positive_int, metavar="N", help="number of reviews (default: 2000)")
    text.add_argument("--imbalance", type=_ratio, metavar="R", help="negative:positive ratio (default: 1)")
    text.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="file format (default: from the --out suffix, else csv)",
    )
    text.add_argument("--seed", type=int, metavar="S", help="random seed (default: 0)")
    text.add_argument(
        "--corrupt",
        type=_count,
        metavar="N",
        help="also write N malformed rows, to see training skip and count them (default: 0)",
    )
    text.set_defaults(handler=_synth_text)

    synth.set_defaults(handler=show_help(synth))
    parser.set_defaults(handler=show_help(parser))


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """Only the flags the user set, so synth's own defaults apply to the rest."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _synth_images(args: argparse.Namespace) -> int:
    from training_scripts.synth import synth_images

    options = _given(args, ("per_class", "imbalance", "image_size", "classes", "mode", "seed", "corrupt"))
    try:
        summary = synth_images(args.out, overwrite=args.overwrite, **options)
    except FileExistsError as exc:
        raise AzureDLError(str(exc), hint="pass a new --out folder, or --overwrite for one synth wrote") from exc
    except ValueError as exc:
        raise AzureDLError(f"data synth images: {exc}") from exc
    print(summary.describe())
    print(f"next: azure-dl submit resnet --local --data {summary.path}")
    return 0


def _synth_text(args: argparse.Namespace) -> int:
    from training_scripts.synth import synth_text

    out: Path = args.out
    if out.suffix.lower() not in TEXT_SUFFIXES:
        out = out / f"reviews.{args.format or 'csv'}"
    options = _given(args, ("n", "imbalance", "format", "seed", "corrupt"))
    try:
        summary = synth_text(out, **options)
    except (FileExistsError, ValueError) as exc:
        raise AzureDLError(f"data synth text: {exc}") from exc
    print(summary.describe())
    print(f"next: azure-dl submit lstm --local --data {summary.path}")
    return 0
