"""`azure-dl deploy MODEL --endpoint E`: a registered model (or an output folder, registered first) on a managed
online endpoint - or, with --compute, a Kubernetes online endpoint on an attached AKS/Arc cluster - rolled out
blue/green.

Stages: (1) validate the flags (instance type, names, traffic) and the model, before any I/O; (2) stage the code
(a snapshot of training_scripts/ with the scoring scripts), the inference environment and a sample request under
--out, and render endpoint.yml + deployment.yml; (3) print the plan - instance type, count, price per hour and per
month, since an online deployment bills while idle - and ask; (4) create the endpoint if needed, the new deployment
at 0%, invoke it directly with the sample request, and move traffic only when that smoke test passed.
`--dry-run` stops after (3) and needs no credential.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure_dl.cli._shared import add_gate_arguments
from azure_dl.errors import ConfigError, SpecError
from azure_dl.flag_values import key_value, pairs_to_dict
from azure_dl.workspace import add_workspace_arguments
from training_scripts.model_folder import LABELS_FILE, ONNX_FILE, PREPROCESS_FILE

TASK_CHOICES = {"image": "image-classification", "text": "text-classification"}
DEFAULT_MAX_BATCH = 64  # endpoint_spec.DEFAULT_MAX_BATCH, repeated so that --help imports nothing more


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="deploy a model to a managed online endpoint (blue/green, smoke-tested) or render it (--dry-run)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="a registered model NAME[:VERSION], or a training output folder")
    parser.add_argument("--endpoint", required=True, metavar="E", help="endpoint name (created when missing)")
    parser.add_argument(
        "--deployment",
        metavar="NAME",
        help="deployment name (default: blue on a new endpoint, else whichever of blue/green takes no traffic)",
    )
    parser.add_argument(
        "--instance-type",
        default=None,
        metavar="SIZE",
        help="VM size from the catalogue that managed online endpoints accept (default: Standard_DS3_v2)",
    )
    parser.add_argument("--instance-count", type=int, default=1, metavar="N", help="instances (default: 1)")
    parser.add_argument(
        "--no-app-insights",
        dest="app_insights",
        action="store_false",
        help="do not send the deployment's request telemetry and logs to the workspace's Application Insights "
        "(sent by default: Azure Monitor then shows the scoring script's logs and per-request traces)",
    )
    parser.add_argument(
        "--collect-data",
        action="store_true",
        help="collect the model's inputs and outputs (model data collection: data_collector with model_inputs and "
        "model_outputs) as JSON lines in the workspace blob store, modelDataCollector/E/D/...; off by default, "
        "since the collected data is stored and billed per request",
    )
    parser.add_argument(
        "--compute",
        metavar="NAME",
        help="an attached Kubernetes compute (compute attach-k8s): deploy a Kubernetes online endpoint there; "
        "--instance-type is then one of its instance types (default: the cluster's default)",
    )
    parser.add_argument(
        "--auth-mode",
        dest="endpoint_auth",
        choices=("key", "aml_token"),
        default=None,
        help="how clients authenticate to a new endpoint (default: key; an existing endpoint keeps its own). "
        "--auth is the sign-in method of this CLI, as on every Azure verb",
    )
    parser.add_argument(
        "--traffic",
        metavar="D=P,...",
        help="split after the smoke test, e.g. blue=90,green=10 (default: a first deployment takes 100%%, a "
        "new version on a live endpoint stays at 0%%)",
    )
    parser.add_argument(
        "--mirror", metavar="D=P", help="copy P%% (<= 50) of live requests to deployment D, which takes no live traffic"
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model-name", metavar="NAME", help="name to register an output folder under (default: the endpoint name)"
    )
    model.add_argument(
        "--task",
        choices=sorted(TASK_CHOICES),
        help="the model's task, needed only to --dry-run a registered model (read from the model otherwise)",
    )
    add_gate_arguments(model)
    serving = parser.add_argument_group("serving")
    serving.add_argument(
        "--request-timeout-ms", type=int, default=10_000, metavar="MS", help="scoring timeout (default: 10000)"
    )
    serving.add_argument(
        "--max-concurrent",
        type=int,
        default=1,
        metavar="N",
        help="concurrent requests per instance; also the server's WORKER_COUNT (default: 1)",
    )
    serving.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        metavar="N",
        help=f"most images/texts per request; more get HTTP 400 (default: {DEFAULT_MAX_BATCH})",
    )
    serving.add_argument(
        "--env",
        action="append",
        type=key_value,
        default=[],
        metavar="NAME=VALUE",
        help="environment variable of the scoring container (repeatable; never secrets)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, write DIR/endpoint.yml, DIR/deployment.yml and the code, print the plan, and stop",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for the YAML, code and sample request (default: runs/deploy-E-<time>)",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation (default: ask)")
    add_workspace_arguments(parser)
    parser.set_defaults(handler=handle)


# ------------------------------------------------------------------------------------------------------- staging
@dataclass(frozen=True)
class ModelChoice:
    """The model to deploy: a registered ref, or a local folder that gets registered under `ref.name` first."""

    ref: Any  # endpoint_spec.ModelRef
    folder: Path | None
    task: str | None
    preprocess: dict[str, Any] | None
    labels: list[str] | None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path} is not valid JSON: {exc}") from None


def folder_facts(folder: Path) -> tuple[str, dict[str, Any], list[str] | None]:
    """(task, preprocess.json, labels) of a model folder; a folder without them is not deployable."""
    preprocess = _read_json(folder / PREPROCESS_FILE)
    if not isinstance(preprocess, dict) or not isinstance(preprocess.get("task"), str):
        raise SpecError(f"{folder} has no {PREPROCESS_FILE} with a task, so its scoring script is unknown")
    labels = _read_json(folder / LABELS_FILE)
    return preprocess["task"], preprocess, [str(label) for label in labels] if isinstance(labels, list) else None


def choose_model(args: argparse.Namespace) -> ModelChoice:
    from azure_dl.endpoint_spec import ModelRef, parse_model_ref
    from azure_dl.model_registration import check_registration_gate

    folder = Path(args.model).expanduser()
    if folder.is_dir():
        if not (folder / ONNX_FILE).is_file():
            raise SpecError(f"{folder} has no {ONNX_FILE}", hint="pass a training output folder or NAME[:VERSION]")
        check_registration_gate(folder, pairs_to_dict(args.min_metric, "--min-metric"))
        task, preprocess, labels = folder_facts(folder)
        return ModelChoice(ModelRef(args.model_name or args.endpoint), folder, task, preprocess, labels)
    if "/" in args.model or args.model.startswith("."):
        raise SpecError(
            f"model folder {args.model} does not exist", hint="pass a folder or a registered NAME[:VERSION]"
        )
    if args.model_name or args.min_metric:
        raise SpecError("--model-name and --min-metric apply when MODEL is a folder that gets registered")
    given = TASK_CHOICES[args.task] if args.task else None
    return ModelChoice(parse_model_ref(args.model), None, given, None, None)


def default_out(endpoint: str) -> Path:
    return Path("runs") / f"deploy-{endpoint}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def code_package() -> Path:
    """The training_scripts/ package whose snapshot holds the scoring scripts (a seam for tests)."""
    from azure_dl.snapshot import package_dir

    return package_dir("training_scripts")


@dataclass(frozen=True)
class Staged:
    out: Path
    endpoint_yaml: Path
    deployment_yaml: Path
    request_file: Path
    endpoint: Any  # EndpointSpec
    deployment: Any  # DeploymentSpec
    snapshot: Any


def stage(
    args: argparse.Namespace,
    choice: ModelChoice,
    deployment_name: str,
    auth: str,
    task: str,
    kubernetes: Any = None,
    instance_type: str | None = None,
) -> Staged:
    """Snapshot, environment and sample request under --out, then endpoint.yml and deployment.yml (pure I/O here).

    `kubernetes` (an endpoint_spec.KubernetesSpec) makes both Kubernetes documents, on `instance_type`."""
    from azure_dl.backends.azureml.endpoint_smoke import write_sample_request
    from azure_dl.endpoint_spec import (
        DEFAULT_INSTANCE_TYPE,
        MAX_BATCH_ENV,
        DeploymentSpec,
        EndpointSpec,
    )
    from azure_dl.environments import environment_spec
    from azure_dl.render_endpoint import write_deployment_yaml, write_endpoint_yaml
    from azure_dl.snapshot import stage_snapshot

    out = (args.out or default_out(args.endpoint)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    snapshot = stage_snapshot(code_package(), out / "code")
    kind = "Kubernetes" if kubernetes else "managed"
    endpoint = EndpointSpec(
        args.endpoint,
        auth_mode=auth,
        description=f"azure-dl {kind} online endpoint",
        compute=kubernetes.compute if kubernetes else None,
    )
    deployment = DeploymentSpec(
        name=deployment_name,
        endpoint_name=args.endpoint,
        model=choice.ref,
        task=task,
        code=snapshot.path,
        environment=environment_spec("inference", copy_to=out / "environments"),
        instance_type=instance_type or args.instance_type or DEFAULT_INSTANCE_TYPE,
        instance_count=args.instance_count,
        kubernetes=kubernetes,
        app_insights=args.app_insights,
        collect_data=args.collect_data,
        request_timeout_ms=args.request_timeout_ms,
        max_concurrent_requests=args.max_concurrent,
        env_vars={MAX_BATCH_ENV: str(args.max_batch), **pairs_to_dict(args.env, "environment variable")},
        tags={"azure_dl.snapshot_sha256": snapshot.sha256},
        description=f"{task} model {choice.ref.asset.removeprefix('azureml:')}",
    )
    request_file = write_sample_request(out / "sample-request.json", task, choice.preprocess)
    return Staged(
        out=out,
        endpoint_yaml=write_endpoint_yaml(endpoint, out / "endpoint.yml"),
        deployment_yaml=write_deployment_yaml(deployment, out / "deployment.yml"),
        request_file=request_file,
        endpoint=endpoint,
        deployment=deployment,
        snapshot=snapshot,
    )


def pin_model(staged: Staged, ref: Any) -> Staged:
    """Re-render deployment.yml with the model version that registration (or the workspace) resolved."""
    from azure_dl.render_endpoint import write_deployment_yaml

    deployment = replace(
        staged.deployment, model=ref, description=f"{staged.deployment.task} model {ref.asset.removeprefix('azureml:')}"
    )
    return replace(
        staged, deployment=deployment, deployment_yaml=write_deployment_yaml(deployment, staged.deployment_yaml)
    )


# ---------------------------------------------------------------------------------------------------------- plan
def plan_rows(staged: Staged, choice: ModelChoice, state: Any, traffic: Any, mirror: Any) -> list[tuple[str, str]]:
    from azure_dl.catalog import DEFAULT_REGION, describe_price, get_vm_size
    from azure_dl.endpoint_spec import HOURS_PER_MONTH
    from azure_dl.plan import UNKNOWN_PRICE_HINT

    deployment = staged.deployment
    count = deployment.instance_count
    kubernetes = deployment.kubernetes
    if kubernetes is not None:
        pods = ", ".join(f"{k}={v}" for k, v in kubernetes.requests.items()) or "as the instance type sets"
        hardware = f"{deployment.instance_type} on Kubernetes compute {kubernetes.compute} (requests: {pods})"
        price = (
            "the cluster's: its nodes bill as AKS/Arc nodes whether this deployment runs or not (none per deployment)"
        )
        idle = "the cluster's nodes; deleting the endpoint frees the pods' requests, not the nodes"
        scale = (
            f"{count} (scales {kubernetes.min_instances}-{kubernetes.max_instances} at "
            f"{kubernetes.target_utilization}% CPU)"
        )
    else:
        vm = get_vm_size(deployment.instance_type)
        hardware = f"{vm.name} ({vm.series or 'series unknown'}, {vm.vcpus} vCPUs, {vm.ram_gb:g} GB, {vm.gpu_summary})"
        price, idle = _managed_price(vm, count, DEFAULT_REGION, describe_price, HOURS_PER_MONTH, UNKNOWN_PRICE_HINT)
        scale = str(count)
    if state is None:
        endpoint = f"{staged.endpoint.name} (state not read: dry run)"
    elif not state.exists:
        endpoint = f"{staged.endpoint.name} (new, {staged.endpoint.auth_mode} auth)"
    else:
        split = ", ".join(f"{k}={v}%" for k, v in state.traffic.items()) or "no traffic"
        endpoint = f"{staged.endpoint.name} (exists, {state.auth_mode} auth; traffic {split})"
    source = (
        f"{choice.folder} (registered as {choice.ref.name} first, gate passed)" if choice.folder else str(choice.ref)
    )
    steps = f"create {deployment.name} at 0% -> invoke {deployment.name} with {staged.request_file.name} -> "
    if traffic:
        steps += "traffic " + ", ".join(f"{k}={v}%" for k, v in traffic.items())
    elif state is None:
        steps += f"{deployment.name} takes 100% if no deployment takes live traffic yet, else traffic unchanged"
    else:
        steps += "traffic unchanged"
    if mirror:
        steps += "; mirror " + ", ".join(f"{k}={v}%" for k, v in mirror.items())
    return [
        ("endpoint", endpoint),
        ("deployment", f"{deployment.name}: {source}, {deployment.task}, {deployment.scoring_script}"),
        ("instance type", hardware),
        ("instances", scale),
        ("price", price),
        ("idle cost", idle),
        (
            "telemetry",
            "Application Insights (request traces, scoring logs); --no-app-insights turns it off"
            if deployment.app_insights
            else "none (--no-app-insights); platform metrics still reach Azure Monitor",
        ),
        ("data collection", _collection_row(deployment)),
        ("rollout", steps + " (only if the smoke test passes)"),
    ]


def _collection_row(deployment: Any) -> str:
    from azure_dl.render_endpoint import COLLECTIONS, collected_data_path

    if not deployment.collect_data:
        return "off (--collect-data collects the model's inputs and outputs)"
    paths = "; ".join(collected_data_path(deployment, name) for name in COLLECTIONS)
    return (
        f"{' and '.join(COLLECTIONS)} as JSON lines, one folder per hour: {paths} (registered as data assets "
        f"{deployment.endpoint_name}-{deployment.name}-{{collection}}; blob storage bills per GB stored)"
    )


def _managed_price(
    vm: Any, count: int, region: str, describe_price: Any, hours: int, unknown_hint: str
) -> tuple[str, str]:
    quote = vm.price_in(region)
    if quote is None:
        price = f"unknown in {region} ({unknown_hint})"
        monthly = "unknown (price per hour x instances x 730 h)"
    else:
        hourly = quote.per_hour * count
        price = f"{describe_price(quote, 'instance-hour')} x {count} = {hourly:.4f} USD/h"
        monthly = f"~{hourly * hours:,.0f} USD per month ({hourly:.4f} x {hours} h)"
    return price, f"an online deployment bills while idle: {monthly}; stop it with azure-dl endpoint delete"


def confirm(args: argparse.Namespace, question: str) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError("deploying needs confirmation (it creates VMs that bill per hour)", hint="pass --yes")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _parse_flags(args: argparse.Namespace) -> tuple[Any, Any]:
    from azure_dl.endpoint_spec import (
        DEFAULT_INSTANCE_TYPE,
        check_compute_name,
        check_instance_type,
        check_name,
        check_split,
        parse_split,
    )

    check_name(args.endpoint, "endpoint")
    if args.deployment:
        check_name(args.deployment, "deployment")
    if args.compute:
        check_compute_name(args.compute)  # the instance type is the cluster's: checked against it later
    else:
        check_instance_type(args.instance_type or DEFAULT_INSTANCE_TYPE)
    if args.instance_count < 1:
        raise SpecError(f"--instance-count must be at least 1, got {args.instance_count}")
    if args.max_batch < 1:
        raise SpecError(f"--max-batch must be at least 1, got {args.max_batch}")
    traffic = parse_split(args.traffic) if args.traffic else None
    mirror = parse_split(args.mirror, "--mirror") if args.mirror else None
    check_split(traffic, mirror)
    return traffic, mirror


# -------------------------------------------------------------------------------------------------------- handle
def handle(args: argparse.Namespace) -> int:
    from azure_dl.console import note, print_key_values

    traffic, mirror = _parse_flags(args)
    choice = choose_model(args)
    if args.dry_run:
        if choice.task is None:
            raise SpecError(
                f"a dry run of registered model {choice.ref} cannot read its task without signing in",
                hint="pass --task image or --task text (or deploy an output folder)",
            )
        kubernetes, instance_type = _kubernetes_target(args, None)
        staged = stage(
            args, choice, args.deployment or "blue", args.endpoint_auth or "key", choice.task, kubernetes, instance_type
        )
        note(f"snapshot: {staged.snapshot.describe()} -> {staged.snapshot.path}")
        print_key_values(
            "Plan (nothing has been created or billed yet)", plan_rows(staged, choice, None, traffic, mirror)
        )
        print(
            f"dry run: wrote {staged.endpoint_yaml} and {staged.deployment_yaml} (they load with azure.ai.ml and "
            "`az ml online-endpoint|online-deployment create --file`). "
            + (
                f"Deploying registers {choice.folder} first and pins the version it gets; the dry run writes "
                f"{choice.ref.asset}."
                if choice.folder
                else ""
            )
        )
        return 0

    from azure_dl.backends.azureml import client as azure_client
    from azure_dl.backends.azureml.endpoints import check_rollout, choose_deployment_name, read_endpoint, rollout
    from azure_dl.backends.azureml.models import download_model, get_model
    from azure_dl.endpoint_spec import ModelRef

    ml_client = azure_client.client_from_args(args)
    state = read_endpoint(ml_client, args.endpoint)
    name = args.deployment or choose_deployment_name(state)
    planned_traffic, planned_mirror = check_rollout(state, name, traffic, mirror)
    auth = args.endpoint_auth or (state.auth_mode if state.exists and state.auth_mode else "key")
    if choice.folder is None:
        model = get_model(ml_client, choice.ref.name, choice.ref.version)
        choice = replace(choice, ref=ModelRef(choice.ref.name, str(model.version)))
        choice = _facts_from_workspace(ml_client, choice, model, download_model, args)
    assert choice.task is not None
    kubernetes, instance_type = _kubernetes_target(args, ml_client)
    staged = stage(args, choice, name, auth, choice.task, kubernetes, instance_type)
    print_key_values("Plan", plan_rows(staged, choice, state, planned_traffic, planned_mirror))
    billing = "on the cluster's nodes" if kubernetes else "billed per instance-hour until deleted"
    if not confirm(args, f"Deploy to endpoint {args.endpoint} ({billing})?"):
        print("Nothing was created.")
        return 1
    if choice.folder is not None:
        from azure_dl.backends.azureml.models import register_model

        registered = register_model(
            ml_client,
            choice.folder,
            choice.ref.name,
            min_metrics=pairs_to_dict(args.min_metric, "--min-metric"),
            source=str(choice.folder.resolve()),
        )
        note(f"model {registered.ref}: {'reused (identical content)' if registered.reused else 'registered'}")
        staged = pin_model(staged, ModelRef(registered.name, registered.version))
    result = rollout(
        ml_client,
        staged.endpoint_yaml,
        staged.deployment_yaml,
        staged.request_file,
        traffic=traffic,
        mirror=mirror,
        labels=choice.labels,
        log=note,
    )
    final = result.state
    rows = [
        ("endpoint", f"{final.name} ({'created' if result.created_endpoint else 'existing'})"),
        ("deployment", f"{result.deployment}: {staged.deployment.model}"),
        ("traffic", ", ".join(f"{k}={v}%" for k, v in final.traffic.items()) or "none"),
        ("mirror", ", ".join(f"{k}={v}%" for k, v in final.mirror.items()) or "none"),
        ("scoring URI", final.scoring_uri or "not yet"),
        ("YAML", f"{staged.endpoint_yaml}, {staged.deployment_yaml}"),
    ]
    print_key_values(f"Deployed {result.deployment} to {final.name}", rows)
    if not result.traffic_changed and final.live and result.deployment not in final.live:
        print(
            f"{result.deployment} takes no live traffic yet. Shift it: azure-dl endpoint traffic {final.name} "
            + ",".join(f"{k}={v}" for k, v in {**final.live, result.deployment: 0}.items())
            + f" (edit the percentages); undo a shift with azure-dl endpoint rollback {final.name}"
        )
    print(f"Score: azure-dl score {final.name} ...   Stop billing: azure-dl endpoint delete {final.name}")
    return 0


def _kubernetes_target(args: argparse.Namespace, ml_client: Any) -> tuple[Any, str | None]:
    """(KubernetesSpec, instance type) for --compute, else (None, None). With a client the instance type is checked
    against the cluster's and its requests/limits are rendered; a dry run (no client) renders the name only."""
    if not args.compute:
        return None, None
    from azure_dl.endpoint_spec import KUBERNETES_DEFAULT_INSTANCE_TYPE, KubernetesSpec

    count = args.instance_count
    if ml_client is None:
        instance_type = args.instance_type or KUBERNETES_DEFAULT_INSTANCE_TYPE
        return KubernetesSpec(args.compute, min_instances=count, max_instances=count), instance_type
    from azure_dl.backends.azureml.kubernetes import instance_types

    offered = instance_types(ml_client, args.compute)
    wanted = args.instance_type or next((t.name for t in offered if t.default), offered[0].name if offered else None)
    chosen = next((t for t in offered if t.name == wanted), None)
    if chosen is None:
        raise SpecError(
            f"compute {args.compute} has no instance type {wanted!r}",
            hint=f"its instance types: {', '.join(t.name for t in offered) or 'none'}",
        )
    values = {k: str(v) for k, v in chosen.requests.items() if v is not None}
    limits = {k: str(v) for k, v in chosen.limits.items() if v is not None}
    spec = KubernetesSpec(args.compute, values, limits, min_instances=count, max_instances=count)
    return spec, chosen.name


def _facts_from_workspace(
    ml_client: Any, choice: ModelChoice, model: Any, download: Any, args: argparse.Namespace
) -> ModelChoice:
    """The task of a registered model: its `task` tag (set by azure-dl register), else read from its files."""
    import tempfile

    task = (model.tags or {}).get("task")
    preprocess, labels = None, None
    if not task:
        with tempfile.TemporaryDirectory(prefix="azure-dl-model-") as tmp:
            folder = download(ml_client, choice.ref.name, str(model.version), Path(tmp))
            task, preprocess, labels = folder_facts(folder)
    if choice.task is not None and choice.task != task:
        raise SpecError(f"--task {args.task} does not match model {choice.ref}, a {task} model")
    return replace(choice, task=task, preprocess=preprocess, labels=labels)
