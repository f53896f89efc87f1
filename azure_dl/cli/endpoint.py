"""`azure-dl endpoint show|traffic|rollback|delete|metrics`: inspect a managed online endpoint, move or restore its
traffic split, delete a deployment or the whole endpoint (which stops its billing), and read its Azure Monitor
metrics. Keys are never shown."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from azure_dl.cli._shared import show_help, workspace_client
from azure_dl.workspace import add_workspace_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "endpoint",
        help="show a managed online endpoint, move/roll back its traffic, delete it or a deployment",
        description=__doc__,
    )
    actions = parser.add_subparsers(dest="endpoint_action", metavar="ACTION")

    show = actions.add_parser("show", help="deployments, traffic, mirror traffic and scoring URI (never keys)")
    show.add_argument("name", metavar="E", help="endpoint name")
    show.set_defaults(handler=_show)

    traffic = actions.add_parser(
        "traffic",
        help="set the traffic split (the split it replaces is recorded for rollback)",
        description="Percentages must sum to 100 over the endpoint's deployments (unnamed ones get 0).",
    )
    traffic.add_argument("name", metavar="E", help="endpoint name")
    traffic.add_argument("split", metavar="D=P,...", nargs="?", help="e.g. blue=90,green=10 (default: keep)")
    traffic.add_argument(
        "--mirror",
        metavar="D=P",
        help="copy P%% (<= 50) of live requests to D, a deployment at 0%%; `none` stops mirroring (default: keep)",
    )
    traffic.set_defaults(handler=_traffic)

    rollback = actions.add_parser("rollback", help="restore the traffic split from before the last change")
    rollback.add_argument("name", metavar="E", help="endpoint name")
    rollback.set_defaults(handler=_rollback)

    delete = actions.add_parser("delete", help="delete a deployment (--deployment) or the whole endpoint")
    delete.add_argument("name", metavar="E", help="endpoint name")
    delete.add_argument("--deployment", metavar="D", help="delete only this deployment (it must take no traffic)")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation (default: ask)")
    delete.set_defaults(handler=_delete)

    metrics = actions.add_parser(
        "metrics",
        help="Azure Monitor platform metrics: requests, latency percentiles, status classes, CPU, memory, instances",
        description=(
            "Reads the endpoint's and its deployments' platform metrics (names as Azure Monitor lists them, e.g. "
            "RequestsPerMinute, RequestLatency_P99, CpuUtilizationPercentage) over --since and prints them; a "
            "metric without samples shows 0."
        ),
    )
    metrics.add_argument("name", metavar="E", help="endpoint name")
    metrics.add_argument("--deployment", metavar="D", help="only this deployment's requests and resources")
    metrics.add_argument("--since", default="1h", metavar="WINDOW", help="how far back: 30m, 1h, 2d (default: 1h)")
    metrics.add_argument("--png", metavar="FILE", help="also plot requests and P50/P99 latency to FILE")
    metrics.set_defaults(handler=_metrics)

    autoscale = actions.add_parser(
        "autoscale",
        help="scale a deployment between --min and --max instances on its CPU (Azure Monitor autoscale)",
        description=(
            "Creates or replaces the deployment's Azure Monitor autoscale setting (ENDPOINT-DEPLOYMENT-autoscale): "
            "one more instance when average CPU over 5 minutes is above --cpu, one fewer below --scale-in-below "
            "(default: half of --cpu). --show prints it, --delete removes it (the deployment keeps its count). "
            "On a Kubernetes deployment it sets the deployment's target-utilization scale settings instead."
        ),
    )
    autoscale.add_argument("name", metavar="E", help="endpoint name")
    autoscale.add_argument("--deployment", metavar="D", required=True, help="the deployment to scale")
    autoscale.add_argument("--min", type=int, metavar="N", help="fewest instances (at least 1)")
    autoscale.add_argument("--max", type=int, metavar="M", help="most instances")
    autoscale.add_argument("--cpu", type=int, metavar="PCT", help="scale out above this average CPU %%, e.g. 70")
    autoscale.add_argument(
        "--scale-in-below", type=int, metavar="PCT", help="scale in below this CPU %% (default: --cpu / 2)"
    )
    mode = autoscale.add_mutually_exclusive_group()
    mode.add_argument("--show", action="store_true", help="print the deployment's autoscale setting")
    mode.add_argument("--delete", action="store_true", help="delete the deployment's autoscale setting")
    autoscale.set_defaults(handler=_autoscale)

    for action in (show, traffic, rollback, delete, metrics, autoscale):
        add_workspace_arguments(action)
    parser.set_defaults(handler=show_help(parser))


def _split(values: Any) -> str:
    return ", ".join(f"{name}={percent}%" for name, percent in values.items()) or "none"


def print_state(state: Any) -> None:
    from azure_dl.console import print_key_values, print_table

    rows = [
        ("auth", state.auth_mode or "?"),
        ("state", state.provisioning_state or "?"),
        ("scoring URI", state.scoring_uri or "not yet"),
        ("traffic", _split(state.live)),
        ("mirror", _split(state.mirror)),
        ("rollback to", _split(state.previous["traffic"]) if state.previous else "nothing recorded"),
    ]
    print_key_values(f"Endpoint {state.name}", rows)
    table = [
        [
            d.name,
            d.model,
            d.instance_type,
            str(d.instance_count),
            d.state,
            f"{state.traffic.get(d.name, 0)}%",
            f"{state.mirror.get(d.name, 0)}%",
        ]
        for d in state.deployments
    ]
    print_table("Deployments", ["name", "model", "instance type", "count", "state", "traffic", "mirror"], table)


def _show(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.endpoints import read_endpoint
    from azure_dl.errors import AzureDLError

    ml_client = workspace_client(args)
    state = read_endpoint(ml_client, args.name)
    if not state.exists:
        raise AzureDLError(f"endpoint {args.name} does not exist in workspace {ml_client.workspace_name}")
    print_state(state)
    return 0


def _traffic(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.endpoints import set_traffic
    from azure_dl.console import note
    from azure_dl.endpoint_spec import check_name, check_split, parse_split
    from azure_dl.errors import SpecError

    check_name(args.name, "endpoint")
    if args.split is None and args.mirror is None:
        raise SpecError("nothing to change", hint=f"e.g. azure-dl endpoint traffic {args.name} blue=90,green=10")
    split = parse_split(args.split) if args.split else None
    mirror: dict[str, int] | None = None
    if args.mirror is not None:
        mirror = {} if args.mirror.strip().lower() == "none" else parse_split(args.mirror, "--mirror")
    check_split(split, mirror)
    state = set_traffic(workspace_client(args), args.name, split, mirror, log=note)
    print_state(state)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.endpoints import rollback

    state = rollback(workspace_client(args), args.name)
    print(f"Rolled back endpoint {args.name} to {_split(state.live)}")
    print_state(state)
    return 0


def _delete(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.endpoints import delete_deployment, delete_endpoint
    from azure_dl.errors import ConfigError

    ml_client = workspace_client(args)
    what = f"deployment {args.deployment} of endpoint {args.name}" if args.deployment else f"endpoint {args.name}"
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"deleting {what} needs confirmation", hint="pass --yes")
        scope = "" if args.deployment else " and all its deployments"
        answer = input(f"Delete {what}{scope} in workspace {ml_client.workspace_name}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return 1
    if args.deployment:
        delete_deployment(ml_client, args.name, args.deployment)
    else:
        delete_endpoint(ml_client, args.name)
    print(f"Deleted {what}")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from pathlib import Path

    from azure_dl.backends.azureml.monitor import read_metrics
    from azure_dl.console import note, print_table
    from azure_dl.endpoint_spec import check_name
    from azure_dl.monitor_metrics import TABLE_COLUMNS, parse_since, table_rows

    check_name(args.name, "endpoint")
    window = parse_since(args.since)
    result = read_metrics(
        workspace_client(args), args.name, deployment=args.deployment, window=window, plot=bool(args.png)
    )
    for line in result.notes:
        note(line)
    if result.rows:
        print_table(
            f"Endpoint {args.name}: Azure Monitor metrics, last {args.since}", TABLE_COLUMNS, table_rows(result.rows)
        )
    if args.png and result.traffic:
        from azure_dl.metrics_plot import plot_traffic

        written = plot_traffic(result.traffic, f"{args.name}: last {args.since}", Path(args.png))
        print(f"Plot: {written}")
    return 0


def _autoscale(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml import autoscale
    from azure_dl.console import print_key_values
    from azure_dl.endpoint_spec import check_name
    from azure_dl.errors import SpecError

    check_name(args.name, "endpoint")
    check_name(args.deployment, "deployment")
    sizing = (args.min, args.max, args.cpu, args.scale_in_below)
    wanted = None
    if args.show or args.delete:
        if any(value is not None for value in sizing):
            raise SpecError("--show and --delete take no --min/--max/--cpu/--scale-in-below")
    elif args.min is None or args.max is None or args.cpu is None:
        raise SpecError(
            "autoscale needs --min, --max and --cpu (or --show / --delete)",
            hint=f"e.g. azure-dl endpoint autoscale {args.name} --deployment {args.deployment} --min 1 --max 3 "
            "--cpu 70",
        )
    else:
        wanted = autoscale.AutoscaleRequest.checked(args.min, args.max, args.cpu, args.scale_in_below)
    ml_client = workspace_client(args)
    title = f"Autoscale of deployment {args.deployment} (endpoint {args.name})"
    if wanted is not None:
        print_key_values(title, autoscale.set_autoscale(ml_client, args.name, args.deployment, wanted))
        return 0
    rows = autoscale.show_autoscale(ml_client, args.name, args.deployment)
    if rows is None:
        print(f"Deployment {args.deployment} of endpoint {args.name} has no autoscale setting.")
        return 0 if args.delete else 1
    if args.delete:
        print(autoscale.delete_autoscale(ml_client, args.name, args.deployment))
        return 0
    print_key_values(title, rows)
    return 0
