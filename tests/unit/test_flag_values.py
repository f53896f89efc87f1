"""NAME=VALUE flags: one parser for a value, one collector that refuses a name given twice (submit, deploy,
register share them)."""

from __future__ import annotations

import argparse

import pytest

from azure_dl.errors import SpecError
from azure_dl.flag_values import key_value, pairs_to_dict, parse_min_metric


def test_key_value_keeps_the_value_as_given() -> None:
    assert key_value(" A =b=c") == ("A", "b=c")
    assert key_value("EMPTY=") == ("EMPTY", "")
    for bad in ("NOVALUE", "=x", " =x"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected NAME=VALUE"):
            key_value(bad)


def test_pairs_to_dict_names_the_repeated_flag() -> None:
    assert pairs_to_dict([("a", "1"), ("b", "2")], "tag") == {"a": "1", "b": "2"}
    with pytest.raises(SpecError, match="environment variable A is given twice"):
        pairs_to_dict([("A", "1"), ("A", "2")], "environment variable")
    with pytest.raises(SpecError, match="--min-metric macro_f1 is given twice"):
        pairs_to_dict([parse_min_metric("macro_f1=0.8"), parse_min_metric("macro_f1=0.9")], "--min-metric")


def test_min_metric_takes_gate_metrics_with_numbers_only() -> None:
    assert parse_min_metric("macro_f1=0.8") == ("macro_f1", 0.8)
    with pytest.raises(argparse.ArgumentTypeError, match="not one of the gate metrics"):
        parse_min_metric("loss=0.1")
    with pytest.raises(argparse.ArgumentTypeError, match="is not a number"):
        parse_min_metric("macro_f1=high")
