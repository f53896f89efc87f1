"""DICOM coverage on pydicom's own bundled test files: of the files pydicom decodes, how many train and score.

For every file `pydicom.data.get_testdata_files()` lists (only what is installed: nothing is downloaded), it records
whether pydicom, with the installed plugins (pylibjpeg + libjpeg/openjpeg/rle, pillow), decodes the first frame and
into what (2-D greyscale, RGB/YBR colour, or something else); whether the training reader accepts it (the folder
scan's quick check, then the evaluation transform, on a copy named .dcm as a training folder needs); and whether
the scoring path accepts it (the image scorer's request parsing, base64 to model input, as the scoring script runs
it, without a server). It prints the counts and the reason for every file that is not accepted. Usage:

    python -m benchmarks.bench_dicom_coverage [--smoke]
"""

from __future__ import annotations

import argparse
import base64
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchmarkResult, add_output_arguments, command_line, machine_info, save_unless_smoke

NAME = "dicom_coverage"
SMOKE_FILES = 12
# What the contract covers: the first frame decodes to one of these.
CONTRACT_KINDS = ("grey", "colour")


@dataclass
class FileCoverage:
    """One bundled file: what pydicom makes of it and whether training and scoring accept it."""

    name: str  # relative to pydicom's test-file folder
    photometric: str
    transfer_syntax: str
    pydicom_decodes: bool
    kind: str  # "grey" (2-D), "colour" (rows x columns x 3, or palette), "other", or "" when pydicom does not decode
    trains: bool
    scores: bool
    pydicom_reason: str  # why pydicom alone cannot decode it ("" when it can)
    train_reason: str  # why training refuses it ("" when it trains)
    score_reason: str  # the scoring answer's status and message ("" when it scores)


def bundled_files() -> tuple[Path, list[Path]]:
    """(pydicom's test-file folder, every regular file it lists), sorted; no download."""
    import pydicom.data
    from pydicom.data.data_manager import DATA_ROOT

    root = Path(DATA_ROOT) / "test_files"
    files = sorted(Path(name) for name in pydicom.data.get_testdata_files() if Path(name).is_file())
    return root, files


