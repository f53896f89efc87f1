"""NAME=VALUE flag values: parsing one (an argparse `type=`), collecting many into a dict that refuses repeats."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import TypeVar

from azure_dl.errors import SpecError

V = TypeVar("V")


def key_value(text: str) -> tuple[str, str]:
    """'NAME=VALUE' -> ('NAME', 'VALUE'); the value may be empty or hold '=' itself."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key.strip(), value


def pairs_to_dict(pairs: Iterable[tuple[str, V]], what: str) -> dict[str, V]:
    """The pairs as a dict; a name given twice is an error (`what` names the flag in it, e.g. 'tag')."""
    result: dict[str, V] = {}
    for key, value in pairs:
        if key in result:
            raise SpecError(f"{what} {key} is given twice")
        result[key] = value
    return result


def parse_min_metric(text: str) -> tuple[str, float]:
    """'macro_f1=0.8' -> ('macro_f1', 0.8), for the higher-is-better gate metrics only."""
    from training_scripts.model_folder import GATE_METRICS

    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. macro_f1=0.8), got {text!r}")
    if name not in GATE_METRICS:
        raise argparse.ArgumentTypeError(f"{name!r} is not one of the gate metrics {', '.join(GATE_METRICS)}")
    try:
        threshold = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--min-metric {name}: {value!r} is not a number") from None
    # Every gate metric is a fraction: NaN would let every model pass (value < NaN is False), 80 none.
    if not 0.0 <= threshold <= 1.0:  # also False for NaN
        raise argparse.ArgumentTypeError(
            f"--min-metric {name}: {value!r} is not between 0 and 1 (the metrics are fractions, e.g. {name}=0.8)"
        )
    return name, threshold
