"""Property-based fuzzing of NAME=VALUE flag parsing (azure_dl/flag_values.py): any text is parsed or refused
with argparse's error (a usage message naming the value), never another exception; repeats are refused by name."""

from __future__ import annotations

import argparse
import math

import pytest

pytest.importorskip("hypothesis")
from hypothesis import example, given
from hypothesis import strategies as st

from azure_dl.errors import SpecError
from azure_dl.flag_values import key_value, pairs_to_dict, parse_min_metric
from training_scripts.model_folder import GATE_METRICS

KEYS = st.text(min_size=1, max_size=12).filter(lambda key: "=" not in key and key.strip() != "")


@given(text=st.text(max_size=40))
def test_any_text_is_a_pair_or_an_argparse_error(text: str) -> None:
    try:
        key, value = key_value(text)
    except argparse.ArgumentTypeError as exc:
        assert repr(text) in str(exc)
        return
    name, _, given = text.partition("=")
    assert key == name.strip() != "" and value == given  # the name trimmed, the value exactly as given


@given(key=KEYS, value=st.text(max_size=30))
def test_name_value_round_trips(key: str, value: str) -> None:
    assert key_value(f"{key}={value}") == (key.strip(), value)


@given(pairs=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "A"]), st.integers()), max_size=6))
def test_pairs_become_a_dict_or_the_repeated_name_is_refused(pairs: list[tuple[str, int]]) -> None:
    keys = [key for key, _ in pairs]
    try:
        result = pairs_to_dict(pairs, "tag")
    except SpecError as exc:
        repeated = next(key for index, key in enumerate(keys) if key in keys[:index])
        assert str(exc) == f"tag {repeated} is given twice"
        return
    assert len(set(keys)) == len(keys) and result == dict(pairs)


@given(
    text=st.text(max_size=30) | st.builds(lambda m, v: f"{m}={v}", st.sampled_from(GATE_METRICS), st.text(max_size=8))
)
def test_any_min_metric_text_is_parsed_or_an_argparse_error(text: str) -> None:
    try:
        name, threshold = parse_min_metric(text)
    except argparse.ArgumentTypeError as exc:
        assert str(exc).strip()
        return
    assert name in GATE_METRICS and isinstance(threshold, float)


@given(metric=st.sampled_from(GATE_METRICS), value=st.sampled_from(["nan", "inf", "-inf", "80", "-0.5", "1e9"]))
@example(metric="macro_f1", value="nan")
def test_a_gate_threshold_outside_0_to_1_is_refused(metric: str, value: str) -> None:
    try:
        _, threshold = parse_min_metric(f"{metric}={value}")
    except argparse.ArgumentTypeError:
        return
    assert math.isfinite(threshold) and 0.0 <= threshold <= 1.0
