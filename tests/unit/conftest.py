"""Hypothesis profiles for the property-based tests (tests/unit/test_fuzz_*.py).

`suite` (the default): 200 examples per property, derandomized so that the suite gives the same verdict on every
run and machine. `fuzz` (HYPOTHESIS_PROFILE=fuzz, what `make fuzz` sets): 10,000 random examples per property.
No deadline in either: the shared CI cores make per-example timings noisy, and the suite's time limit guards speed.
"""

from __future__ import annotations

import os

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a dev dependency; without it the fuzz tests skip themselves
    pass
else:
    # The autouse fixtures (an MLflow store, reset RNGs) are per test, not per example, which is what is wanted.
    _common = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}
    settings.register_profile("suite", max_examples=200, derandomize=True, database=None, **_common)
    settings.register_profile("fuzz", max_examples=10_000, **_common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))
