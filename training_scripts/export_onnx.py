"""Export a trained model to ONNX (the I/O contract below), check ONNX Runtime against PyTorch, write export.json.

Contract: ResNet input `pixel_values` float32 [N,3,H,W]; LSTM input `input_ids` int64 [N,T] (0 = pad); output
`logits` float32 [N,C]; N (and T for the LSTM) dynamic. The file is self-contained (weights inside, no external
data file) and passes onnx.checker.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from training_scripts.model_folder import EXPORT_FILE

PIXEL_VALUES = "pixel_values"
INPUT_IDS = "input_ids"
LOGITS = "logits"

# Max |logit difference| allowed between ONNX Runtime and PyTorch eval, both fp32 on CPU. The two run the same
# graph with different kernels (accumulation order, conv+BN folding, GEMM blocking), so they differ by float32
# rounding that grows with the logits' size, about 1e-6 of it. Measured here: ResNet-18 at 224 px 1.3e-6
# (|logits| <= 1.6), ResNet-50 at 64 px 2.1e-5 (|logits| <= 16), ResNet-50 at 224 px 7e-7, (bi)LSTM < 1e-7.
# 1e-4 leaves room for fine-tuned models with logits up to ~50-100, while a real export bug (a wrong op, a
# frozen shape, a lost layer) moves logits by 1e-2 or more. Half-precision models would need a looser value.
DEFAULT_TOLERANCE = 1e-4

logger = logging.getLogger(__name__)


@dataclass
class ParityReport:
    """ONNX Runtime vs PyTorch on held-out inputs: the largest |logit difference| and the verdict."""

    max_abs_diff: float
    tolerance: float
    passed: bool
    batch_sizes: list[int]
    sequence_lengths: list[int] | None = None


def _cpu_eval_copy(model: nn.Module) -> nn.Module:
    """The model on CPU in eval mode, without changing the caller's module (it may be mid-training on a GPU)."""
    clone = copy.deepcopy(model).cpu().float()
    return clone.eval()


# Loggers that narrate every export (pass summaries, symbolic-shape notes, "torchvision is not installed").
_EXPORTER_LOGGERS = (
    "torch.onnx",
    "torch.export",
    "torch._export",
    "torch.fx",
    "torch._dynamo",
    "onnxscript",
    "onnx_ir",
)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[io.StringIO]:
    """Capture the exporter's prints, warnings and warning-level log lines; replay them only if the export fails."""
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    # torch attaches its own stderr handlers to some of its loggers; those are swapped out too, and put back after.
    names = set(_EXPORTER_LOGGERS) | {
        name
        for name, known in logging.root.manager.loggerDict.items()
        if isinstance(known, logging.Logger) and known.handlers and name.startswith(_EXPORTER_LOGGERS)
    }
    saved = []
    for name in sorted(names):
        noisy = logging.getLogger(name)
        saved.append((noisy, noisy.level, noisy.propagate, noisy.handlers))
        noisy.handlers = [handler]
        noisy.setLevel(logging.WARNING)
        noisy.propagate = False
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(captured),
            contextlib.redirect_stderr(captured),
        ):
            warnings.simplefilter("always")
            try:
                yield captured
            finally:
                for w in caught:
                    captured.write(f"{w.category.__name__}: {w.message}\n")
    except Exception:
        logger.error("ONNX export failed; exporter output follows:\n%s", captured.getvalue())
        raise
    finally:
        for noisy, level, propagate, handlers in saved:
            noisy.handlers = handlers
            noisy.setLevel(level)
            noisy.propagate = propagate
    logger.debug("ONNX exporter output:\n%s", captured.getvalue())


