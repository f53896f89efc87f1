"""A sweep job's trials: its REST search space and sampling algorithm turned into one parameter set per trial.

The wire form is Azure ML's (the SDK's `_to_rest_object`, and the recorded sweep PUT in
tests/fixtures/recordings/sweep_job_submit.json): `{"lr": ["uniform", [0.001, 0.1]], "bs": ["choice", [[16, 32]]]}`,
with log-scale bounds given as natural logarithms, as Azure ML defines them. Random sampling draws from a seeded
generator (the sweep's `seed`, else one derived from its name, so a restart re-derives the same trials); grid
sampling walks every combination of `choice` values in order. Azure's Bayesian sampler is a service-side model the
local service does not have: it samples Bayesian sweeps at random and says so in the sweep's log.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from typing import Any

from azure_dl.workspace_service.http import ApiError

# Distribution -> the number of arguments Azure ML's REST form takes after the name.
_ARITY = {
    "choice": 1,
    "randint": 1,
    "uniform": 2,
    "loguniform": 2,
    "normal": 2,
    "lognormal": 2,
    "quniform": 3,
    "qloguniform": 3,
    "qnormal": 3,
    "qlognormal": 3,
}
SAMPLING_TYPES = ("Random", "Grid", "Bayesian")


def _bad(name: str, reason: str) -> ApiError:
    return ApiError(400, "UserError", f"search space parameter '{name}': {reason}")


def check_search_space(space: Any) -> dict[str, tuple[str, list[Any]]]:
    """{name: (distribution, arguments)}, or a 400 naming the parameter that is not in Azure ML's form."""
    if not isinstance(space, dict) or not space:
        raise ApiError(400, "UserError", "a sweep job needs a non-empty searchSpace")
    checked: dict[str, tuple[str, list[Any]]] = {}
    for name, entry in space.items():
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
            raise _bad(name, f"expected [distribution, [arguments]], got {entry!r}")
        kind, arguments = str(entry[0]).lower(), entry[1]
        if kind not in _ARITY:
            raise _bad(name, f"unknown distribution {entry[0]!r} (Azure ML offers {', '.join(_ARITY)})")
        if len(arguments) != _ARITY[kind]:
            raise _bad(name, f"{kind} takes {_ARITY[kind]} argument(s), got {len(arguments)}")
        if kind == "choice" and not (isinstance(arguments[0], list) and arguments[0]):
            raise _bad(name, "choice needs a non-empty list of values")
        if kind != "choice" and not all(isinstance(value, int | float) for value in arguments):
            raise _bad(name, f"{kind} takes numbers, got {arguments!r}")
        if kind == "randint" and arguments[0] < 1:
            raise _bad(name, f"randint needs an upper bound >= 1, got {arguments[0]}")
        checked[name] = (kind, list(arguments))
    return checked


def _draw(kind: str, arguments: list[Any], rng: random.Random) -> Any:
    if kind == "choice":
        return rng.choice(arguments[0])
    if kind == "randint":
        return rng.randrange(int(arguments[0]))
    if kind.endswith("normal"):
        value = rng.gauss(float(arguments[0]), float(arguments[1]))
    else:
        value = rng.uniform(float(arguments[0]), float(arguments[1]))
    if "log" in kind:  # Azure ML: the bounds (or mu, sigma) are of the natural logarithm of the value
        value = math.exp(value)
    if kind.startswith("q"):
        step = float(arguments[2])
        value = round(value / step) * step
        return int(value) if step.is_integer() else value
    return value


def _seed(sweep_name: str, sampling: dict[str, Any]) -> int:
    if isinstance(sampling.get("seed"), int):
        return int(sampling["seed"])
    return int.from_bytes(hashlib.sha256(sweep_name.encode()).digest()[:4], "big")


def trial_parameters(
    sweep_name: str, space: Any, sampling: Any, max_total_trials: int
) -> tuple[list[dict[str, Any]], str | None]:
    """The parameters of every trial the sweep will run, and a note for the log when sampling is approximated."""
    checked = check_search_space(space)
    sampling = sampling if isinstance(sampling, dict) else {}
    kind = str(sampling.get("samplingAlgorithmType") or "Random").capitalize()
    if kind not in SAMPLING_TYPES:
        raise ApiError(400, "UserError", f"unknown samplingAlgorithmType {kind!r}: use {', '.join(SAMPLING_TYPES)}")
    if max_total_trials < 1:
        raise ApiError(400, "UserError", f"limits.maxTotalTrials must be >= 1, got {max_total_trials}")
    if kind == "Grid":
        not_choice = [name for name, (dist, _) in checked.items() if dist != "choice"]
        if not_choice:
            raise ApiError(
                400, "UserError", f"grid sampling takes only choice parameters; {', '.join(not_choice)} are not"
            )
        names = list(checked)
        combos = itertools.product(*(checked[name][1][0] for name in names))
        return [dict(zip(names, combo)) for combo in itertools.islice(combos, max_total_trials)], None
    rng = random.Random(_seed(sweep_name, sampling))
    trials = [{name: _draw(dist, args, rng) for name, (dist, args) in checked.items()} for _ in range(max_total_trials)]
    note = None
    if kind == "Bayesian":
        note = "Bayesian sampling is a model in Azure ML's service; the local service samples these trials at random"
    return trials, note


def substitute(command: str, parameters: dict[str, Any]) -> str:
    """`${{search_space.NAME}}` in a trial's command replaced by the trial's value, as Azure ML does."""
    for name, value in parameters.items():
        command = command.replace("${{search_space." + name + "}}", str(value))
    return command
