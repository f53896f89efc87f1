"""`azure-dl compute ensure|delete|quota|attach-k8s|instance-types`: AmlCompute clusters, the subscription's vCPU
quota per VM family, and Kubernetes (AKS/Arc) clusters attached as compute with their instance types."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from azure_dl.cli._shared import show_help, workspace_client
from azure_dl.workspace import add_workspace_arguments

DEFAULT_IDLE_MINUTES = 30


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compute",
        help="create, update or delete an Azure ML compute cluster; show vCPU quota",
        description="AmlCompute clusters that scale to zero when idle, and the vCPU quota they need.",
    )
    actions = parser.add_subparsers(dest="compute_action", metavar="ACTION")

    ensure = actions.add_parser(
        "ensure",
        help="create the cluster, or update its node counts (never its VM size)",
        description=(
            "Creates an AmlCompute cluster that scales down to --min-nodes (default 0) after --idle-minutes, or "
            "updates the node counts and idle time of an existing one. An existing cluster of another VM size "
            "or priority is an error: delete it or choose another name. The vCPU quota is checked first."
        ),
    )
    ensure.add_argument("name", metavar="NAME", help="cluster name (letters, digits, '-'; starts with a letter)")
    ensure.add_argument("--size", required=True, metavar="SIZE", help="VM size, e.g. Standard_NC4as_T4_v3")
    ensure.add_argument("--max-nodes", type=int, required=True, metavar="N", help="most nodes the cluster scales to")
    ensure.add_argument("--min-nodes", type=int, default=0, metavar="N", help="nodes kept running (default: 0)")
    ensure.add_argument(
        "--low-priority",
        action="store_true",
        help="preemptible low-priority VMs: cheaper, separate quota (default: dedicated)",
    )
    ensure.add_argument(
        "--idle-minutes",
        type=int,
        default=DEFAULT_IDLE_MINUTES,
        metavar="M",
        help=f"idle minutes before a node is released (default: {DEFAULT_IDLE_MINUTES})",
    )
    ensure.set_defaults(handler=_ensure)

    delete = actions.add_parser("delete", help="delete a compute cluster")
    delete.add_argument("name", metavar="NAME", help="cluster name")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation (default: ask)")
    delete.set_defaults(handler=_delete)

    quota = actions.add_parser(
        "quota",
        help="vCPU quota per VM family (or whether SIZE x NODES fits)",
        description="The subscription's Azure ML vCPU quota in the workspace's region (compute.list_usage).",
    )
    quota.add_argument("--size", metavar="SIZE", default=None, help="check this VM size (default: list all families)")
    quota.add_argument("--nodes", type=int, default=1, metavar="N", help="nodes to check for --size (default: 1)")
    quota.add_argument("--low-priority", action="store_true", help="check the low-priority quota (default: dedicated)")
    quota.add_argument("--location", default=None, help="Azure region (default: the workspace's region)")
    quota.set_defaults(handler=_quota)

    attach = actions.add_parser(
        "attach-k8s",
        help="attach an AKS or Arc cluster (with the Azure ML extension) as Kubernetes compute",
        description=(
            "Checks that the cluster has the Azure ML extension (Microsoft.AzureML.Kubernetes) and attaches it; "
            "without the extension it prints the `az k8s-extension create` command that installs it. Deleting "
            "the compute later detaches the cluster; the cluster itself stays."
        ),
    )
    attach.add_argument("name", metavar="NAME", help="compute name in the workspace")
    attach.add_argument("--resource-id", required=True, metavar="ARM_ID", help="the cluster's ARM id")
    attach.add_argument("--namespace", default="default", metavar="NS", help="Kubernetes namespace (default: default)")
    attach.set_defaults(handler=_attach_k8s)

    types = actions.add_parser("instance-types", help="the instance types of an attached Kubernetes compute")
    types.add_argument("name", metavar="NAME", help="Kubernetes compute name")
    types.set_defaults(handler=_instance_types)

    for action in (ensure, delete, quota, attach, types):
        add_workspace_arguments(action)
    parser.set_defaults(handler=show_help(parser))


def _price(size: Any, nodes: int) -> str:
    from azure_dl.catalog import DEFAULT_REGION, describe_price

    quote = size.price_in(DEFAULT_REGION)
    if quote is None:
        return (
            f"unknown in {DEFAULT_REGION} (run `azure-dl catalog refresh --region REGION` where prices.azure.com "
            "is reachable)"
        )
    most = f", up to {quote.per_hour * nodes:.2f} USD/h at {nodes} nodes" if nodes > 1 else ""
    return f"{describe_price(quote, 'node-hour')}{most}; idle at 0 nodes costs nothing"


def _ensure(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.client import compute_studio_url
    from azure_dl.backends.azureml.compute import check_quota, ensure_compute
    from azure_dl.catalog import get_vm_size
    from azure_dl.console import note, print_key_values

    size = get_vm_size(args.size)  # unknown or retired sizes stop here, before any credential is needed
    priority = "low-priority (preemptible; list price is for dedicated)" if args.low_priority else "dedicated"
    print_key_values(
        f"Compute cluster {args.name}",
        [
            ("VM size", f"{size.name} ({size.series})" if size.series else size.name),
            ("GPUs per node", size.gpu_summary),
            ("vCPUs / RAM", f"{size.vcpus} / {size.ram_gb:g} GB per node"),
            ("nodes", f"{args.min_nodes} to {args.max_nodes}, released after {args.idle_minutes} min idle"),
            ("priority", priority),
            ("price", _price(size, args.max_nodes)),
        ],
    )
    ml_client = workspace_client(args)
    check = check_quota(ml_client, size.name, 1, low_priority=args.low_priority)
    for warning in check.warnings:
        note(f"warning: {warning}")
    limits = [line.limit for line in (check.family_line, check.region_line) if line is not None and line.limit >= 0]
    if limits and min(limits) < size.vcpus * args.max_nodes:
        note(
            f"warning: the quota ({min(limits)} vCPUs) runs {min(limits) // size.vcpus} node(s) of {size.name} "
            f"at a time, fewer than --max-nodes {args.max_nodes}"
        )
    result = ensure_compute(
        ml_client,
        args.name,
        size.name,
        args.max_nodes,
        low_priority=args.low_priority,
        idle_seconds=args.idle_minutes * 60,
        min_nodes=args.min_nodes,
    )
    print(f"Compute cluster {args.name}: {result.action}")
    print(f"Studio: {compute_studio_url(ml_client, args.name)}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.compute import delete_compute
    from azure_dl.errors import ConfigError

    ml_client = workspace_client(args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"deleting compute {args.name!r} needs confirmation", hint="pass --yes")
        answer = input(f"Delete compute {args.name!r} in workspace {ml_client.workspace_name}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return 1
    delete_compute(ml_client, args.name)
    print(f"Deleted compute {args.name}")
    return 0


def _quota(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.compute import check_quota, family_key, list_quota
    from azure_dl.catalog import list_vm_sizes
    from azure_dl.console import note, print_key_values, print_table

    ml_client = workspace_client(args)
    if args.size:
        check = check_quota(ml_client, args.size, args.nodes, args.location, low_priority=args.low_priority)
        rows = [
            ("VM size", f"{check.vm_size} ({check.vcpus_per_node} vCPUs per node)"),
            ("family", check.family),
            ("needed", f"{check.needed} vCPUs for {check.nodes} node(s)"),
        ]
        for label, line in (("family quota", check.family_line), ("regional quota", check.region_line)):
            if line is not None:
                rows.append((label, f"{line.limit} ({line.in_use} in use, {line.available} free) - {line.name}"))
        rows.append(("verdict", "enough quota" if not check.warnings else "enough quota, see warnings"))
        kind = "low-priority" if args.low_priority else "dedicated"
        print_key_values(f"{kind.capitalize()} vCPU quota for {check.vm_size}", rows)
        for warning in check.warnings:
            note(f"warning: {warning}")
        return 0

    known = {family_key(size.family) for size in list_vm_sizes()}
    lines = [
        line
        for line in list_quota(ml_client, args.location)
        if line.scope == "region" or line.limit > 0 or line.family_key in known
    ]
    table = [
        [
            line.name,
            "low-priority" if line.low_priority else "dedicated",
            str(line.in_use),
            str(line.limit),
            str(line.available),
        ]
        for line in sorted(lines, key=lambda line: (line.scope != "region", line.low_priority, line.name))
        if line.limit >= 0
    ]
    where = args.location or "the workspace's region"
    print_table(f"Azure ML vCPU quota in {where}", ["quota", "priority", "in use", "limit", "free"], table)
    note("families with quota, and those of the catalogue's sizes; request more: Azure ML studio > Quota")
    return 0


def _attach_k8s(args: argparse.Namespace) -> int:
    from azure_dl.backends.azureml.kubernetes import attach, parse_cluster_id

    parse_cluster_id(args.resource_id)  # a malformed id stops here, before any credential is needed
    ml_client = workspace_client(args)
    compute = attach(ml_client, args.name, args.resource_id, args.namespace)
    print(
        f"Attached cluster {compute.resource_id} as Kubernetes compute {compute.name} (namespace {compute.namespace})"
    )
    return _instance_types(args, ml_client)


def _instance_types(args: argparse.Namespace, ml_client: Any = None) -> int:
    from azure_dl.backends.azureml.kubernetes import instance_types
    from azure_dl.console import print_table

    def _resources(values: dict[str, Any]) -> str:
        return ", ".join(f"{key}={value}" for key, value in values.items() if value is not None) or "-"

    found = instance_types(ml_client or workspace_client(args), args.name)
    rows = [
        [
            f"{t.name} (default)" if t.default else t.name,
            _resources(t.requests),
            _resources(t.limits),
            _resources(t.node_selector or {}),
        ]
        for t in found
    ]
    print_table(f"Instance types of {args.name}", ["instance type", "requests", "limits", "node selector"], rows)
    return 0