def _short(exc: BaseException, width: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _one_line(text: str, width: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def pydicom_view(path: Path) -> tuple[str, str, bool, str, str]:
    """(photometric, transfer syntax, decodes, kind, reason) by pydicom alone: dcmread (no force) + first frame."""
    import pydicom
    from pydicom.pixels import pixel_array

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        return "", "", False, "", f"pydicom cannot read it: {_short(exc)}"
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    syntax_name = getattr(syntax, "name", str(syntax or ""))
    try:
        frame = pixel_array(ds, index=0)
    except Exception as exc:
        return photometric, syntax_name, False, "", f"pydicom cannot decode its first frame: {_short(exc)}"
    if frame.ndim == 2 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        kind = "grey"
    elif frame.ndim == 2 and photometric == "PALETTE COLOR":
        kind = "colour"  # indices into colour tables, which pydicom's apply_color_lut turns into RGB
    elif frame.ndim == 3 and frame.shape[-1] == 3:
        kind = "colour"
    else:
        kind = "other"
    return photometric, syntax_name, True, kind, "" if kind != "other" else f"decodes to shape {frame.shape}"


def trains(path: Path, folder: Path) -> str:
    """Why training refuses the file (the scan's quick check, then the evaluation transform), or "" if it reads it."""
    from training_scripts.image_data import eval_transform
    from training_scripts.image_folder import check_image_file
    from training_scripts.preprocess_config import ImagePreprocessConfig

    copy = folder / "file.dcm"
    shutil.copyfile(path, copy)
    reason = check_image_file(copy, "quick")
    if reason is not None:
        return f"the training scan skips it: {reason.replace(str(copy), path.name)}"
    try:
        tensor = eval_transform(ImagePreprocessConfig(image_size=32, resize_size=36))(copy)
    except Exception as exc:
        return f"the training loader fails on it: {_short(exc)}"
    if tuple(tensor.shape) != (3, 32, 32) or not bool(tensor.isfinite().all()):
        return f"the training loader gives a tensor of shape {tuple(tensor.shape)} with non-finite values"
    return ""


class _Session:
    def run(self, output_names: Any, input_feed: Any) -> list[np.ndarray]:
        (inputs,) = input_feed.values()
        return [np.zeros((len(inputs), 2), dtype=np.float32)]


def scores(path: Path) -> str:
    """The 4xx status and message scoring gives the file as a request item (default limits), or "" if it scores."""
    from training_scripts import scoring
    from training_scripts.preprocess_config import ImagePreprocessConfig

    scorer = scoring.ImageScorer(_Session(), ["a", "b"], ImagePreprocessConfig(image_size=32), scoring.Limits())
    body = '{"images": ["' + base64.b64encode(path.read_bytes()).decode("ascii") + '"]}'
    answer = scoring.handle(scorer, body)
    if isinstance(answer, dict):
        return ""
    import json

    message = str(json.loads(answer.get_data())["message"]).replace(str(path), path.name)
    return f"scoring answers {answer.status_code}: {message}"


def classify(path: Path, root: Path, folder: Path) -> FileCoverage:
    photometric, syntax, decodes, kind, reason = pydicom_view(path)
    train_reason = trains(path, folder)
    score_reason = scores(path)
    try:
        name = str(path.relative_to(root))
    except ValueError:
        name = path.name
    return FileCoverage(
        name=name,
        photometric=photometric,
        transfer_syntax=syntax,
        pydicom_decodes=decodes,
        kind=kind,
        trains=not train_reason,
        scores=not score_reason,
        pydicom_reason=_one_line(reason),
        train_reason=_one_line(train_reason.replace(path.name, "<file>")),
        score_reason=_one_line(score_reason),
    )


def survey(limit: int | None = None) -> list[FileCoverage]:
    """Every bundled file's coverage (the first `limit` only, when given)."""
    root, files = bundled_files()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on the malformed test files by design
        return [classify(path, root, Path(tmp)) for path in files[:limit]]


def summary_rows(rows: Sequence[FileCoverage]) -> list[dict[str, Any]]:
    decoded = [row for row in rows if row.pydicom_decodes]
    contract = [row for row in decoded if row.kind in CONTRACT_KINDS]
    return [
        {
            "files": label,
            "count": len(group),
            "train": sum(r.trains for r in group),
            "score": sum(r.scores for r in group),
            "train_and_score": sum(r.trains and r.scores for r in group),
        }
        for label, group in (
            ("bundled (all)", list(rows)),
            ("pydicom decodes the first frame", decoded),
            ("of those: 2-D grey or RGB/YBR/palette", contract),
            ("pydicom does not decode", [row for row in rows if not row.pydicom_decodes]),
        )
    ]


def kind_rows(rows: Sequence[FileCoverage]) -> list[dict[str, Any]]:
    """Decoded files by photometric interpretation and transfer syntax, with how many train and score."""
    groups: dict[tuple[str, str], list[FileCoverage]] = {}
    for row in rows:
        if row.pydicom_decodes:
            groups.setdefault((row.photometric, row.transfer_syntax), []).append(row)
    return [
        {
            "photometric": photometric,
            "transfer_syntax": syntax,
            "files": len(group),
            "train_and_score": sum(r.trains and r.scores for r in group),
        }
        for (photometric, syntax), group in sorted(groups.items())
    ]


def refusal_rows(rows: Sequence[FileCoverage]) -> list[dict[str, Any]]:
    """One row per distinct reason a file is not accepted: pydicom's own failure when it has one (the project
    then refuses too, with the reason in the training log and a 400), else what training or scoring said."""
    groups: dict[str, list[FileCoverage]] = {}
    for row in rows:
        if row.trains and row.scores:
            continue
        reason = row.pydicom_reason or row.train_reason or row.score_reason
        if reason.startswith("pydicom cannot read it: "):
            reason = reason.split(": ", 2)[0] + ": " + reason.split(": ", 2)[1]  # keep the exception type only
        groups.setdefault(reason, []).append(row)
    return [
        {
            "files": len(group),
            "example": group[0].name,
            "reason": reason,
            "training_says": group[0].train_reason or "(trains)",
            "scoring_says": group[0].score_reason or "(scores)",
        }
        for reason, group in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_arguments(parser, smoke_help=f"only the first {SMOKE_FILES} files")
    args = parser.parse_args(argv)
    import pydicom

    rows = survey(SMOKE_FILES if args.smoke else None)
    summary = summary_rows(rows)
    for line in summary:
        print(f"{line['files']:42s} {line['count']:4d} files, {line['train_and_score']:4d} train and score")
    for line in refusal_rows(rows):
        print(f"  {line['files']:3d} x (e.g. {line['example']}): {line['reason']}")
        print(f"        training: {line['training_says']}")
        print(f"        scoring:  {line['scoring_says']}")
    contract = next(line for line in summary if line["files"].startswith("of those"))
    decoded = next(line for line in summary if line["files"].startswith("pydicom decodes"))
    result = BenchmarkResult(
        name=NAME,
        title="DICOM coverage on pydicom's bundled test files (training reader and scoring path)",
        command=command_line("benchmarks.bench_dicom_coverage", argv),
        machine=machine_info(args.machine),
    )
    result.add_table(
        f"Of the {decoded['count']} files whose first frame pydicom {pydicom.__version__} decodes (with the installed "
        f"plugins), {decoded['train_and_score']} train and score; of the {contract['count']} that decode to 2-D grey "
        f"or RGB/YBR/palette colour, {contract['train_and_score']} do",
        summary,
        ["files", "count", "train", "score", "train_and_score"],
    )
    result.add_table("Decoded files by photometric interpretation and transfer syntax", kind_rows(rows))
    result.add_table("Why the other files are refused (one row per reason)", refusal_rows(rows))
    result.notes += [
        "Files: pydicom.data.get_testdata_files(), only the ones installed with pydicom (the pydicom-data package "
        "and its downloads are not used); 'pydicom decodes' = pydicom.dcmread (without force) then "
        "pydicom.pixels.pixel_array(ds, index=0).",
        "Trains = training_scripts.image_folder.check_image_file(copy, 'quick') then image_data.eval_transform on a "
        "copy named file.dcm (a training folder lists images by extension; several bundled files have none). "
        'Scores = scoring.handle() of {"images": [base64 of the file]} with the default limits and a stand-in '
        "ONNX session, i.e. the scoring script's own parsing and preprocessing.",
        "Plugins: " + ", ".join(_plugin_versions()) + ".",
        "Before this table (main at 7f56848, pydicom 3.0.2 with pillow only): pydicom decoded 81 of the 176 files and "
        "the project trained on and scored 80 (PALETTE COLOR was refused). With the pylibjpeg plugins pydicom decodes "
        "8 more: 5 JPEG-LS (lossless and near-lossless, grey and RGB), 1 12-bit JPEG Extended, 1 JPEG Lossless SV1 "
        "(RGB) and 1 JPEG 2000 lossless YBR_RCT file that pillow refuses; palette colour is now decoded through its "
        "lookup tables. Measured by running this module with the plugin modules blocked "
        "(sys.modules['pylibjpeg'] = None, likewise libjpeg, openjpeg, rle) against that commit's training_scripts.",
    ]
    save_unless_smoke(result, args)
    return 0


def _plugin_versions() -> list[str]:
    import importlib.metadata

    found = []
    for package in ("pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "pillow"):
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return found


if __name__ == "__main__":
    raise SystemExit(main())
