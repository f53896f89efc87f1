"""INT8 ONNX models with ONNX Runtime quantization, kept only when they agree with the fp32 model.

- Image models (ResNet): static quantization in QDQ format - int8 weights per output channel, uint8 activations
  whose ranges are calibrated on images passed through the model's own evaluation preprocessing.
- Text models (LSTM): dynamic quantization - int8 weights (LSTM, MatMul/Gemm), activations quantized at run time,
  so no calibration data is needed.

Both models then score held-out items (images disjoint from the calibration ones, or texts); the INT8 model
replaces model.onnx only when their top-1 predictions agree on at least 99% of them. quantization.json records the
method, the agreement, the data used and both sizes, accepted or not. Torch-free (onnxruntime, onnx, numpy, PIL),
because the control plane calls it in-process (`azure-dl register --quantize`); as a pipeline step:
`python -m training_scripts.quantize --model IN --output OUT [--data IMAGES_OR_TEXTS]`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training_scripts.image_formats import is_image_file
from training_scripts.image_transforms import preprocess_images
from training_scripts.model_folder import ONNX_FILE, QUANTIZATION_FILE
from training_scripts.preprocess_config import ImagePreprocessConfig, TextPreprocessConfig, load_preprocess_config
from training_scripts.text_encode import encode_texts
from training_scripts.text_vocab import Vocabulary

DEFAULT_MIN_AGREEMENT = 0.99
MAX_CALIBRATION_IMAGES = 128  # MinMax ranges settle after a few dozen images; more only costs time
MAX_HELD_OUT = 1000
MIN_HELD_OUT = 10
BATCH = 32
SYNTH_IMAGES_PER_CLASS = 40
SYNTH_TEXTS = 200
TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt")


class QuantizationError(ValueError):
    """The model or the data cannot be quantized or checked (the message says what to pass instead)."""


@dataclass(frozen=True)
class QuantizationReport:
    """What quantization.json holds."""

    accepted: bool
    method: str  # "static_qdq" | "dynamic"
    agreement: float
    min_agreement: float
    held_out: int
    calibration: int
    data: str  # where the calibration/held-out items came from
    fp32_bytes: int
    int8_bytes: int
    fp32_sha256: str
    int8_sha256: str
    onnxruntime_version: str
    reason: str

    @property
    def size_ratio(self) -> float:
        return self.int8_bytes / self.fp32_bytes if self.fp32_bytes else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------- data
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def list_images(folder: Path) -> list[Path]:
    """Every image file below `folder`, in a stable order."""
    return sorted(path for path in folder.rglob("*") if path.is_file() and is_image_file(path))


def split_images(paths: Sequence[Path], seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Calibration and held-out images: a seeded shuffle cut in half, so that no image is used for both."""
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    half = len(shuffled) // 2
    return shuffled[:half][:MAX_CALIBRATION_IMAGES], shuffled[half:][:MAX_HELD_OUT]


