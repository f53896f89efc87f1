"""The real inference server (azmlinfsrv) on loopback with each tiny trained model: real files and texts over HTTP
match in-process ONNX Runtime predictions, malformed requests get 4xx with a JSON message and leave the server
healthy, and `azure-dl serve` serves a registered model and stops on Ctrl-C."""

from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from azure_dl.backends.local import endpoints
from tests.trained import script_env
from training_scripts.image_transforms import preprocess_images
from training_scripts.preprocess_config import ImagePreprocessConfig, TextPreprocessConfig, load_preprocess_config
from training_scripts.scoring import softmax
from training_scripts.text_encode import encode_texts
from training_scripts.text_vocab import Vocabulary

pytestmark = pytest.mark.slow

TEXTS = ["A wonderful, moving film - loved it!", "Dull plot, terrible acting.", "", "ok <br /> 10/10"]


def _serve(model_dir: Path, log_path: Path) -> Iterator[endpoints.ServerSpec]:
    spec = endpoints.ServerSpec(
        model_dir=model_dir, task=endpoints.model_task(model_dir), port=endpoints.free_port(), model_name="tiny"
    )
    with endpoints.LocalEndpoint(spec, log_path=log_path):
        yield spec


@pytest.fixture(scope="module")
def resnet_server(trained_resnet: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[endpoints.ServerSpec]:
    yield from _serve(trained_resnet, tmp_path_factory.mktemp("serve") / "resnet.log")


@pytest.fixture(scope="module")
def lstm_server(trained_lstm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[endpoints.ServerSpec]:
    yield from _serve(trained_lstm, tmp_path_factory.mktemp("serve") / "lstm.log")


def _in_process(model_dir: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return softmax(session.run(None, {session.get_inputs()[0].name: inputs})[0])


def _post(url: str, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(url, json=body, timeout=30, **kwargs)


def _assert_same(predictions: list[dict[str, Any]], probabilities: np.ndarray, labels: list[str], top_k: int) -> None:
    assert len(predictions) == len(probabilities)
    for prediction, row in zip(predictions, probabilities):
        order = np.argsort(-row, kind="stable")[:top_k]
        assert prediction["label"] == labels[int(order[0])]
        assert prediction["score"] == pytest.approx(row[order[0]], abs=1e-6)
        assert list(prediction["probabilities"]) == [labels[int(i)] for i in order]
        assert list(prediction["probabilities"].values()) == pytest.approx([row[i] for i in order], abs=1e-6)


@pytest.fixture(scope="module")
def image_files(synth_image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real files of the three formats, from the synthetic (PNG) training images, of different sizes."""
    pngs = sorted(synth_image_dir.rglob("*.png"))
    folder = tmp_path_factory.mktemp("images")
    jpeg, bmp = folder / "x.jpg", folder / "y.BMP"
    with Image.open(pngs[1]) as img:
        img.convert("RGB").resize((50, 40)).save(jpeg, format="JPEG", quality=90)
    with Image.open(pngs[-1]) as img:
        img.convert("RGB").save(bmp, format="BMP")
    return [pngs[0], jpeg, bmp, pngs[-2]]


def test_resnet_endpoint_scores_real_files_like_onnx_runtime_in_process(
    resnet_server: endpoints.ServerSpec, trained_resnet: Path, image_files: list[Path]
) -> None:
    images = [base64.b64encode(path.read_bytes()).decode() for path in image_files]
    response = _post(resnet_server.scoring_url, {"images": images, "top_k": 1})
    assert response.status_code == 200, response.text
    labels = json.loads((trained_resnet / "labels.json").read_text())
    cfg = load_preprocess_config(trained_resnet)
    assert isinstance(cfg, ImagePreprocessConfig)
    expected = _in_process(trained_resnet, preprocess_images(image_files, cfg))
    _assert_same(response.json()["predictions"], expected, labels, top_k=1)


def test_lstm_endpoint_scores_texts_like_onnx_runtime_in_process(
    lstm_server: endpoints.ServerSpec, trained_lstm: Path
) -> None:
    response = _post(lstm_server.scoring_url, {"texts": TEXTS})
    assert response.status_code == 200, response.text
    labels = json.loads((trained_lstm / "labels.json").read_text())
    cfg = load_preprocess_config(trained_lstm)
    assert isinstance(cfg, TextPreprocessConfig)
    expected = _in_process(trained_lstm, encode_texts(TEXTS, Vocabulary.load(trained_lstm), cfg))
    _assert_same(response.json()["predictions"], expected, labels, top_k=len(labels))


def _png(size: tuple[int, int], mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


GOOD_PNG = _png((8, 8))
# 7000 x 7000 1-bit pixels compress to a few kilobytes but decode to 49 MP: over the default 40 MP limit.
BOMB_PNG = _png((7000, 7000), mode="1")

RESNET_MALFORMED: list[tuple[str, bytes | str, dict[str, str]]] = [
    ("empty body", b"", {}),
    ("not JSON", b"images please", {}),
    ("truncated JSON", b'{"images": ["', {}),
    ("not UTF-8", b'{"images": ["\xff\xfe"]}', {}),
    ("JSON array", b"[1, 2, 3]", {}),
    ("JSON null", b"null", {}),
    ("missing field", b"{}", {}),
    ("misspelt field", json.dumps({"image": [GOOD_PNG]}), {}),
    ("images is a string", json.dumps({"images": GOOD_PNG}), {}),
    ("images is an object", json.dumps({"images": {"a": GOOD_PNG}}), {}),
    ("empty list", json.dumps({"images": []}), {}),
    ("over the batch limit", json.dumps({"images": [GOOD_PNG] * 65}), {}),
    ("number item", json.dumps({"images": [GOOD_PNG, 42]}), {}),
    ("invalid base64", json.dumps({"images": ["!!not base64!!"]}), {}),
    ("base64 of text", json.dumps({"images": [base64.b64encode(b"just some text").decode()]}), {}),
    ("GIF", json.dumps({"images": [base64.b64encode(b"GIF89a" + bytes(40)).decode()]}), {}),
    ("truncated PNG", json.dumps({"images": [GOOD_PNG[:40]]}), {}),
    ("decompression bomb", json.dumps({"images": [BOMB_PNG]}), {}),
    ("top_k zero", json.dumps({"images": [GOOD_PNG], "top_k": 0}), {}),
    ("top_k too big", json.dumps({"images": [GOOD_PNG], "top_k": 99}), {}),
    ("top_k string", json.dumps({"images": [GOOD_PNG], "top_k": "all"}), {}),
    ("texts to an image model", json.dumps({"texts": ["hello"]}), {}),
    ("plain-text content type", json.dumps({"images": "x"}), {"Content-Type": "text/plain"}),
]

LSTM_MALFORMED: list[tuple[str, bytes | str, dict[str, str]]] = [
    ("missing texts", b'{"text": "hello"}', {}),
    ("texts is a string", b'{"texts": "hello"}', {}),
    ("number text", b'{"texts": ["ok", 3]}', {}),
    ("null text", b'{"texts": [null]}', {}),
    ("empty list", b'{"texts": []}', {}),
    ("top_k for text", b'{"texts": ["ok"], "top_k": 1}', {}),
    ("over the length limit", json.dumps({"texts": ["word " * 30_000]}), {}),
]


def _check_malformed(server: endpoints.ServerSpec, corpus: list[tuple[str, bytes | str, dict[str, str]]]) -> None:
    problems = []
    for name, body, headers in corpus:
        data = body.encode() if isinstance(body, str) else body
        response = requests.post(
            server.scoring_url, data=data, headers={"Content-Type": "application/json", **headers}, timeout=30
        )
        try:
            message = response.json()["message"]
        except (ValueError, KeyError, TypeError):
            message = None
        if not (400 <= response.status_code < 500 and isinstance(message, str) and message):
            problems.append(f"{name}: {response.status_code} {response.text[:200]}")
    assert not problems, "\n".join(problems)


def _still_serving(server: endpoints.ServerSpec, good: dict[str, Any]) -> None:
    health = requests.get(server.base_url + "/", timeout=10)
    assert health.status_code == 200 and health.text == "Healthy"
    assert _post(server.scoring_url, good).status_code == 200


def test_malformed_image_requests_get_4xx_with_a_message_and_the_server_keeps_serving(
    resnet_server: endpoints.ServerSpec,
) -> None:
    assert len(RESNET_MALFORMED) + len(LSTM_MALFORMED) >= 20
    _check_malformed(resnet_server, RESNET_MALFORMED)
    bad_get = requests.get(resnet_server.scoring_url, timeout=10)
    assert bad_get.status_code == 400 and "missing field 'images'" in bad_get.json()["message"]
    _still_serving(resnet_server, {"images": [GOOD_PNG]})


def test_malformed_text_requests_get_4xx_with_a_message_and_the_server_keeps_serving(
    lstm_server: endpoints.ServerSpec,
) -> None:
    _check_malformed(lstm_server, LSTM_MALFORMED)
    _still_serving(lstm_server, {"texts": ["still fine"]})


def test_serve_cli_serves_a_registered_model_and_stops_on_ctrl_c(
    trained_lstm: Path, tmp_path: Path, mlflow_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure_dl.backends.local.models import register_local
    from azure_dl.cli.main import main

    registered = register_local(trained_lstm, "tiny-lstm")
    port = endpoints.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "azure_dl.cli.main", "serve", registered.uri, "--port", str(port)],
        cwd=tmp_path,
        env=script_env(mlflow_store, HOME=str(tmp_path)),  # the registry's download cache lives under HOME
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        assert any(f"POST http://127.0.0.1:{port}/score" in line for line in lines), "".join(lines[-30:])
        assert main(["score", f"http://127.0.0.1:{port}", "--text", "great", "--json"]) == 0
        assert len(json.loads(capsys.readouterr().out)["predictions"]) == 1
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            # SIGTERM lets the CLI stop its server's process group; SIGKILL would leave the server running.
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
