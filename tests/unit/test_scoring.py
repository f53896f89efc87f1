"""The scoring scripts without a server: model lookup, request validation, predictions, responses, no torch."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from training_scripts import scoring
from training_scripts.preprocess_config import ImagePreprocessConfig, TextPreprocessConfig, save_preprocess_config
from training_scripts.text_encode import encode_texts
from training_scripts.text_vocab import Vocabulary

LABELS = ["normal", "pneumonia", "other"]
IMAGE_CFG = ImagePreprocessConfig(image_size=16, resize_size=18)
TEXT_CFG = TextPreprocessConfig(seq_len=6)
VOCAB = Vocabulary(["<pad>", "<unk>", "good", "bad", "movie"])


# ------------------------------------------------------------------------------------------ tiny real models


def _write_onnx(path: Path, task: str) -> None:
    """A tiny real ONNX model with the contract's I/O: mean pixel per channel (or mean token id) -> 3 logits."""
    from onnx import TensorProto, helper, save_model

    if task == "image":
        inputs = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, "H", "W"])
        weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], [1.0, 0.0, -1.0, 0.5, 1.0, 0.0, -1.0, 0.2, 1.0])
        nodes = [
            helper.make_node("ReduceMean", ["pixel_values"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        ]
    else:
        inputs = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "T"])
        weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3], [1.0, -1.0, 0.25])
        nodes = [
            helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["ids"], ["pooled"], axes=[1], keepdims=1),
            helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        ]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph(nodes, "tiny", [inputs], [output], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save_model(model, str(path))


def make_model_dir(folder: Path, task: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write_onnx(folder / "model.onnx", task)
    (folder / "labels.json").write_text(json.dumps(LABELS))
    save_preprocess_config(folder, IMAGE_CFG if task == "image" else TEXT_CFG)
    if task == "text":
        VOCAB.save(folder)
    return folder


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (24, 20), mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 4096, size[::-1], dtype=np.uint16))
    else:
        channels = {"RGB": 3, "RGBA": 4}.get(mode)
        shape = (*size[::-1], channels) if channels else size[::-1]
        img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=None).convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def image_scorer(tmp_path_factory: pytest.TempPathFactory) -> scoring.Scorer:
    folder = make_model_dir(tmp_path_factory.mktemp("image") / "model", "image")
    return scoring.load_scorer(folder, limits=scoring.Limits(max_batch=4, max_pixels=10_000, max_text_chars=50))


@pytest.fixture(scope="module")
def text_scorer(tmp_path_factory: pytest.TempPathFactory) -> scoring.Scorer:
    folder = make_model_dir(tmp_path_factory.mktemp("text") / "model", "text")
    return scoring.load_scorer(folder, limits=scoring.Limits(max_batch=4, max_pixels=10_000, max_text_chars=50))


# ------------------------------------------------------------------------------------------------ model files


def test_find_model_dir_in_the_folder_itself_one_level_down_and_in_azures_layout(tmp_path: Path) -> None:
    flat = make_model_dir(tmp_path / "flat", "image")
    assert scoring.find_model_dir(flat) == flat
    nested = make_model_dir(tmp_path / "registered" / "output", "image")
    assert scoring.find_model_dir(tmp_path / "registered") == nested
    azure = make_model_dir(tmp_path / "azureml-models" / "xray" / "3" / "output", "image")
    (azure / "checkpoints").mkdir()
    assert scoring.find_model_dir(tmp_path / "azureml-models" / "xray" / "3") == azure


def test_find_model_dir_reads_azureml_model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_model_dir(tmp_path / "m", "text")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    assert scoring.find_model_dir() == folder
    monkeypatch.delenv("AZUREML_MODEL_DIR")
    with pytest.raises(FileNotFoundError, match="AZUREML_MODEL_DIR is not set"):
        scoring.find_model_dir()


def test_find_model_dir_refuses_ambiguous_and_missing_models(tmp_path: Path) -> None:
    make_model_dir(tmp_path / "a", "image")
    make_model_dir(tmp_path / "b", "image")
    with pytest.raises(ValueError, match="several model folders"):
        scoring.find_model_dir(tmp_path)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "model.onnx").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"no folder with model\.onnx, preprocess\.json, labels\.json"):
        scoring.find_model_dir(empty)