def read_texts(path: Path, column: str = "text") -> list[str]:
    """Texts of a CSV/TSV (column `text`), JSONL (key `text`) or plain text file (one per line); no torch."""
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise QuantizationError(f"{path}: texts must come in {', '.join(TEXT_SUFFIXES)} files")
    raw = path.read_text(encoding="utf-8")
    if suffix == ".txt":
        return [line.strip() for line in raw.splitlines() if line.strip()]
    if suffix == ".jsonl":
        texts = []
        for line in raw.splitlines():
            if line.strip():
                row = json.loads(line)
                if isinstance(row, dict) and isinstance(row.get(column), str) and row[column].strip():
                    texts.append(row[column])
        return texts
    reader = csv.DictReader(raw.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
    if reader.fieldnames is None or column not in reader.fieldnames:
        raise QuantizationError(f"{path} has no {column!r} column (columns: {reader.fieldnames})")
    return [row[column] for row in reader if (row.get(column) or "").strip()]


def _synthetic_images(folder: Path, cfg: ImagePreprocessConfig) -> Path:
    from training_scripts.synth import synth_images

    synth_images(folder, per_class=SYNTH_IMAGES_PER_CLASS, image_size=max(16, cfg.resize_size), imbalance=1.0, seed=1)
    return folder


def _synthetic_texts(path: Path) -> Path:
    from training_scripts.synth import synth_text

    synth_text(path, n=SYNTH_TEXTS, seed=1)
    return path


def _batches(array: np.ndarray, size: int = BATCH) -> Iterator[np.ndarray]:
    for start in range(0, len(array), size):
        yield array[start : start + size]


def top1(model: Path, input_name: str, inputs: np.ndarray) -> np.ndarray:
    """Predicted class of every row, scored in batches on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    outputs = [session.run(None, {input_name: batch})[0] for batch in _batches(inputs)]
    return np.concatenate(outputs).argmax(axis=1)


# ---------------------------------------------------------------------------------------------- quantizers
def quantize_static_qdq(model: Path, out: Path, input_name: str, calibration: np.ndarray, workdir: Path) -> None:
    """QDQ int8: per-channel int8 weights, uint8 activations calibrated (min/max) on `calibration`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # Graph optimisation and shape inference first, as ONNX Runtime recommends for static quantization. The
    # symbolic shape pass is skipped: it takes 10 s on a ResNet-18 and ONNX's own inference covers these graphs.
    prepared = workdir / "prepared.onnx"
    quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)

    class ImageReader(CalibrationDataReader):
        """One preprocessed image per call, as ONNX Runtime's calibrator asks for them."""

        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            return None if item is None else {input_name: item[None]}

    quantize_static(
        str(prepared),
        str(out),
        ImageReader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def quantize_dynamic_int8(model: Path, out: Path) -> None:
    """Dynamic int8: weights int8, activations quantized per batch at run time (no calibration)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The "run pre-processing first" warning is about static quantization; the dynamic path needs none.
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(model), str(out), weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().setLevel(previous)


# ------------------------------------------------------------------------------------------------ the step
def _prepare_images(cfg: ImagePreprocessConfig, data: Path | None, workdir: Path) -> tuple[Any, ...]:
    source = data if data is not None else _synthetic_images(workdir / "synthetic-images", cfg)
    if not source.is_dir():
        raise QuantizationError(f"calibration images {source} must be a folder of images")
    calibration_paths, held_out_paths = split_images(list_images(source))
    if len(held_out_paths) < MIN_HELD_OUT or not calibration_paths:
        raise QuantizationError(
            f"{source} holds too few images ({len(calibration_paths) + len(held_out_paths)}): quantization needs "
            f"at least {2 * MIN_HELD_OUT} (half calibrate, half check agreement)"
        )
    described = "synthetic images (training_scripts.synth)" if data is None else str(source)
    return preprocess_images(calibration_paths, cfg), preprocess_images(held_out_paths, cfg), described


def _prepare_texts(folder: Path, cfg: TextPreprocessConfig, data: Path | None, workdir: Path) -> tuple[Any, ...]:
    source = data if data is not None else _synthetic_texts(workdir / "synthetic-texts.csv")
    if not source.is_file():
        raise QuantizationError(f"held-out texts {source} must be a CSV/TSV/JSONL/TXT file")
    texts = read_texts(source)[:MAX_HELD_OUT]
    if len(texts) < MIN_HELD_OUT:
        raise QuantizationError(f"{source} holds {len(texts)} texts; checking agreement needs {MIN_HELD_OUT}")
    described = "synthetic texts (training_scripts.synth)" if data is None else str(source)
    return encode_texts(texts, Vocabulary.load(folder), cfg), described


@dataclass(frozen=True)
class Candidate:
    """An INT8 model next to its fp32 original, with the held-out inputs that judge it."""

    int8: Path
    method: str
    input_name: str
    held_out: np.ndarray
    calibrated: int
    data: str


def make_candidate(folder: Path, workdir: Path, *, data: Path | None = None) -> Candidate:
    """Quantize folder/model.onnx into workdir/model.int8.onnx the way its task calls for (folder is unchanged)."""
    folder = Path(folder)
    fp32 = folder / ONNX_FILE
    if not fp32.is_file():
        raise QuantizationError(f"{folder} has no {ONNX_FILE}")
    cfg = load_preprocess_config(folder)
    int8 = workdir / "model.int8.onnx"
    if isinstance(cfg, ImagePreprocessConfig):
        calibration, held_out, described = _prepare_images(cfg, data, workdir)
        quantize_static_qdq(fp32, int8, "pixel_values", calibration, workdir)
        return Candidate(int8, "static_qdq", "pixel_values", held_out, len(calibration), described)
    held_out, described = _prepare_texts(folder, cfg, data, workdir)
    quantize_dynamic_int8(fp32, int8)
    return Candidate(int8, "dynamic", "input_ids", held_out, 0, described)


def agreement(fp32: Path, int8: Path, input_name: str, inputs: np.ndarray) -> float:
    """Share of rows whose top-1 class is the same under both models."""
    return float(np.mean(top1(fp32, input_name, inputs) == top1(int8, input_name, inputs)))


def quantize_folder(
    folder: Path, *, data: Path | None = None, min_agreement: float = DEFAULT_MIN_AGREEMENT
) -> QuantizationReport:
    """Quantize folder/model.onnx IN PLACE when the INT8 model agrees with it; always write quantization.json.

    `data`: a folder of images (image models: half calibrates, half checks) or a text file (text models); None
    uses synthetic data. Work on a copy of a training output folder, never on the original.
    """
    import onnxruntime as ort

    if not 0 < min_agreement <= 1:
        raise QuantizationError(f"min_agreement must be in (0, 1], got {min_agreement}")
    folder = Path(folder)
    fp32 = folder / ONNX_FILE
    with tempfile.TemporaryDirectory(prefix="azure-dl-quantize-") as tmp:
        candidate = make_candidate(folder, Path(tmp), data=data)
        agreed = agreement(fp32, candidate.int8, candidate.input_name, candidate.held_out)
        accepted = agreed >= min_agreement
        verdict = "kept INT8" if accepted else "kept fp32"
        held_out = len(candidate.held_out)
        report = QuantizationReport(
            accepted=accepted,
            method=candidate.method,
            agreement=agreed,
            min_agreement=min_agreement,
            held_out=held_out,
            calibration=candidate.calibrated,
            data=candidate.data,
            fp32_bytes=fp32.stat().st_size,
            int8_bytes=candidate.int8.stat().st_size,
            fp32_sha256=_sha256(fp32),
            int8_sha256=_sha256(candidate.int8),
            onnxruntime_version=ort.__version__,
            reason=(
                f"top-1 agreement with fp32 {agreed:.2%} on {held_out} held-out items "
                f"{'>=' if accepted else '<'} {min_agreement:.0%}: {verdict}"
            ),
        )
        if accepted:
            shutil.copyfile(candidate.int8, fp32)
    (folder / QUANTIZATION_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Quantize a model folder to INT8 when it agrees with fp32.")
    parser.add_argument("--model", type=Path, required=True, help="training output folder (model.onnx, ...)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the (possibly) quantized copy")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="images folder (image models) or CSV/JSONL/TXT texts (text models) (default: synthetic data)",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        help=f"top-1 agreement needed to keep INT8 (default: {DEFAULT_MIN_AGREEMENT})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    shutil.copytree(args.model, args.output, dirs_exist_ok=True)
    try:
        report = quantize_folder(args.output, data=args.data, min_agreement=args.min_agreement)
    except (QuantizationError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.reason)
    print(f"model.onnx: {report.fp32_bytes / 1e6:.1f} MB fp32 -> {report.int8_bytes / 1e6:.1f} MB int8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
