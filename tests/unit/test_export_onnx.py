"""ONNX export keeps the I/O contract, matches PyTorch in ONNX Runtime, stays padding-invariant; export.json."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from training_scripts.export_onnx import (
    DEFAULT_TOLERANCE,
    INPUT_IDS,
    PIXEL_VALUES,
    ParityReport,
    check_parity,
    export_onnx,
    write_export_json,
)
from training_scripts.lstm import LSTMClassifier
from training_scripts.resnet import resnet18

IMAGE = 32  # px; the contract fixes H and W at export, only N is dynamic
VOCAB = 50


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    # On two shared, busy cores, intra-op threads spin against each other: tiny models run 10x slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory, _one_torch_thread: None) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    model = resnet18(num_classes=4)
    model.train()
    with torch.no_grad():  # move the BN statistics off their 0/1 start so the export has real numbers to carry
        for _ in range(3):
            model(torch.randn(4, 3, IMAGE, IMAGE))
    model.eval()
    path = tmp_path_factory.mktemp("resnet_export") / "model.onnx"
    export_onnx(model, torch.randn(2, 3, IMAGE, IMAGE), path, input_name=PIXEL_VALUES)
    return model, path


@pytest.fixture(scope="module")
def lstms(tmp_path_factory: pytest.TempPathFactory, _one_torch_thread: None) -> dict[str, tuple[nn.Module, Path]]:
    """A biLSTM and an LSTM, exported one after the other in this process (a case torch 2.13 gets wrong).

    One layer each: every LSTM layer costs seconds of export tracing; test_lstm.py covers stacked layers.
    """
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("lstm_export")
    exported: dict[str, tuple[nn.Module, Path]] = {}
    for name, model in (
        ("bi", LSTMClassifier(VOCAB, 3, embed_dim=8, hidden_size=6, bidirectional=True)),
        ("uni", LSTMClassifier(VOCAB, 3, embed_dim=8, hidden_size=6)),
    ):
        model.eval()
        path = folder / f"{name}.onnx"
        # A batch of one: export_onnx must still keep N dynamic.
        export_onnx(model, torch.randint(1, VOCAB, (1, 6)), path, input_name=INPUT_IDS, dynamic_sequence=True)
        exported[name] = (model, path)
    return exported


def _token_batch(lengths: list[int], width: int) -> torch.Tensor:
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(1, VOCAB, (length,))
    return ids


def _io(path: Path) -> tuple[list[tuple[str, int, list[int | str]]], list[tuple[str, int, list[int | str]]]]:
    graph = onnx.load(str(path)).graph

    def describe(values: list[onnx.ValueInfoProto]) -> list[tuple[str, int, list[int | str]]]:
        return [
            (
                v.name,
                v.type.tensor_type.elem_type,
                [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values
        ]

    return describe(list(graph.input)), describe(list(graph.output))


def test_resnet_export_keeps_the_io_contract(resnet: tuple[nn.Module, Path]) -> None:
    _, path = resnet
    inputs, outputs = _io(path)
    assert [(name, elem) for name, elem, _ in inputs] == [("pixel_values", onnx.TensorProto.FLOAT)]
    batch, *rest = inputs[0][2]
    assert isinstance(batch, str) and rest == [3, IMAGE, IMAGE]
    assert [(name, elem) for name, elem, _ in outputs] == [("logits", onnx.TensorProto.FLOAT)]
    assert isinstance(outputs[0][2][0], str) and outputs[0][2][1] == 4
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no external data file
    onnx.checker.check_model(str(path), full_check=True)


def test_resnet_matches_pytorch_at_two_batch_sizes(resnet: tuple[nn.Module, Path]) -> None:
    model, path = resnet
    report = check_parity(model, path, [torch.randn(1, 3, IMAGE, IMAGE), torch.randn(5, 3, IMAGE, IMAGE)])
    assert report.passed and report.max_abs_diff <= DEFAULT_TOLERANCE
    assert report.batch_sizes == [1, 5] and report.sequence_lengths is None


def test_parity_fails_for_a_perturbed_model(resnet: tuple[nn.Module, Path]) -> None:
    model, path = resnet
    inputs = [torch.randn(1, 3, IMAGE, IMAGE), torch.randn(2, 3, IMAGE, IMAGE)]
    perturbed = resnet18(num_classes=4)
    perturbed.load_state_dict(model.state_dict())
    with torch.no_grad():
        perturbed.fc.bias.add_(0.05)
    report = check_parity(perturbed, path, inputs)
    assert not report.passed and report.max_abs_diff == pytest.approx(0.05, rel=1e-3)


@pytest.mark.parametrize("name", ["bi", "uni"])
def test_lstm_export_keeps_the_io_contract_and_matches_pytorch(
    lstms: dict[str, tuple[nn.Module, Path]], name: str
) -> None:
    model, path = lstms[name]
    inputs, outputs = _io(path)
    assert [(n, elem) for n, elem, _ in inputs] == [("input_ids", onnx.TensorProto.INT64)]
    assert all(isinstance(d, str) for d in inputs[0][2]), inputs  # [batch, sequence], both dynamic
    assert [(n, elem) for n, elem, _ in outputs] == [("logits", onnx.TensorProto.FLOAT)]
    report = check_parity(model, path, [_token_batch([5], 5), _token_batch([9, 3, 1, 0], 11)])
    assert report.passed and report.batch_sizes == [1, 4] and report.sequence_lengths == [5, 11]


@pytest.mark.parametrize("name", ["bi", "uni"])
def test_lstm_onnx_logits_do_not_depend_on_padding(lstms: dict[str, tuple[nn.Module, Path]], name: str) -> None:
    _, path = lstms[name]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = _token_batch([4, 7, 1, 0], 7).numpy()
    logits = session.run(["logits"], {"input_ids": ids})[0]
    padded = session.run(["logits"], {"input_ids": np.pad(ids, ((0, 0), (0, 13)))})[0]
    alone = np.concatenate([session.run(["logits"], {"input_ids": ids[i : i + 1, :n]})[0] for i, n in [(0, 4), (1, 7)]])
    assert np.isfinite(logits).all()
    np.testing.assert_allclose(padded, logits, rtol=0, atol=1e-6)
    np.testing.assert_allclose(alone, logits[:2], rtol=0, atol=1e-6)


def test_parity_needs_two_batch_sizes_and_two_lengths(
    resnet: tuple[nn.Module, Path], lstms: dict[str, tuple[nn.Module, Path]]
) -> None:
    model, path = resnet
    with pytest.raises(ValueError, match="two batch sizes"):
        check_parity(model, path, [torch.randn(2, 3, IMAGE, IMAGE)] * 2)
    lstm, lstm_path = lstms["uni"]
    with pytest.raises(ValueError, match="two lengths"):
        check_parity(lstm, lstm_path, [_token_batch([3], 6), _token_batch([6, 2], 6)])


def test_export_json_has_the_contract_fields(resnet: tuple[nn.Module, Path], tmp_path: Path) -> None:
    path = Path(shutil.copy(resnet[1], tmp_path / "model.onnx"))
    report = ParityReport(max_abs_diff=2e-6, tolerance=DEFAULT_TOLERANCE, passed=True, batch_sizes=[1, 5])
    record = write_export_json(tmp_path, report, path)
    assert json.loads((tmp_path / "export.json").read_text()) == record
    assert set(record) == {
        "onnx_file", "sha256", "max_abs_diff", "tolerance", "passed", "batch_sizes", "opset", "torch_version",
        "onnxruntime_version",
    }  # fmt: skip
    assert record["onnx_file"] == "model.onnx"
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record["max_abs_diff"], record["passed"], record["batch_sizes"]) == (2e-6, True, [1, 5])
    assert isinstance(record["opset"], int) and record["opset"] >= 18
    assert record["torch_version"] == torch.__version__ and record["onnxruntime_version"] == ort.__version__

    failed = ParityReport(max_abs_diff=float("nan"), tolerance=1e-4, passed=False, batch_sizes=[1, 2])
    elsewhere = tmp_path / "other"
    assert write_export_json(elsewhere, failed, path)["max_abs_diff"] is None  # JSON has no NaN
    assert json.loads((elsewhere / "export.json").read_text())["onnx_file"] == "model.onnx"