def test_load_scorer_refuses_a_model_of_the_other_task(tmp_path: Path) -> None:
    folder = make_model_dir(tmp_path / "m", "text")
    with pytest.raises(ValueError, match="holds a text-classification model"):
        scoring.load_scorer(folder, expected_task="image-classification")


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_DL_MAX_BATCH", "8")
    monkeypatch.setenv("AZURE_DL_MAX_IMAGE_PIXELS", "1000")
    assert scoring.Limits.from_env() == scoring.Limits(max_batch=8, max_pixels=1000)
    monkeypatch.setenv("AZURE_DL_MAX_BATCH", "many")
    with pytest.raises(ValueError, match="AZURE_DL_MAX_BATCH='many' is not an integer"):
        scoring.Limits.from_env()


# ------------------------------------------------------------------------------------------------ predictions


def test_image_predictions_in_request_order_with_top_k(image_scorer: scoring.Scorer) -> None:
    payloads = [image_bytes("PNG", seed=1), image_bytes("JPEG", seed=2), image_bytes("BMP", seed=3)]
    result = scoring.handle(image_scorer, json.dumps({"images": [b64(p) for p in payloads], "top_k": 2}))
    inputs = np.stack([image_scorer.parse({"images": [b64(p)]})[0][0] for p in payloads])
    expected = scoring.softmax(image_scorer.session.run(None, {"pixel_values": inputs})[0])
    assert [len(p["probabilities"]) for p in result["predictions"]] == [2, 2, 2]
    for row, prediction in zip(expected, result["predictions"]):
        best = int(np.argmax(row))
        assert prediction["label"] == LABELS[best]
        assert prediction["score"] == pytest.approx(row[best])
        assert list(prediction["probabilities"].values()) == sorted(prediction["probabilities"].values(), reverse=True)
        assert prediction["probabilities"][LABELS[best]] == prediction["score"]


def test_default_top_k_is_three_capped_at_the_number_of_classes(image_scorer: scoring.Scorer) -> None:
    result = scoring.handle(image_scorer, {"images": [b64(image_bytes())]})
    assert len(result["predictions"][0]["probabilities"]) == 3
    assert sum(result["predictions"][0]["probabilities"].values()) == pytest.approx(1.0)


def test_text_predictions_hold_every_class(text_scorer: scoring.Scorer) -> None:
    result = scoring.handle(text_scorer, json.dumps({"texts": ["good movie", "bad bad bad", ""]}))
    assert len(result["predictions"]) == 3
    for prediction in result["predictions"]:
        assert set(prediction["probabilities"]) == set(LABELS)
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0)
    assert result["predictions"][0] != result["predictions"][1]


def test_run_accepts_str_bytes_and_an_already_parsed_dict(text_scorer: scoring.Scorer) -> None:
    body = {"texts": ["good movie"]}
    answers = [scoring.handle(text_scorer, raw) for raw in (json.dumps(body), json.dumps(body).encode(), body)]
    assert answers[0] == answers[1] == answers[2]


# ------------------------------------------------------------------------------- same arrays as training's


@pytest.mark.parametrize(
    ("fmt", "mode", "size"),
    [("JPEG", "RGB", (40, 30)), ("PNG", "RGBA", (30, 41)), ("BMP", "RGB", (18, 18)), ("PNG", "I;16", (33, 25))],
)
def test_image_inputs_equal_trainings_eval_transform(
    image_scorer: scoring.Scorer, tmp_path: Path, fmt: str, mode: str, size: tuple[int, int]
) -> None:
    from training_scripts.image_data import eval_transform

    data = image_bytes(fmt, size=size, mode=mode, seed=7)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    served = image_scorer.parse({"images": [b64(data)]})[0][0]
    trained = eval_transform(IMAGE_CFG)(path).numpy()
    assert served.dtype == trained.dtype == np.float32
    np.testing.assert_array_equal(served, trained)


