"""The local sweep runner: Azure ML's random and grid sampling reproduced with a seed, trials run one after
another on this machine, the best trial read from each trial's metrics.json.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure_dl.sweep_spec import SearchParam, SweepSpec


def sample_value(param: SearchParam, rng: random.Random) -> Any:
    """One draw from `param`, as Azure ML defines each distribution (log-scale ones via the natural log)."""
    kind = param.kind
    if kind == "choice":
        return rng.choice(param.values)
    if kind == "randint":
        return rng.randrange(int(param.upper or 1))
    if kind in ("normal", "lognormal", "qnormal", "qlognormal"):
        value = rng.gauss(float(param.mu or 0.0), float(param.sigma or 1.0))
        value = math.exp(value) if "log" in kind else value
    else:
        low, high = float(param.low or 0.0), float(param.high or 0.0)
        value = math.exp(rng.uniform(math.log(low), math.log(high))) if "log" in kind else rng.uniform(low, high)
    if kind.startswith("q"):
        step = float(param.q or 1.0)
        value = round(value / step) * step
        return int(value) if step.is_integer() else value
    return value


def local_trials(sweep: SweepSpec, seed: int) -> list[dict[SearchParam, Any]]:
    """The hyperparameters of each trial: every grid combination (up to max trials) or seeded random draws."""
    params = sweep.search_space
    if sweep.sampling == "grid":
        combos = itertools.product(*(param.values for param in params))
        return [dict(zip(params, combo)) for combo in itertools.islice(combos, sweep.max_total_trials)]
    rng = random.Random(seed)
    return [{param: sample_value(param, rng) for param in params} for _ in range(sweep.max_total_trials)]


def read_metric(metrics_path: Path, name: str) -> float | None:
    """`name` from a training output's metrics.json: val_X -> validation.X, test_X -> test.X, else top level."""
    if not metrics_path.is_file():
        return None
    data = json.loads(metrics_path.read_text(encoding="utf-8"))
    candidates: list[Any] = [data.get(name)]
    for prefix, section in (("val_", "validation"), ("test_", "test")):
        if name.startswith(prefix) and isinstance(data.get(section), dict):
            candidates.append(data[section].get(name[len(prefix) :]))
    if isinstance(data.get("validation"), dict):
        candidates.append(data["validation"].get(name))
    for value in candidates:
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return None


def run_local_sweep(sweep: SweepSpec, *, out: Path, code_dir: Path, nproc: int | None) -> int:
    """Run every trial one after another under OUT/trials/, write OUT/sweep_results.json, print the table.

    Returns 0 when a trial produced the primary metric, the interrupted trial's exit code after Ctrl-C/SIGTERM,
    else 1.
    """
    from azure_dl.backends.local import jobs
    from azure_dl.console import note, print_table

    if sweep.sampling == "bayesian":
        note("note: Bayesian sampling needs Azure ML's service; --local samples at random instead")
    if sweep.early_termination.policy != "none":
        note(f"note: --local runs every trial to the end ({sweep.early_termination.policy} applies in Azure ML)")
    seed = sweep.seed if sweep.seed is not None else 0
    trials = local_trials(sweep, seed)
    results: list[dict[str, Any]] = []
    stopped_code = 0
    for index, values in enumerate(trials):
        output = out / "trials" / f"trial-{index:03d}"
        output.mkdir(parents=True, exist_ok=True)
        shown = ", ".join(f"{param.name}={value}" for param, value in values.items())
        note(f"trial {index + 1}/{len(trials)}: {shown}")
        result = jobs.run_locally(
            sweep.trial,
            cwd=code_dir,
            output=output,
            nproc=nproc,
            log_path=output / "train.log",
            extra=values,
        )
        code = int(getattr(result, "returncode", 1))
        interrupted = bool(getattr(result, "interrupted", False))
        metric = read_metric(output / "metrics.json", sweep.primary_metric) if code == 0 else None
        status = "ok" if code == 0 and metric is not None else (f"exit {code}" if code else "no metric")
        results.append(
            {
                "trial": index,
                "params": {param.name: value for param, value in values.items()},
                "metric": metric,
                "status": "interrupted" if interrupted else status,
                "output": str(output),
            }
        )
        if interrupted:  # Ctrl-C or SIGTERM: stop the sweep, not just this trial
            note(f"interrupted: {len(trials) - index - 1} trial(s) not run; results so far below")
            stopped_code = code or 130
            break
    scored = [row for row in results if row["metric"] is not None]
    best = (max if sweep.goal == "maximize" else min)(scored, key=lambda row: row["metric"]) if scored else None
    summary = {"primary_metric": sweep.primary_metric, "goal": sweep.goal, "best": best, "trials": results}
    (out / "sweep_results.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    names = [param.name for param in sweep.search_space]
    rows = [
        [
            ("* " if row is best else "") + str(row["trial"]),
            *(str(row["params"][name]) for name in names),
            f"{row['metric']:.4f}" if row["metric"] is not None else "-",
            row["status"],
        ]
        for row in results
    ]
    print_table(
        f"Local sweep ({sweep.goal} {sweep.primary_metric})", ["trial", *names, sweep.primary_metric, "status"], rows
    )
    if best is None:
        print(f"error: no trial produced {sweep.primary_metric} (logs: {out / 'trials'})", file=sys.stderr)
        return stopped_code or 1
    print(
        f"best: trial {best['trial']} {sweep.primary_metric}={best['metric']:.4f} {best['params']} -> {best['output']}"
    )
    return stopped_code