def _clear_rnn_dispatch_cache() -> None:
    # torch 2.13: the ONNX exporter swaps in while_loop LSTM/GRU kernels (they keep T dynamic) around its capture,
    # but the op's dispatch cache keeps the first kernel it saw, so a second export in the same process silently
    # bakes the example T into the graph. Clearing the cache makes every export see the swapped-in kernel.
    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        cache = getattr(op, "_dispatch_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def _at_least_two(x: Tensor, dim: int) -> Tensor:
    # A size-1 example dimension is specialised to 1 by torch.export, whatever dynamic_shapes says.
    return x if x.shape[dim] >= 2 else torch.cat([x, x], dim=dim)


def export_onnx(
    model: nn.Module,
    example_input: Tensor,
    path: str | Path,
    *,
    input_name: str,
    dynamic_sequence: bool = False,
    opset: int | None = None,
) -> None:
    """Export `model` (in eval mode, on CPU) to a self-contained ONNX file at `path` and check it.

    `example_input` only fixes dtypes and the static dims; batch (and sequence, with `dynamic_sequence`) stay
    dynamic. Use input_name=PIXEL_VALUES for images, INPUT_IDS (with dynamic_sequence=True) for token ids.
    `opset` None takes the exporter's recommended opset. Raises if the file breaks the I/O contract.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = _at_least_two(example_input.detach().cpu(), 0)
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    if dynamic_sequence:
        if example.dim() < 2:
            raise ValueError(f"dynamic_sequence needs an input of shape [N, T], got {list(example.shape)}")
        example = _at_least_two(example, 1)
        dims[1] = torch.export.Dim("sequence", min=1)
    exportable = _cpu_eval_copy(model)
    _clear_rnn_dispatch_cache()
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            exportable,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=[LOGITS],
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes=(dims,),
            verbose=False,
        )
    onnx.checker.check_model(str(path), full_check=True)
    _check_contract(onnx.load(str(path)), path, input_name, example, sorted(dims))


def _check_contract(proto: Any, path: Path, input_name: str, example: Tensor, dynamic_dims: list[int]) -> None:
    import onnx

    inputs = [(i.name, i.type.tensor_type) for i in proto.graph.input]
    outputs = [(o.name, o.type.tensor_type) for o in proto.graph.output]
    expected_elem = onnx.helper.np_dtype_to_tensor_dtype(example.numpy().dtype)
    problems = []
    if [name for name, _ in inputs] != [input_name]:
        problems.append(f"inputs are {[name for name, _ in inputs]}, expected [{input_name!r}]")
    elif inputs[0][1].elem_type != expected_elem:
        problems.append(f"input {input_name} has ONNX type {inputs[0][1].elem_type}, expected {expected_elem}")
    else:
        shape = inputs[0][1].shape.dim
        frozen = {d: shape[d].dim_value for d in dynamic_dims if not shape[d].dim_param}
        if frozen:
            problems.append(
                f"input dims {list(frozen)} should be dynamic but the exporter fixed them to {list(frozen.values())} "
                "(some op in forward specialised them)"
            )
    if [name for name, _ in outputs] != [LOGITS]:
        problems.append(f"outputs are {[name for name, _ in outputs]}, expected [{LOGITS!r}]")
    elif outputs[0][1].elem_type != onnx.TensorProto.FLOAT or len(outputs[0][1].shape.dim) != 2:
        problems.append("output logits is not float32 [N, C]")
    elif not outputs[0][1].shape.dim[0].dim_param:
        problems.append("output logits has a fixed batch size")
    external = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        problems.append(f"{len(external)} weights live in an external data file")
    if problems:
        raise RuntimeError(f"exported {path} breaks the ONNX I/O contract: " + "; ".join(problems))


def check_parity(
    model: nn.Module, onnx_path: str | Path, inputs: list[Tensor], tolerance: float = DEFAULT_TOLERANCE
) -> ParityReport:
    """Run ONNX Runtime (CPU) and PyTorch (CPU, eval) on each held-out input; report the largest |logit diff|.

    `inputs` must cover at least two batch sizes, and for token ids [N, T] at least two sequence lengths, so a
    dimension frozen at export shows up here.
    """
    import numpy as np
    import onnxruntime as ort

    if not inputs:
        raise ValueError("check_parity needs held-out inputs (at least two batch sizes)")
    batch_sizes = [int(x.shape[0]) for x in inputs]
    if len(set(batch_sizes)) < 2:
        raise ValueError(f"check_parity needs inputs of at least two batch sizes, got {batch_sizes}")
    is_tokens = all(x.dim() == 2 and not x.is_floating_point() for x in inputs)
    sequence_lengths = [int(x.shape[1]) for x in inputs] if is_tokens else None
    if sequence_lengths is not None and len(set(sequence_lengths)) < 2:
        raise ValueError(f"check_parity needs token inputs of at least two lengths, got {sequence_lengths}")

    reference = _cpu_eval_copy(model)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    worst = 0.0
    for x in inputs:
        x_cpu = x.detach().cpu()
        with torch.no_grad():
            expected = reference(x_cpu).float().numpy()
        actual = session.run([LOGITS], {input_name: x_cpu.numpy()})[0]
        if actual.shape != expected.shape:
            logger.error("ONNX logits shape %s != PyTorch %s", actual.shape, expected.shape)
            worst = float("inf")
            continue
        diff = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
        worst = diff if (np.isnan(diff) or diff > worst) else worst
    passed = bool(worst <= tolerance)  # NaN compares False: a NaN anywhere fails
    return ParityReport(
        max_abs_diff=worst,
        tolerance=tolerance,
        passed=passed,
        batch_sizes=batch_sizes,
        sequence_lengths=sequence_lengths,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_number(value: float) -> float | None:
    # JSON has no NaN/Infinity; null says "no finite difference" (e.g. the shapes differed).
    return value if value == value and abs(value) != float("inf") else None


def write_export_json(output_dir: str | Path, report: ParityReport, onnx_path: str | Path) -> dict[str, Any]:
    """Write `output_dir`/export.json (the output-folder contract) and return what was written."""
    import onnx
    import onnxruntime as ort

    output_dir, onnx_path = Path(output_dir), Path(onnx_path)
    proto = onnx.load(str(onnx_path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    try:
        onnx_file = onnx_path.resolve().relative_to(output_dir.resolve()).as_posix()
    except ValueError:
        onnx_file = onnx_path.name
    record = {
        "onnx_file": onnx_file,
        "sha256": _sha256(onnx_path),
        "max_abs_diff": _json_number(report.max_abs_diff),
        "tolerance": report.tolerance,
        "passed": report.passed,
        "batch_sizes": report.batch_sizes,
        "opset": opset,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
