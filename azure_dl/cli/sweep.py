"""`azure-dl sweep resnet|lstm|SCRIPT`: a hyperparameter sweep as an Azure ML sweep job - or its trials run one
after another on this machine (--local), or only rendered and planned (--dry-run).

Azure's rules are checked before anything is written: Bayesian sampling takes no early-termination policy and
only choice/uniform/quniform; grid sampling takes only choice. Locally, random and grid sampling are reproduced
with a seed (Bayesian falls back to random) and the best trial is read from each trial's metrics.json.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from azure_dl.cli._job_args import (
    add_job_arguments,
    add_mode_arguments,
    allow_script_args,
    job_options,
    plan_region,
    report_staging,
)
from azure_dl.errors import SpecError

if TYPE_CHECKING:
    from azure_dl.staging import Target
    from azure_dl.sweep_spec import SearchParam, SweepSpec


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="tune hyperparameters with an Azure ML sweep job (or locally / as a dry-run)",
        description=__doc__,
        usage="azure-dl sweep resnet|lstm|SCRIPT [options] [--dry-run | --local] [--out DIR] [-- SCRIPT FLAGS...]",
        epilog="everything after `--` is passed to every trial unchanged",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(parser)
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--sampling", choices=("random", "grid", "bayesian"), default="random", help="(default: random)")
    sweep.add_argument(
        "--search",
        action="append",
        default=[],
        metavar="NAME=KIND(ARGS)",
        help="a searched script flag, e.g. lr=loguniform(1e-5,1e-2) or batch_size=choice(16,32,64) (repeatable; "
        "NAME becomes --NAME with _ as -). Kinds: choice, uniform, loguniform, quniform, qloguniform, randint, "
        "normal, lognormal, qnormal, qlognormal. Default: the preset's search space",
    )
    sweep.add_argument("--metric", help="primary metric the script logs (default: the preset's, val_macro_f1)")
    sweep.add_argument("--goal", choices=("maximize", "minimize"), help="(default: the preset's, maximize)")
    sweep.add_argument(
        "--early-termination",
        choices=("none", "bandit", "median_stopping", "truncation"),
        help="(default: bandit; none with bayesian sampling, which allows no policy)",
    )
    sweep.add_argument("--slack-factor", type=float, help="bandit slack as a ratio (default: 0.1)")
    sweep.add_argument("--evaluation-interval", type=int, default=1, help="policy interval in logged epochs (1)")
    sweep.add_argument("--delay-evaluation", type=int, default=2, help="epochs before the policy applies (2)")
    sweep.add_argument("--truncation-percentage", type=int, default=20, help="truncation policy percentage (20)")
    sweep.add_argument("--max-trials", type=int, help="max total trials (default: the preset's, 8)")
    sweep.add_argument("--max-concurrent", type=int, help="max concurrent trials (default: the preset's, 2)")
    sweep.add_argument("--timeout-hours", type=float, help="sweep time limit (default: enough for every trial)")
    sweep.add_argument("--seed", type=int, help="random sampling seed (Azure and --local)")
    add_mode_arguments(parser, "sweep.yml")
    from azure_dl.workspace import add_workspace_arguments

    add_workspace_arguments(parser)
    allow_script_args(parser)
    parser.set_defaults(handler=handle)


# ------------------------------------------------------------------------------------------------------- building
def search_space(args: argparse.Namespace, target: Target) -> tuple[SearchParam, ...]:
    from azure_dl.sweep_spec import SearchParam

    texts = list(args.search)
    if not texts:
        if target.preset is None:
            raise SpecError("a sweep of your own script needs --search", hint="e.g. --search lr=loguniform(1e-5,1e-2)")
        texts = [f"{name}={expression}" for name, expression in target.preset.search_space.items()]
    return tuple(SearchParam.parse(text) for text in texts)


def sweep_factory(args: argparse.Namespace, target: Target, space: tuple[SearchParam, ...]) -> Any:
    """A function trial JobSpec -> SweepSpec with the flags' settings (validated on every call)."""
    from azure_dl.sweep_spec import EarlyTermination, SweepSpec

    preset = target.preset
    metric = args.metric or (preset.primary_metric if preset else None)
    if not metric:
        raise SpecError("a sweep of your own script needs --metric NAME (a metric the script logs)")
    policy = args.early_termination or ("none" if args.sampling == "bayesian" else "bandit")
    early = EarlyTermination(
        policy,
        evaluation_interval=args.evaluation_interval,
        delay_evaluation=args.delay_evaluation,
        slack_factor=args.slack_factor,
        truncation_percentage=args.truncation_percentage,
    )
    max_trials = args.max_trials if args.max_trials is not None else (preset.sweep_max_trials if preset else 8)
    default_concurrent = min(preset.sweep_max_concurrent if preset else 2, max(max_trials, 1))
    concurrent = args.max_concurrent if args.max_concurrent is not None else default_concurrent

    def make(trial: Any) -> SweepSpec:
        return SweepSpec(
            trial=trial,
            search_space=space,
            primary_metric=metric,
            goal=args.goal or (preset.goal if preset else "maximize"),
            sampling=args.sampling,
            early_termination=early,
            max_total_trials=max_trials,
            max_concurrent_trials=concurrent,
            timeout_hours=args.timeout_hours,
            seed=args.seed,
        )

    return make


# -------------------------------------------------------------------------------------------------------- handler
def handle(args: argparse.Namespace) -> int:
    from azure_dl.plan import plan_sweep, print_plan
    from azure_dl.render import render_sweep, write_yaml
    from azure_dl.staging import prepare, resolve_target

    region = plan_region(args)
    options = job_options(args)
    target = resolve_target(options.target, options.code)
    space = search_space(args, target)
    make = sweep_factory(args, target, space)
    searched = frozenset(param.flag for param in space)
    prepared = prepare(options, local=args.local, drop_flags=searched, also_validate=make)
    sweep = make(prepared.spec)
    yaml_path = write_yaml(render_sweep(sweep, prepared.out), prepared.out / "sweep.yml")
    report_staging(prepared, yaml_path)
    if args.local:
        from azure_dl.backends.local.sweep import run_local_sweep

        return run_local_sweep(sweep, out=prepared.out, code_dir=prepared.snapshot.path, nproc=args.nproc)
    plan = plan_sweep(sweep, region=region)
    print_plan(plan)
    if args.dry_run:
        print(
            f"dry run: nothing was created or billed. {yaml_path} is exactly what submitting without --dry-run sends."
        )
        return 0
    from azure_dl.backends.azureml.jobs import submit_job_yaml

    # plan.needs: the cluster holds every concurrent trial's nodes at once (see plan.plan_sweep).
    submitted = submit_job_yaml(
        args, yaml_path, needs=plan.needs, ensure_compute=args.ensure_compute, stream=args.stream
    )
    if args.stream:
        from azure_dl.backends.azureml.jobs import client_for
        from azure_dl.backends.azureml.sweeps import report_sweep

        print(f"sweep {submitted.name}: {submitted.status}")
        best = report_sweep(client_for(args), submitted.name)
        return 0 if submitted.status.lower() == "completed" and best is not None else 1
    return 0
