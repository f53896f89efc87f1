"""Hostile and oversized scoring requests: deep nesting, non-finite numbers, huge keys, the body size limit (413),
and a 10 MB radiograph, which must be admitted by the default limits."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tests.unit.test_scoring import LABELS, TEXT_CFG, VOCAB, b64, image_bytes, image_scorer, text_scorer
from training_scripts import scoring, scoring_request

__all__ = ["image_scorer", "text_scorer"]  # fixtures, imported for pytest

GOOD = b64(image_bytes())


def _message(response: Any, status: int = 400) -> str:
    assert not isinstance(response, dict), response
    assert response.status_code == status, response.get_data()[:300]
    return str(json.loads(response.get_data())["message"])


@pytest.mark.parametrize("opening", ["[", '{"a":', '{"images": ['])
def test_json_nested_100000_levels_deep_is_a_400_not_a_recursion_error(
    image_scorer: scoring.Scorer, opening: str
) -> None:
    raw = opening * 100_000
    assert "nested too deeply" in _message(scoring.handle(image_scorer, raw))
    assert "nested too deeply" in _message(scoring.handle(image_scorer, raw.encode()))


def test_nesting_just_under_the_parsers_limit_is_refused_by_field_validation(image_scorer: scoring.Scorer) -> None:
    # 900 levels parse; rendering such a value in a message must not recurse (json.dumps would, into a 500).
    deep = "[" * 900 + "]" * 900
    assert "'top_k' must be an integer, got a JSON array" in _message(
        scoring.handle(image_scorer, f'{{"images": ["{GOOD}"], "top_k": {deep}}}')
    )
    assert "images[0] must be a base64 string, got a JSON array" in _message(
        scoring.handle(image_scorer, f'{{"images": [{deep}]}}')
    )


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_top_k_is_a_400(image_scorer: scoring.Scorer, value: str) -> None:
    # Python's json accepts NaN/Infinity (and 1e400 becomes inf); int() of them raised, which was a 500.
    message = _message(scoring.handle(image_scorer, f'{{"images": ["{GOOD}"], "top_k": {value}}}'))
    assert "'top_k' must be an integer" in message


def test_a_huge_unknown_key_gives_a_short_message(text_scorer: scoring.Scorer) -> None:
    body = {"texts": ["good"], "k" * 1_000_000: 1, **{f"extra{i}": i for i in range(10)}}
    message = _message(scoring.handle(text_scorer, body))
    assert message.startswith("unknown field(s) 'kkkk") and "and 6 more" in message
    assert len(message) < 600


def test_a_body_over_the_size_limit_is_a_413_naming_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = scoring.Limits(max_request_bytes=1000)
    scorer = scoring.TextScorer(_Fixed(), LABELS, TEXT_CFG, VOCAB, limits)
    small = json.dumps({"texts": ["good"]})
    assert "predictions" in scoring.handle(scorer, small)
    big = json.dumps({"texts": ["good " * 300]})
    message = _message(scoring.handle(scorer, big), 413)
    assert (
        f"{len(big)} bytes, more than the limit of 1000" in message and scoring_request.MAX_REQUEST_BYTES_ENV in message
    )
    assert "more than the limit of 1000" in _message(scoring.handle(scorer, big.encode()), 413)
    # Non-ASCII text counts in UTF-8 bytes: 400 characters of "é" are 800 bytes + the JSON around them.
    accented = json.dumps({"texts": ["é" * 495]}, ensure_ascii=False)
    assert len(accented) < 1000 < len(accented.encode())
    assert _message(scoring.handle(scorer, accented), 413)
    monkeypatch.setenv(scoring_request.MAX_REQUEST_BYTES_ENV, "2048")
    assert scoring.Limits.from_env().max_request_bytes == 2048


class _Fixed:
    def run(self, output_names: Any, input_feed: Any) -> list[np.ndarray]:
        (inputs,) = input_feed.values()
        return [np.tile(np.array([[1.0, 0.0, -1.0]], dtype=np.float32), (len(inputs), 1))]


def test_a_10_mb_radiograph_is_admitted_by_the_default_limits() -> None:
    pytest.importorskip("pydicom")
    from tests.unit.test_dicom import dicom_bytes

    # 16-bit 2240 x 2240 MONOCHROME2: 10.0 MB, a typical digital chest radiograph.
    rng = np.random.default_rng(0)
    xray = rng.integers(0, 4096, (2240, 2240), dtype=np.uint16)
    data = dicom_bytes(xray)
    assert len(data) >= 10_000_000
    scorer = scoring.ImageScorer(_Fixed(), LABELS, scoring.ImagePreprocessConfig(image_size=16), scoring.Limits())
    body = json.dumps({"images": [b64(data)]})
    assert len(body) > 13_000_000  # base64 is 4/3 of the file
    answer = scoring.handle(scorer, body)
    assert isinstance(answer, dict) and answer["predictions"][0]["label"] == "normal"


def test_a_frame_field_picks_the_frame_of_a_multiframe_dicom() -> None:
    pytest.importorskip("pydicom")
    from tests.unit.test_dicom import RAMP, dicom_bytes

    frames = np.stack([RAMP, RAMP[:, ::-1]])
    scorer = scoring.ImageScorer(_Fixed(), LABELS, scoring.ImagePreprocessConfig(image_size=16), scoring.Limits())
    item = b64(dicom_bytes(frames, frames=2))
    first, _ = scorer.parse({"images": [item]})
    second, _ = scorer.parse({"images": [item], "frame": 1})
    np.testing.assert_array_equal(first, scorer.parse({"images": [item], "frame": 0})[0])
    np.testing.assert_allclose(second[..., ::-1], first, atol=1e-5)  # the second frame is the first, mirrored
    assert "the file has 2 frame(s)" in _message(scoring.handle(scorer, {"images": [item], "frame": 2}))
    assert "only DICOM has frames" in _message(scoring.handle(scorer, {"images": [GOOD], "frame": 1}))
    for bad in (-1, 1.5, "1", True):
        assert "'frame' must be a whole number >= 0" in _message(
            scoring.handle(scorer, {"images": [item], "frame": bad})
        )
