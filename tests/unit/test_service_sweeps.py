"""The local service's sweep sampling and early-termination policies, on Azure ML's REST forms."""

from __future__ import annotations

import math

import pytest

from azure_dl.workspace_service.early_termination import check_policy, to_cancel
from azure_dl.workspace_service.http import ApiError
from azure_dl.workspace_service.sweep_sampling import substitute, trial_parameters

# The recorded sweep PUT's search space (test_sweep_job_submit_minimal).
RECORDED_SPACE = {
    "lr": ["uniform", [0.001, 0.1]],
    "conv_size": ["choice", [[2, 5, 7]]],
    "dropout_rate": ["uniform", [0.1, 0.5]],
}


def test_random_trials_are_in_range_and_repeatable() -> None:
    trials, note = trial_parameters("sweep-a", RECORDED_SPACE, {"samplingAlgorithmType": "Random"}, 20)
    again, _ = trial_parameters("sweep-a", RECORDED_SPACE, {"samplingAlgorithmType": "Random"}, 20)
    assert note is None and trials == again and len(trials) == 20
    assert all(0.001 <= t["lr"] <= 0.1 and t["conv_size"] in (2, 5, 7) for t in trials)
    assert len({t["lr"] for t in trials}) == 20  # draws, not one value repeated
    other, _ = trial_parameters("sweep-b", RECORDED_SPACE, {"samplingAlgorithmType": "Random"}, 20)
    assert other != trials


def test_log_scale_bounds_are_natural_logarithms() -> None:
    space = {"lr": ["loguniform", [math.log(1e-4), math.log(1e-2)]], "units": ["qloguniform", [0.0, 5.0, 1]]}
    trials, _ = trial_parameters("s", space, {"samplingAlgorithmType": "Random", "seed": 3}, 50)
    assert all(1e-4 <= t["lr"] <= 1e-2 for t in trials)
    assert all(isinstance(t["units"], int) and 1 <= t["units"] <= 149 for t in trials)


def test_grid_walks_every_combination_up_to_the_limit() -> None:
    space = {"a": ["choice", [[1, 2]]], "b": ["choice", [["x", "y", "z"]]]}
    trials, _ = trial_parameters("g", space, {"samplingAlgorithmType": "Grid"}, 4)
    assert trials == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"}, {"a": 2, "b": "x"}]
    with pytest.raises(ApiError, match="grid sampling takes only choice parameters; lr"):
        trial_parameters("g", {"lr": ["uniform", [0, 1]]}, {"samplingAlgorithmType": "Grid"}, 4)


def test_bayesian_is_sampled_at_random_and_says_so() -> None:
    trials, note = trial_parameters("b", RECORDED_SPACE, {"samplingAlgorithmType": "Bayesian"}, 3)
    assert len(trials) == 3 and note is not None and "at random" in note


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"lr": ["gamma", [1, 2]]}, "unknown distribution 'gamma'"),
        ({"lr": ["uniform", [1]]}, "uniform takes 2 argument"),
        ({"lr": ["choice", [[]]]}, "non-empty list"),
        ({"lr": "uniform(0, 1)"}, "expected \\[distribution"),
        ({}, "non-empty searchSpace"),
    ],
)
def test_a_bad_search_space_is_a_400_naming_the_parameter(space: object, message: str) -> None:
    with pytest.raises(ApiError, match=message) as raised:
        trial_parameters("s", space, {}, 2)
    assert raised.value.status == 400


def test_substitute_replaces_search_space_references() -> None:
    command = "python t.py --lr ${{search_space.lr}} --bs ${{search_space.bs}} --in ${{inputs.data}}"
    assert substitute(command, {"lr": 0.01, "bs": 32}) == "python t.py --lr 0.01 --bs 32 --in ${{inputs.data}}"


def test_bandit_stops_a_trial_outside_the_slack_of_the_best() -> None:
    policy = check_policy({"policyType": "Bandit", "slackFactor": 0.1})
    histories = {"t0": [0.9, 0.92], "t1": [0.5, 0.85], "t2": [0.88, 0.91]}
    evaluated: dict[str, int] = {}
    # Interval 1: best 0.9, bound 0.9/1.1 = 0.818; t1 (0.5) is out.
    assert to_cancel(policy, "maximize", histories, {"t0", "t1", "t2"}, evaluated) == {"t1"}
    # Each interval is judged once: nothing new is cancelled without new reports.
    assert to_cancel(policy, "maximize", histories, {"t0", "t2"}, evaluated) == set()


def test_bandit_minimize_with_slack_amount_and_delay() -> None:
    policy = check_policy({"policyType": "Bandit", "slackAmount": 0.2, "delayEvaluation": 1})
    histories = {"a": [5.0, 1.0], "b": [1.0, 1.3]}
    assert to_cancel(policy, "minimize", histories, {"a", "b"}, {}) == {"b"}  # 1.3 > 1.0 + 0.2; interval 1 skipped


def test_median_stopping_and_truncation_selection() -> None:
    median = check_policy({"policyType": "MedianStopping"})
    histories = {"a": [0.9], "b": [0.8], "c": [0.2]}
    assert to_cancel(median, "maximize", histories, {"a", "b", "c"}, {}) == {"c"}
    truncation = check_policy({"policyType": "TruncationSelection", "truncationPercentage": 34})
    four = {"a": [4.0], "b": [3.0], "c": [2.0], "d": [1.0]}
    assert to_cancel(truncation, "maximize", four, {"a", "b", "c", "d"}, {}) == {"d"}
    assert to_cancel(truncation, "minimize", four, {"a", "b", "c", "d"}, {}) == {"a"}


def test_no_policy_cancels_nothing_and_bad_policies_are_400s() -> None:
    assert to_cancel(None, "maximize", {"a": [0.0]}, {"a"}, {}) == set()
    for policy, message in (
        ({"policyType": "Sometimes"}, "not one of"),
        ({"policyType": "Bandit"}, "slackFactor or slackAmount"),
        ({"policyType": "TruncationSelection", "truncationPercentage": 0}, "1-99"),
        ({"policyType": "MedianStopping", "evaluationInterval": 0}, "evaluationInterval >= 1"),
    ):
        with pytest.raises(ApiError, match=message):
            check_policy(policy)
