"""A validated sweep: a trial JobSpec with a search space and Azure ML's sweep settings (sampling, objective,
early termination, limits), enforcing the service's rules that its SDK loaders do not. Invalid values raise
`SpecError` naming the value and what to do instead."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from azure_dl.errors import SpecError
from azure_dl.spec import IDENTIFIER, JobSpec, check_flag

SAMPLING_ALGORITHMS = ("random", "grid", "bayesian")
GOALS = ("maximize", "minimize")
DISTRIBUTIONS = (
    "choice",
    "uniform",
    "loguniform",
    "quniform",
    "qloguniform",
    "randint",
    "normal",
    "lognormal",
    "qnormal",
    "qlognormal",
)
BAYESIAN_DISTRIBUTIONS = ("choice", "uniform", "quniform")
POLICIES = ("none", "bandit", "median_stopping", "truncation_selection")
_EXPRESSION = re.compile(r"^\s*(?P<kind>[a-z]+)\s*\((?P<args>.*)\)\s*$")


def _number(text: str) -> int | float | str:
    text = text.strip().strip("'\"")
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


@dataclass(frozen=True)
class SearchParam:
    """One searched hyperparameter, passed to the script as `flag value`.

    `loguniform(low, high)` / `qloguniform(low, high, q)` take the range of the value itself; Azure ML wants the
    natural logarithms of the bounds, which rendering computes. `normal/lognormal(mu, sigma)` follow Azure's
    definition (lognormal: exp of a normal with that mu and sigma).
    """

    name: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    q: float | None = None
    mu: float | None = None
    sigma: float | None = None
    upper: int | None = None
    flag: str = ""

    def __post_init__(self) -> None:
        if not IDENTIFIER.match(self.name):
            raise SpecError(f"search parameter name {self.name!r} is not valid", hint="use e.g. lr or batch_size")
        if not self.flag:
            object.__setattr__(self, "flag", "--" + self.name.replace("_", "-"))
        check_flag(self.flag)
        if self.kind not in DISTRIBUTIONS:
            raise SpecError(
                f"unknown distribution {self.kind!r} for {self.name}", hint=f"use {', '.join(DISTRIBUTIONS)}"
            )
        if self.kind == "choice":
            if not self.values:
                raise SpecError(f"choice() for {self.name} needs at least one value")
        elif self.kind == "randint":
            if self.upper is None or self.upper < 1:
                raise SpecError(f"randint(upper) for {self.name} needs an integer upper bound >= 1")
        elif self.kind in ("normal", "lognormal", "qnormal", "qlognormal"):
            if self.mu is None or self.sigma is None or self.sigma <= 0:
                raise SpecError(f"{self.kind}(mu, sigma) for {self.name} needs sigma > 0")
        else:
            if self.low is None or self.high is None or not self.low < self.high:
                raise SpecError(f"{self.kind}(low, high) for {self.name} needs low < high, got {self.low}, {self.high}")
            if self.kind in ("loguniform", "qloguniform") and self.low <= 0:
                raise SpecError(f"{self.kind} for {self.name} needs low > 0, got {self.low}")
        if self.kind.startswith("q") and (self.q is None or self.q <= 0):
            raise SpecError(f"{self.kind} for {self.name} needs a step q > 0")

    @classmethod
    def parse(cls, text: str) -> SearchParam:
        """`name=kind(args)`, e.g. `lr=loguniform(1e-5, 1e-2)`, `batch_size=choice(16, 32)`, `seed=randint(100)`."""
        name, sep, expression = text.partition("=")
        match = _EXPRESSION.match(expression)
        if not sep or not match:
            raise SpecError(
                f"cannot read search parameter {text!r}",
                hint="use NAME=KIND(ARGS), e.g. lr=loguniform(1e-5,1e-2) or batch_size=choice(16,32,64)",
            )
        kind = match["kind"]
        args = [_number(part) for part in match["args"].split(",") if part.strip()]
        name = name.strip()
        numeric = [a for a in args if isinstance(a, int | float)]
        if kind != "choice" and len(numeric) != len(args):
            raise SpecError(f"{kind}() for {name} takes numbers, got {match['args']!r}")
        expected = {"uniform": 2, "loguniform": 2, "quniform": 3, "qloguniform": 3, "randint": 1}
        expected |= {"normal": 2, "lognormal": 2, "qnormal": 3, "qlognormal": 3}
        if kind in expected and len(args) != expected[kind]:
            raise SpecError(f"{kind}() for {name} takes {expected[kind]} numbers, got {len(args)}")
        if kind == "choice":
            return cls(name=name, kind=kind, values=tuple(args))
        if kind == "randint":
            return cls(name=name, kind=kind, upper=int(numeric[0]))
        if kind in ("normal", "lognormal", "qnormal", "qlognormal"):
            return cls(
                name=name, kind=kind, mu=numeric[0], sigma=numeric[1], q=numeric[2] if len(numeric) > 2 else None
            )
        return cls(name=name, kind=kind, low=numeric[0], high=numeric[1], q=numeric[2] if len(numeric) > 2 else None)


@dataclass(frozen=True)
class EarlyTermination:
    """Azure ML early-termination policy; `policy="none"` disables it."""

    policy: str = "none"
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    slack_factor: float | None = None
    slack_amount: float | None = None
    truncation_percentage: int = 20

    def __post_init__(self) -> None:
        aliases = {"truncation": "truncation_selection", "median": "median_stopping"}
        object.__setattr__(self, "policy", aliases.get(self.policy, self.policy))
        if self.policy not in POLICIES:
            raise SpecError(f"unknown early termination policy {self.policy!r}", hint=f"use {', '.join(POLICIES)}")
        if self.evaluation_interval < 1 or self.delay_evaluation < 0:
            raise SpecError("early termination needs evaluation_interval >= 1 and delay_evaluation >= 0")
        if self.policy == "bandit":
            if self.slack_factor is None and self.slack_amount is None:
                object.__setattr__(self, "slack_factor", 0.1)
            elif (self.slack_factor is None) == (self.slack_amount is None):
                raise SpecError("a bandit policy takes slack_factor or slack_amount, not both")
            slack = self.slack_factor if self.slack_factor is not None else self.slack_amount
            if slack is None or slack <= 0:
                raise SpecError(f"a bandit policy needs a positive slack, got {slack}")
        if self.policy == "truncation_selection" and not 1 <= self.truncation_percentage <= 99:
            raise SpecError(f"truncation percentage must be 1-99, got {self.truncation_percentage}")


@dataclass(frozen=True)
class SweepSpec:
    """A hyperparameter sweep over a trial job, checked against the rules Azure ML's service enforces."""

    trial: JobSpec
    search_space: tuple[SearchParam, ...]
    primary_metric: str
    goal: str = "maximize"
    sampling: str = "random"
    early_termination: EarlyTermination = field(default_factory=EarlyTermination)
    max_total_trials: int = 8
    max_concurrent_trials: int = 2
    timeout_hours: float | None = None  # None: enough for every trial at the trial's max_hours
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.search_space:
            raise SpecError(
                "a sweep needs at least one search parameter", hint="e.g. --search lr=loguniform(1e-5,1e-2)"
            )
        names = [param.name for param in self.search_space]
        if len(set(names)) != len(names):
            raise SpecError(f"search parameters repeat a name: {', '.join(names)}")
        for param in self.search_space:
            if param.flag in self.trial.args or any(a.startswith(param.flag + "=") for a in self.trial.args):
                raise SpecError(
                    f"{param.flag} is both fixed in the script flags and searched",
                    hint=f"drop {param.flag} from the flags after --, or drop {param.name} from the search space",
                )
        if self.sampling not in SAMPLING_ALGORITHMS:
            raise SpecError(f"unknown sampling {self.sampling!r}", hint=f"use {', '.join(SAMPLING_ALGORITHMS)}")
        if self.goal not in GOALS:
            raise SpecError(f"goal {self.goal!r} is not valid", hint="use maximize or minimize")
        if not self.primary_metric.strip():
            raise SpecError("a sweep needs a primary metric", hint="e.g. --metric val_macro_f1 --goal maximize")
        self._check_sampling_rules()
        if self.max_total_trials < 1:
            raise SpecError(f"max total trials must be at least 1, got {self.max_total_trials}")
        if not 1 <= self.max_concurrent_trials <= self.max_total_trials:
            raise SpecError(
                f"max concurrent trials must be between 1 and max total trials ({self.max_total_trials}), "
                f"got {self.max_concurrent_trials}"
            )
        if self.timeout_hours is not None and (not math.isfinite(self.timeout_hours) or self.timeout_hours <= 0):
            raise SpecError(f"sweep timeout must be a positive number of hours, got {self.timeout_hours}")

    def _check_sampling_rules(self) -> None:
        # The SDK's loaders accept these combinations; the service rejects them at submission.
        if self.sampling == "bayesian":
            if self.early_termination.policy != "none":
                raise SpecError(
                    f"Bayesian sampling does not support early termination (got {self.early_termination.policy})",
                    hint="use --early-termination none with Bayesian sampling, or --sampling random",
                )
            for param in self.search_space:
                if param.kind not in BAYESIAN_DISTRIBUTIONS:
                    raise SpecError(
                        f"Bayesian sampling supports only choice, uniform and quniform; {param.name} is {param.kind}",
                        hint=f"use e.g. {param.name}=uniform(...) or --sampling random",
                    )
        if self.sampling == "grid":
            for param in self.search_space:
                if param.kind != "choice":
                    raise SpecError(
                        f"grid sampling supports only choice; {param.name} is {param.kind}",
                        hint=f"use {param.name}=choice(v1, v2, ...) or --sampling random",
                    )

    @property
    def effective_timeout_hours(self) -> float:
        if self.timeout_hours is not None:
            return self.timeout_hours
        waves = math.ceil(self.max_total_trials / self.max_concurrent_trials)
        return waves * self.trial.max_hours

    @property
    def grid_size(self) -> int | None:
        if self.sampling != "grid":
            return None
        return math.prod(len(param.values) for param in self.search_space)