def test_text_inputs_equal_trainings_encoding(text_scorer: scoring.Scorer) -> None:
    texts = ["Good movie!", "bad<br />BAD", "", "good " * 9]
    served = text_scorer.parse({"texts": texts})[0]
    # train_lstm encodes every split with encode_texts(texts, vocab, cfg) from the saved vocabulary and config.
    np.testing.assert_array_equal(served, encode_texts(texts, VOCAB, TEXT_CFG))
    assert served.dtype == np.int64 and served.shape == (4, TEXT_CFG.seq_len)


# ------------------------------------------------------------------------------------------- client errors

GOOD = b64(image_bytes())
BOMB = image_bytes("PNG", size=(200, 100), mode="RGB")  # 20,000 pixels > the fixture's limit of 10,000

IMAGE_ERRORS: list[tuple[Any, str]] = [
    ("", "request body is empty"),
    ("{not json", "not valid JSON: Expecting property name"),
    (b"\xff\xfe{}", "not UTF-8"),
    ("[1, 2]", "must be a JSON object, got a JSON array"),
    ('"images"', "must be a JSON object, got a JSON string"),
    ("{}", "missing field 'images'"),
    ({"images": GOOD}, "'images' must be a JSON array, got a JSON string"),
    ({"images": []}, "'images' is empty"),
    ({"images": [GOOD] * 5}, "5 items, more than the limit of 4"),
    ({"images": [GOOD, 7]}, "images[1] must be a base64 string, got a JSON number"),
    ({"images": [None]}, "images[0] must be a base64 string, got a JSON null"),
    ({"images": [""]}, "images[0] is an empty string"),
    ({"images": ["abc$"]}, "images[0] is not valid base64"),
    ({"images": [b64(b"hello, not an image")]}, "images[0] is not a JPEG, PNG or BMP file"),
    ({"images": [b64(b"GIF89a" + bytes(20))]}, "images[0] is not a JPEG, PNG or BMP file"),
    ({"images": [b64(image_bytes("PNG")[:60])]}, "cannot decode image images[0]"),
    ({"images": [GOOD, b64(BOMB)]}, "images[1]: image is 200x100 = 20000 pixels, more than the limit of 10000"),
    ({"images": [GOOD], "top_k": 0}, "'top_k' must be between 1 and 3"),
    ({"images": [GOOD], "top_k": 4}, "'top_k' must be between 1 and 3"),
    ({"images": [GOOD], "top_k": "2"}, "'top_k' must be an integer"),
    ({"images": [GOOD], "top_k": True}, "'top_k' must be an integer"),
    ({"images": [GOOD], "top_k": 1.5}, "'top_k' must be an integer"),
    ({"images": [GOOD], "topk": 2}, "unknown field(s) 'topk'"),
    ({"image": [GOOD]}, "unknown field(s) 'image'"),
    ({"texts": ["hello"]}, "this model classifies images, not texts"),
]

TEXT_ERRORS: list[tuple[Any, str]] = [
    ({}, "missing field 'texts'"),
    ({"texts": "hello"}, "'texts' must be a JSON array, got a JSON string"),
    ({"texts": []}, "'texts' is empty"),
    ({"texts": ["a"] * 5}, "more than the limit of 4"),
    ({"texts": ["ok", 3]}, "texts[1] must be a string, got a JSON number"),
    ({"texts": [["nested"]]}, "texts[0] must be a string, got a JSON array"),
    ({"texts": ["x" * 51]}, "texts[0] has 51 characters, more than the limit of 50"),
    ({"texts": ["ok"], "top_k": 1}, "'top_k' applies to image models only"),
    ({"images": [GOOD]}, "this model classifies texts, not images"),
    ({"texts": ["ok"], "lang": "en"}, "unknown field(s) 'lang'"),
]


def _bad_request(scorer: scoring.Scorer, raw: Any) -> str:
    response = scoring.handle(scorer, raw)
    assert response.status_code == 400, response
    assert response.mimetype == "application/json"
    return str(json.loads(response.get_data())["message"])


@pytest.mark.parametrize(("raw", "expected"), IMAGE_ERRORS)
def test_image_client_errors_get_400_with_a_message(image_scorer: scoring.Scorer, raw: Any, expected: str) -> None:
    assert expected in _bad_request(image_scorer, raw)


