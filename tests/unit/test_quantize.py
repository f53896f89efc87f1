"""INT8 quantization: static QDQ for image models, dynamic for text models, kept only at >= 99% top-1 agreement.

Hand-built ONNX models with the contract's I/O make the outcome certain: a clear decision rule survives int8, a
rule decided by differences finer than the int8 steps does not. The tiny trained LSTM checks the real graph.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training_scripts.preprocess_config import IMAGENET_MEAN, IMAGENET_STD
from training_scripts.quantize import (
    QUANTIZATION_FILE,
    QuantizationError,
    main,
    quantize_folder,
    read_texts,
    split_images,
)

SIZE = 16


def image_model(folder: Path, weights: list[list[float]], bias: list[float]) -> Path:
    """pixel_values [N,3,16,16] -> global average pool -> Gemm -> logits [N,2], with preprocess.json/labels.json."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1),
        ],
        "image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [
            numpy_helper.from_array(np.asarray(weights, np.float32), "W"),
            numpy_helper.from_array(np.asarray(bias, np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, folder / "model.onnx")
    preprocess = {
        "task": "image-classification",
        "image_size": SIZE,
        "resize_size": SIZE,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "input_name": "pixel_values",
    }
    (folder / "preprocess.json").write_text(json.dumps(preprocess))
    (folder / "labels.json").write_text('["dark", "bright"]')
    return folder


def greys(folder: Path, levels: list[tuple[int, float]]) -> Path:
    """Grey PNGs: each pixel `base`, or base + 1 with probability `extra` (fine steps of the mean)."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, (base, extra) in enumerate(levels):
        pixels = np.full((SIZE, SIZE), base, np.uint8)
        pixels[rng.random((SIZE, SIZE)) < extra] = min(255, base + 1)
        Image.fromarray(pixels).save(folder / f"grey_{index:03d}.png")
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_clear_image_model_is_quantized_and_keeps_the_onnx_contract(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    folder = image_model(tmp_path / "model", [[1, 1, 1], [-1, -1, -1]], [0, 0])
    data = greys(tmp_path / "images", [(10, 0.3)] * 15 + [(240, 0.3)] * 15)
    fp32 = sha(folder / "model.onnx")
    report = quantize_folder(folder, data=data)

    assert report.accepted and report.agreement == 1.0 and report.method == "static_qdq"
    assert (report.held_out, report.calibration) == (15, 15)
    assert report.fp32_sha256 == fp32 and sha(folder / "model.onnx") == report.int8_sha256 != fp32
    written = json.loads((folder / QUANTIZATION_FILE).read_text())
    assert written == report.to_dict() and written["data"] == str(data)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, out.name, out.type) == ("pixel_values", "tensor(float)", "logits", "tensor(float)")
    logits = session.run(None, {"pixel_values": np.zeros((3, 3, SIZE, SIZE), np.float32)})[0]
    assert logits.shape == (3, 2)


def test_a_model_whose_decisions_int8_cannot_resolve_keeps_fp32(tmp_path: Path) -> None:
    # The class flips at mean grey 128/255 on the R channel; the held-out means sit within one int8 step of it,
    # while black and white images stretch the calibrated range.
    threshold = (128 / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    folder = image_model(tmp_path / "model", [[1, 0, 0], [0, 0, 0]], [-threshold, 0])
    band = [(127 + index % 2, index / 40) for index in range(40)]
    data = greys(tmp_path / "images", [(0, 0.0)] * 6 + [(255, 0.0)] * 6 + band)
    fp32 = sha(folder / "model.onnx")
    report = quantize_folder(folder, data=data)

    assert not report.accepted and report.agreement < 0.99
    assert sha(folder / "model.onnx") == fp32  # fp32 kept
    assert "kept fp32" in report.reason and f"{report.agreement:.2%}" in report.reason
    assert json.loads((folder / QUANTIZATION_FILE).read_text())["accepted"] is False


def test_calibration_and_held_out_images_never_overlap() -> None:
    paths = [Path(f"img_{index}.png") for index in range(50)]
    calibration, held_out = split_images(paths)
    assert not set(calibration) & set(held_out) and len(calibration) + len(held_out) == 50
    assert split_images(paths) == (calibration, held_out)  # seeded


def test_too_few_images_is_an_error(tmp_path: Path) -> None:
    folder = image_model(tmp_path / "model", [[1, 1, 1], [-1, -1, -1]], [0, 0])
    with pytest.raises(QuantizationError, match="too few images"):
        quantize_folder(folder, data=greys(tmp_path / "images", [(10, 0.0)] * 6))
    assert not (folder / QUANTIZATION_FILE).exists()


def test_the_trained_lstm_is_quantized_dynamically_and_the_verdict_matches_the_agreement(
    trained_lstm: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(trained_lstm, tmp_path / "lstm"))
    fp32 = sha(folder / "model.onnx")
    report = quantize_folder(folder)  # synthetic held-out texts

    assert report.method == "dynamic" and report.calibration == 0 and report.held_out >= 100
    assert "synthetic texts" in report.data
    assert report.int8_bytes < report.fp32_bytes
    assert report.accepted == (report.agreement >= 0.99)
    assert sha(folder / "model.onnx") == (report.int8_sha256 if report.accepted else fp32)


def test_read_texts_formats(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('id,text,label\n1,"good, really",positive\n2,,negative\n3,bad,negative\n')
    (tmp_path / "a.jsonl").write_text('{"text": "fine"}\n\n{"text": "meh", "label": 0}\n')
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    assert read_texts(tmp_path / "a.csv") == ["good, really", "bad"]
    assert read_texts(tmp_path / "a.jsonl") == ["fine", "meh"]
    assert read_texts(tmp_path / "a.txt") == ["one", "two"]
    with pytest.raises(QuantizationError, match="no 'text' column"):
        (tmp_path / "b.csv").write_text("review\nx\n")
        read_texts(tmp_path / "b.csv")


def test_the_pipeline_step_works_on_a_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = image_model(tmp_path / "model", [[1, 1, 1], [-1, -1, -1]], [0, 0])
    data = greys(tmp_path / "images", [(10, 0.3)] * 15 + [(240, 0.3)] * 15)
    before = sha(source / "model.onnx")
    assert main(["--model", str(source), "--output", str(tmp_path / "out"), "--data", str(data)]) == 0
    assert sha(source / "model.onnx") == before and (tmp_path / "out" / QUANTIZATION_FILE).is_file()
    assert "kept INT8" in capsys.readouterr().out
    assert main(["--model", str(source), "--output", str(tmp_path / "bad"), "--data", str(tmp_path / "none")]) == 1


def test_quantization_imports_no_torch(tmp_path: Path) -> None:
    # The control plane runs it in-process and the inference environment has no torch.
    source = image_model(tmp_path / "model", [[1, 1, 1], [-1, -1, -1]], [0, 0])
    data = greys(tmp_path / "images", [(10, 0.3)] * 10 + [(240, 0.3)] * 10)
    probe = (
        "import sys\nfrom pathlib import Path\nfrom training_scripts.quantize import quantize_folder\n"
        f"quantize_folder(Path({str(source)!r}), data=Path({str(data)!r}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
