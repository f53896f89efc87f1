"""Azure ML's early-termination policies, applied to the primary-metric histories of a sweep's running trials.

A policy is the REST `earlyTermination` object (`policyType` Bandit, MedianStopping or TruncationSelection, with
`evaluationInterval`, `delayEvaluation` and the policy's own fields). An *interval* is one report of the primary
metric (the n-th value a trial logged): the policy is applied at every `evaluationInterval`-th report after the
first `delayEvaluation` ones, as Azure ML documents (learn.microsoft.com, "Hyperparameter tuning a model (v2)",
Early termination):

- Bandit: a trial is cancelled when its metric at an evaluation interval is not within the slack of the best
  trial's at that interval (`slackFactor`: a ratio; `slackAmount`: an absolute difference).
- MedianStopping: a trial is cancelled when its best value so far is worse than the median of the running
  averages of all trials at that interval.
- TruncationSelection: the worst `truncationPercentage` percent of trials at an interval are cancelled.

The functions here are pure; the sweep runner feeds them the histories and cancels what they return.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from azure_dl.workspace_service.http import ApiError

POLICY_TYPES = ("Bandit", "MedianStopping", "TruncationSelection")


def check_policy(policy: Any) -> dict[str, Any] | None:
    """The policy with its defaults, None for no policy, or a 400 naming what is wrong."""
    if policy is None:
        return None
    if not isinstance(policy, dict) or policy.get("policyType") not in POLICY_TYPES:
        kind = policy.get("policyType") if isinstance(policy, dict) else policy
        allowed = ", ".join(POLICY_TYPES)
        raise ApiError(400, "UserError", f"earlyTermination.policyType {kind!r} is not one of {allowed}")
    checked = {"evaluationInterval": 1, "delayEvaluation": 0, **policy}
    if int(checked["evaluationInterval"]) < 1 or int(checked["delayEvaluation"]) < 0:
        raise ApiError(400, "UserError", "earlyTermination needs evaluationInterval >= 1 and delayEvaluation >= 0")
    if checked["policyType"] == "Bandit":
        factor, amount = checked.get("slackFactor"), checked.get("slackAmount")
        if not factor and not amount:
            raise ApiError(400, "UserError", "a Bandit policy needs slackFactor or slackAmount > 0")
    if checked["policyType"] == "TruncationSelection":
        percentage = int(checked.get("truncationPercentage") or 0)
        if not 1 <= percentage <= 99:
            raise ApiError(400, "UserError", f"truncationPercentage must be 1-99, got {percentage}")
    return checked


def _is_evaluation(policy: dict[str, Any], interval: int) -> bool:
    """Interval n (1-based) is evaluated when past the delay and a multiple of the evaluation interval."""
    return interval > int(policy["delayEvaluation"]) and interval % int(policy["evaluationInterval"]) == 0


def _better(goal: str, a: float, b: float) -> bool:
    return a > b if goal == "maximize" else a < b


def to_cancel(
    policy: dict[str, Any] | None,
    goal: str,
    histories: Mapping[str, Sequence[float]],
    running: set[str],
    evaluated: dict[str, int],
) -> set[str]:
    """The running trials the policy stops now.

    `histories` holds every trial's primary-metric values in report order (finished trials too: they set the bar);
    `evaluated` remembers, per trial, the last interval already judged, so each interval is judged once.
    """
    if policy is None:
        return set()
    goal = goal.lower()
    cancel: set[str] = set()
    for trial in sorted(running):
        values = [v for v in histories.get(trial, ()) if isinstance(v, int | float) and math.isfinite(v)]
        for interval in range(evaluated.get(trial, 0) + 1, len(values) + 1):
            evaluated[trial] = interval
            if not _is_evaluation(policy, interval):
                continue
            if _stops(policy, goal, trial, interval, histories):
                cancel.add(trial)
                break
    return cancel


def _at(histories: Mapping[str, Sequence[float]], interval: int) -> dict[str, Sequence[float]]:
    """The trials that have reported at least `interval` values, cut to their first `interval` values."""
    return {name: values[:interval] for name, values in histories.items() if len(values) >= interval}


def _stops(
    policy: dict[str, Any], goal: str, trial: str, interval: int, histories: Mapping[str, Sequence[float]]
) -> bool:
    peers = _at(histories, interval)
    mine = peers[trial][-1]
    kind = policy["policyType"]
    if kind == "Bandit":
        best = max(v[-1] for v in peers.values()) if goal == "maximize" else min(v[-1] for v in peers.values())
        if policy.get("slackAmount"):
            bound = best - float(policy["slackAmount"]) if goal == "maximize" else best + float(policy["slackAmount"])
        else:
            factor = float(policy["slackFactor"])
            bound = best / (1 + factor) if goal == "maximize" else best * (1 + factor)
        return _better(goal, bound, mine)
    if kind == "MedianStopping":
        if len(peers) < 2:
            return False
        median = statistics.median(sum(v) / len(v) for v in peers.values())
        best_so_far = max(peers[trial]) if goal == "maximize" else min(peers[trial])
        return _better(goal, median, best_so_far)
    # TruncationSelection: rank the trials at this interval; the worst percentage are cut.
    if len(peers) < 2:
        return False
    ranked = sorted(peers, key=lambda name: peers[name][-1], reverse=(goal == "maximize"))
    cut = math.floor(len(ranked) * int(policy["truncationPercentage"]) / 100)
    return cut > 0 and trial in ranked[len(ranked) - cut :]