@pytest.mark.parametrize(("raw", "expected"), TEXT_ERRORS)
def test_text_client_errors_get_400_with_a_message(text_scorer: scoring.Scorer, raw: Any, expected: str) -> None:
    assert expected in _bad_request(text_scorer, raw)


def test_the_response_is_the_inference_servers_own_type(image_scorer: scoring.Scorer) -> None:
    from azureml_inference_server_http.api.aml_response import AMLResponse

    assert isinstance(scoring.handle(image_scorer, "{}"), AMLResponse)


def test_base64_with_line_breaks_and_data_uris_is_accepted(image_scorer: scoring.Scorer) -> None:
    data = image_bytes("JPEG")
    wrapped = "\n".join(b64(data)[i : i + 76] for i in range(0, len(b64(data)), 76))
    uri = "data:image/jpeg;base64," + b64(data)
    plain = scoring.handle(image_scorer, {"images": [b64(data)]})
    assert scoring.handle(image_scorer, {"images": [wrapped, uri]})["predictions"] == plain["predictions"] * 2


# ------------------------------------------------------------------------------------------- server faults


class _BrokenSession:
    def __init__(self, result: Any = None) -> None:
        self.result = result

    def run(self, output_names: Any, input_feed: Any) -> list[np.ndarray]:
        if self.result is None:
            raise RuntimeError("secret path /models/x failed in ORT")
        return [self.result]


@pytest.mark.parametrize("logits", [None, np.array([[np.nan, 0.0, 1.0]], dtype=np.float32), np.zeros((1, 2))])
def test_server_faults_get_500_with_a_generic_message(logits: Any, caplog: pytest.LogCaptureFixture) -> None:
    scorer = scoring.TextScorer(_BrokenSession(logits), LABELS, TEXT_CFG, VOCAB, scoring.Limits())
    response = scoring.handle(scorer, {"texts": ["good"]})
    assert response.status_code == 500
    message = json.loads(response.get_data())["message"]
    assert message.startswith("internal error while scoring (incident ")
    assert "secret" not in message
    assert "scoring failed" in caplog.text


def test_run_before_init_is_a_server_fault() -> None:
    assert scoring.handle(None, {"texts": ["good"]}).status_code == 500


# ----------------------------------------------------------------------------------- the scripts, no torch


def test_scoring_scripts_run_in_a_fresh_process_without_importing_torch(tmp_path: Path) -> None:
    """Loaded the way the inference server loads them: by file path, from a copy of the code, with only the
    script's own folder on sys.path (Azure ML's AML_APP_ROOT) and azure-dl not installed."""
    from azure_dl.backends.local.endpoints import stage_code_root

    code = stage_code_root(tmp_path / "code")
    make_model_dir(tmp_path / "image" / "output", "image")
    make_model_dir(tmp_path / "text" / "output", "text")
    probe = f"""
import importlib.util, json, os, sys
# Like a deployment: no editable install of this repository, the scripts' folder appended to sys.path.
sys.meta_path = [finder for finder in sys.meta_path if "editable" not in repr(finder)]
sys.path.append({str(code / "training_scripts")!r})

def load(name):
    spec = importlib.util.spec_from_file_location("entry_module", {str(code / "training_scripts")!r} + "/" + name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

os.environ["AZUREML_MODEL_DIR"] = {str(tmp_path / "image")!r}
score_resnet = load("score_resnet.py")
score_resnet.init()
image = score_resnet.run(json.dumps({{"images": [{GOOD!r}], "top_k": 1}}))
os.environ["AZUREML_MODEL_DIR"] = {str(tmp_path / "text")!r}
score_lstm = load("score_lstm.py")
score_lstm.init()
text = score_lstm.run('{{"texts": ["good movie"]}}')
bad = score_lstm.run("{{")
print(json.dumps({{"image": image, "text": text, "bad": bad.status_code,
                  "scoring": sys.modules["training_scripts.scoring"].__file__,
                  "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["torch"] == []
    assert answer["scoring"] == str(code / "training_scripts" / "scoring.py")
    assert len(answer["image"]["predictions"][0]["probabilities"]) == 1
    assert set(answer["text"]["predictions"][0]["probabilities"]) == set(LABELS)
    assert answer["bad"] == 400
