"""Property-based fuzzing of the scoring request parser and scorer: whatever a client sends, the answer is the
predictions or a 4xx with a message, never a 500 or an exception (profiles: tests/unit/conftest.py)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from tests.unit.test_scoring import b64, image_bytes, image_scorer, text_scorer
from training_scripts import scoring

__all__ = ["image_scorer", "text_scorer"]  # module fixtures, imported for pytest

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
)
FIELDS = st.sampled_from(["images", "texts", "top_k", "frame", "image", "topk", ""])
BODIES = st.dictionaries(FIELDS, JSON_VALUES, max_size=3)
MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"\0" * 128 + b"DICM", b""]


def assert_answer(response: Any, items: int | None = None) -> None:
    """Predictions (one per item) or a 4xx whose JSON body has a non-empty message: never a 5xx."""
    if isinstance(response, dict):
        predictions = response["predictions"]
        assert isinstance(predictions, list) and predictions
        assert items is None or len(predictions) == items
        return
    assert 400 <= response.status_code < 500, response.get_data()[:400]
    message = json.loads(response.get_data())["message"]
    assert isinstance(message, str) and message.strip()


@given(body=BODIES)
@example(body={"images": [b64(image_bytes())], "top_k": float("nan")})  # int(nan) was a 500
@example(body={"images": [b64(image_bytes())], "top_k": float("inf")})  # int(inf) was a 500
def test_any_json_object_gets_predictions_or_a_4xx(image_scorer: scoring.Scorer, body: dict[str, Any]) -> None:
    assert_answer(scoring.handle(image_scorer, body))
    assert_answer(scoring.handle(image_scorer, json.dumps(body)))


@given(body=BODIES)
def test_any_json_object_to_the_text_model_gets_predictions_or_a_4xx(
    text_scorer: scoring.Scorer, body: dict[str, Any]
) -> None:
    assert_answer(scoring.handle(text_scorer, body))


@given(raw=st.binary(max_size=200) | st.text(max_size=200))
@example(raw=b"\xff\xfe\x00{")
@example(raw="[" * 100_000)  # RecursionError in json.loads was a 500
@example(raw='{"a":' * 100_000)
def test_any_bytes_or_text_body_gets_a_4xx_or_predictions(image_scorer: scoring.Scorer, raw: bytes | str) -> None:
    assert_answer(scoring.handle(image_scorer, raw))


@given(depth=st.integers(min_value=0, max_value=20_000), opener=st.sampled_from(["[", '{"k":']))
def test_nesting_of_any_depth_gets_a_4xx(text_scorer: scoring.Scorer, depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    inner = opener * depth + "1" + closer * depth
    assert_answer(scoring.handle(text_scorer, '{"texts": [' + inner + "]}"))


@given(
    payload=st.binary(max_size=300),
    magic=st.sampled_from(MAGIC),
    wrap=st.sampled_from(["plain", "lines", "data_uri", "urlsafe", "no_padding"]),
)
def test_base64_of_random_bytes_gets_a_4xx_or_predictions(
    image_scorer: scoring.Scorer, payload: bytes, magic: bytes, wrap: str
) -> None:
    data = magic + payload
    text = base64.b64encode(data).decode("ascii")
    if wrap == "lines":
        text = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    elif wrap == "data_uri":
        text = "data:image/png;base64," + text
    elif wrap == "urlsafe":
        text = base64.urlsafe_b64encode(data).decode("ascii")
    elif wrap == "no_padding":
        text = text.rstrip("=")
    assert_answer(scoring.handle(image_scorer, {"images": [text]}))


FORMATS = {
    "PNG": {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"},
    "JPEG": {"L", "RGB", "CMYK"},
    "BMP": {"1", "L", "P", "RGB"},
}


@st.composite
def encoded_images(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(file bytes, whether it is intact): an image of a random mode and size, possibly cut short."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(sorted(FORMATS[fmt])))
    width, height = draw(st.integers(1, 120)), draw(st.integers(1, 80))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    rgba = Image.fromarray(values, "RGBA")
    # I;16: 12-bit values, as an X-ray PNG holds them.
    wide = Image.fromarray(np.asarray(rgba.convert("L"), dtype=np.uint16) * 16) if mode == "I;16" else None
    img = wide if wide is not None else rgba.convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    data = buffer.getvalue()
    cut = draw(st.none() | st.integers(0, len(data) - 1))
    return (data if cut is None else data[:cut]), cut is None


@given(images=st.lists(encoded_images(), min_size=1, max_size=4), top_k=st.none() | st.integers(-2, 5))
def test_images_of_any_mode_and_size_score_or_get_a_4xx(
    image_scorer: scoring.Scorer, images: list[tuple[bytes, bool]], top_k: int | None
) -> None:
    body: dict[str, Any] = {"images": [b64(data) for data, _ in images]}
    if top_k is not None:
        body["top_k"] = top_k
    response = scoring.handle(image_scorer, json.dumps(body))
    assert_answer(response, items=len(images))
    if all(intact for _, intact in images) and (top_k is None or 1 <= top_k <= 3):
        # Every intact image is within the fixture's 10,000-pixel limit (120 x 80 = 9,600), so the request scores.
        assert isinstance(response, dict), response.get_data()


@given(texts=st.lists(st.text(max_size=60), min_size=1, max_size=4))
@example(texts=["\ud800 lone surrogate", "\x00\u2028\u2029"])
def test_texts_in_any_encoding_score_or_get_a_4xx(text_scorer: scoring.Scorer, texts: list[str]) -> None:
    response = scoring.handle(text_scorer, json.dumps({"texts": texts}))
    assert_answer(response, items=len(texts))
    if all(len(text) <= 50 for text in texts):  # the fixture's limit
        assert isinstance(response, dict), response.get_data()
    utf8 = json.dumps({"texts": texts}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert_answer(scoring.handle(text_scorer, utf8), items=len(texts))
