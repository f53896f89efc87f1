"""The scoring client without a network: requests from files and texts, URLs, answers, 424 unwrapping, HTTP errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from azure_dl import scoring_client as client
from azure_dl.errors import AzureDLError

KEY = "k3y-that-must-never-be-printed"
OK_BODY = json.dumps(
    {
        "predictions": [
            {"label": "cat", "score": 0.9, "probabilities": {"cat": 0.9, "dog": 0.1}},
            {"label": "dog", "score": 0.6, "probabilities": {"dog": 0.6, "cat": 0.4}},
        ]
    }
).encode()


def answer(status: int, body: bytes | str = b"", headers: dict[str, str] | None = None) -> client.HttpAnswer:
    return client.HttpAnswer(status, headers or {}, body.encode() if isinstance(body, str) else body)


def test_image_request_sends_each_file_as_base64(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jpg", tmp_path / "b.png"
    first.write_bytes(b"\xff\xd8\xffjpeg")
    second.write_bytes(b"\x89PNG\r\n\x1a\npng")
    request = client.image_request([first, second], top_k=2)
    assert [base64.b64decode(item) for item in request["images"]] == [first.read_bytes(), second.read_bytes()]
    assert request["top_k"] == 2
    assert "top_k" not in client.image_request([first])


def test_image_request_names_a_missing_file_and_a_bad_top_k(tmp_path: Path) -> None:
    with pytest.raises(AzureDLError, match=r"image file .*nope\.jpg not found"):
        client.image_request([tmp_path / "nope.jpg"])
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(AzureDLError, match="--top-k 0"):
        client.image_request([tmp_path / "a.jpg"], top_k=0)


def test_text_request_and_batches() -> None:
    assert client.text_request(["a", "b"]) == {"texts": ["a", "b"]}
    assert client.batches(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    with pytest.raises(AzureDLError, match="no texts"):
        client.text_request([])
    with pytest.raises(AzureDLError, match="--batch-size 0"):
        client.batches(["a"], 0)


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001/score"),
        ("http://127.0.0.1:5001/", "http://127.0.0.1:5001/score"),
        ("http://localhost:8080/score", "http://localhost:8080/score"),
        ("https://ep.westeurope.inference.ml.azure.com/score", "https://ep.westeurope.inference.ml.azure.com/score"),
    ],
)
def test_scoring_url(target: str, url: str) -> None:
    assert client.is_url(target)
    assert client.scoring_url(target) == url


def test_scoring_url_refuses_what_is_not_http() -> None:
    assert not client.is_url("my-endpoint")
    with pytest.raises(AzureDLError, match="not an http"):
        client.scoring_url("ftp://host/score")


def test_request_headers_carry_the_key_and_the_deployment() -> None:
    headers = client.request_headers(KEY, "green")
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["azureml-model-deployment"] == "green"
    assert headers["Content-Type"] == "application/json"
    assert (
        "Authorization" not in client.request_headers() and "azureml-model-deployment" not in client.request_headers()
    )


def test_a_200_answer_gives_predictions_in_order() -> None:
    predictions = client.parse_response(answer(200, OK_BODY))
    assert [p.label for p in predictions] == ["cat", "dog"]
    assert predictions[1].probabilities == {"dog": 0.6, "cat": 0.4}


def test_a_400_answer_shows_the_scoring_scripts_message() -> None:
    with pytest.raises(client.ScoringError) as error:
        client.parse_response(answer(400, json.dumps({"message": "images[0] is not valid base64"})))
    assert error.value.status == 400
    assert str(error.value).startswith("the endpoint answered 400: images[0] is not valid base64")
    assert "rejected the request" in str(error.value)


def test_a_managed_endpoints_424_is_unwrapped_to_the_containers_status() -> None:
    headers = {"MS-AzureML-Model-Error-StatusCode": "400", "ms-azureml-model-error-reason": "model_error"}
    with pytest.raises(client.ScoringError) as error:
        client.parse_response(answer(424, json.dumps({"message": "'texts' is empty; send at least one item"}), headers))
    assert error.value.status == 400
    assert "answered 400 (reported by the endpoint as 424): 'texts' is empty" in str(error.value)


def test_a_424_without_a_body_falls_back_to_the_reason_header() -> None:
    headers = {"ms-azureml-model-error-statuscode": "500", "ms-azureml-model-error-reason": "model_error"}
    with pytest.raises(client.ScoringError) as error:
        client.parse_response(answer(424, b"", headers))
    assert error.value.status == 500
    assert str(error.value).startswith("the endpoint answered 500 (reported by the endpoint as 424): model_error")
    assert "scoring script failed" in str(error.value)


def test_a_424_without_the_status_header_stays_424() -> None:
    with pytest.raises(client.ScoringError) as error:
        client.parse_response(answer(424, "upstream failed"))
    assert error.value.status == 424 and "upstream failed" in str(error.value)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, "", "not authorised"),
        (404, '{"message": "No valid deployments to route to"}', "No valid deployments to route to"),
        (429, '{"error": {"code": "TooManyRequests", "message": "slow down"}}', "slow down"),
        (500, '{"message": "internal error while scoring (incident abc)"}', "incident abc"),
    ],
)
def test_other_errors_keep_the_servers_message_and_add_a_hint(status: int, body: str, expected: str) -> None:
    with pytest.raises(client.ScoringError) as error:
        client.parse_response(answer(status, body))
    assert error.value.status == status
    assert expected in str(error.value)


def test_a_200_that_is_not_the_contract_is_an_error() -> None:
    with pytest.raises(client.ScoringError, match="not with"):
        client.parse_response(answer(200, '"Healthy"'))


def test_prediction_rows_show_the_input_label_score_and_probabilities() -> None:
    predictions = client.parse_response(answer(200, OK_BODY))
    rows = client.prediction_rows(["a.jpg", "x" * 80], predictions)
    assert rows[0] == ["0", "a.jpg", "cat", "0.900", "cat 0.900, dog 0.100"]
    assert rows[1][1] == "x" * 57 + "..." and rows[1][2] == "dog"


def test_score_posts_through_the_given_layer() -> None:
    calls: list[dict[str, Any]] = []

    def post(url: str, payload: Any, **kwargs: Any) -> client.HttpAnswer:
        calls.append({"url": url, "payload": payload, **kwargs})
        return answer(200, OK_BODY)

    predictions = client.score("http://h/score", {"texts": ["a", "b"]}, key=KEY, deployment="blue", post=post)
    assert len(predictions) == 2
    assert calls == [
        {"url": "http://h/score", "payload": {"texts": ["a", "b"]}, "key": KEY, "deployment": "blue", "timeout_s": 60.0}
    ]


class _FakeResponse:
    def __init__(self) -> None:
        self.status_code = 400
        self.headers = {"Content-Type": "application/json"}
        self.content = b'{"message": "bad"}'


def test_post_json_sends_json_with_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_post(url: str, **kwargs: Any) -> _FakeResponse:
        seen.update(kwargs, url=url)
        return _FakeResponse()

    monkeypatch.setattr(requests, "post", fake_post)
    result = client.post_json("http://h/score", {"texts": ["a"]}, key=KEY, timeout_s=5)
    assert result == client.HttpAnswer(400, {"Content-Type": "application/json"}, b'{"message": "bad"}')
    assert json.loads(seen["data"]) == {"texts": ["a"]} and seen["timeout"] == 5
    assert seen["headers"]["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [(requests.ConnectionError("Connection refused"), "cannot reach"), (requests.Timeout(), "no answer from")],
)
def test_post_json_turns_network_failures_into_messages_without_the_key(
    monkeypatch: pytest.MonkeyPatch, exc: Exception, expected: str
) -> None:
    def fake_post(url: str, **kwargs: Any) -> None:
        raise exc

    monkeypatch.setattr(requests, "post", fake_post)
    with pytest.raises(AzureDLError, match=expected) as error:
        client.post_json("http://127.0.0.1:9/score", {"texts": ["a"]}, key=KEY)
    assert KEY not in str(error.value)
