"""Validated managed online endpoint and deployment specs, and the traffic rules of a blue/green rollout (pure).

Everything here is checked before any I/O: names follow Azure ML's endpoint/deployment naming rules, the instance
type is a current size of the catalogue AND one that managed online endpoints accept, traffic splits sum to 100
over the endpoint's deployments, and mirror traffic goes to at most one deployment that takes no live traffic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from azure_dl.catalog import VMSize, get_vm_size, list_vm_sizes
from azure_dl.errors import SpecError
from azure_dl.spec import SECRET_HINT, EnvironmentSpec, is_secret_name, looks_secret

# The sizes managed online endpoints accept ("Managed online endpoints SKU list", Microsoft Learn,
# https://learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-list, source
# MicrosoftDocs/azure-ai-docs articles/machine-learning/reference-managed-online-endpoints-vm-sku-list.md, ms.date
# 10/18/2023). Not every VM size is on it: Standard_D4s_v3 (Dsv3) is not, Standard_DS3_v2 and Standard_E4s_v3 are.
MANAGED_ONLINE_SKU_SOURCE = (
    "https://learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-list"
)
MANAGED_ONLINE_SKUS = frozenset(
    name.lower()
    for name in (
        *(f"Standard_D{n}as_v4" for n in (2, 4, 8, 16, 32, 48, 64, 96)),
        *(f"Standard_D{n}a_v4" for n in (2, 4, 8, 16, 32, 48, 64, 96)),
        *(f"Standard_DS{n}_v2" for n in (1, 2, 3, 4, 5)),
        *(f"Standard_E{n}s_v3" for n in (2, 4, 8, 16, 32, 48, 64)),
        *(f"Standard_F{n}s_v2" for n in (2, 4, 8, 16, 32, 48, 64, 72)),
        *(f"Standard_FX{n}mds" for n in (4, 12, 24, 36, 48)),
        *(f"Standard_L{n}as_v3" for n in (8, 16, 32, 48, 64, 80)),
        *(f"Standard_L{n}s_v2" for n in (8, 16, 32, 48, 64, 80)),
        *(f"Standard_L{n}s_v3" for n in (8, 16, 32, 48, 64, 80)),
        "Standard_NC24ads_A100_v4",
        "Standard_NC48ads_A100_v4",
        "Standard_NC96ads_A100_v4",
        "Standard_NC4as_T4_v3",
        "Standard_NC8as_T4_v3",
        "Standard_NC16as_T4_v3",
        "Standard_NC64as_T4_v3",
        "Standard_NC6s_v2",
        "Standard_NC12s_v2",
        "Standard_NC24s_v2",
        "Standard_NC6s_v3",
        "Standard_NC12s_v3",
        "Standard_NC24s_v3",
        "Standard_NC40ads_H100_v5",
        "Standard_NC80adis_H100_v5",
        "Standard_ND96amsr_A100_v4",
        "Standard_ND96asr_v4",
        "Standard_ND40rs_v2",
        "Standard_ND96is_H100_v5",
        "Standard_ND96isr_H100_v5",
        "Standard_NV6ads_A10_v5",
        "Standard_NV12ads_A10_v5",
        "Standard_NV18ads_A10_v5",
        "Standard_NV36ads_A10_v5",
        "Standard_NV36adms_A10_v5",
        "Standard_NV72ads_A10_v5",
    )
)
DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"  # 4 vCPUs, 14 GB: the smallest general-purpose size Azure ML recommends
# On Kubernetes compute the instance type is one of the cluster's (a Kubernetes resource name); Azure ML creates this
# one when a cluster defines none.
KUBERNETES_DEFAULT_INSTANCE_TYPE = "defaultinstancetype"
KUBERNETES_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
COMPUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$")  # Azure ML's rule for compute names
DEFAULT_TARGET_UTILIZATION = 70  # percent CPU a Kubernetes deployment's pods are scaled to

AUTH_MODES = ("key", "aml_token")
ENDPOINT_NAME = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")  # Azure ML's rule for endpoints and deployments
NAME_LENGTH = (3, 32)
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_MIRROR_PERCENT = 50  # Azure ML's limit for mirrored traffic
HOURS_PER_MONTH = 730  # the month Azure's price calculator bills

IMAGE_TASK = "image-classification"
TEXT_TASK = "text-classification"
SCORING_SCRIPTS = {IMAGE_TASK: "training_scripts/score_resnet.py", TEXT_TASK: "training_scripts/score_lstm.py"}
MAX_REQUEST_TIMEOUT_MS = 180_000  # the service's maximum for request_timeout_ms
# The scoring scripts' limit on items per request (training_scripts/scoring_request.py reads it; same default there).
MAX_BATCH_ENV = "AZURE_DL_MAX_BATCH"
DEFAULT_MAX_BATCH = 64


def check_name(name: str, what: str) -> str:
    """`name` if it is a valid endpoint or deployment name (3-32 characters, letters, digits and '-')."""
    low, high = NAME_LENGTH
    if not (low <= len(name) <= high) or not ENDPOINT_NAME.match(name):
        raise SpecError(
            f"{what} name {name!r} is invalid",
            hint=f"use {low}-{high} characters: a letter first, then letters, digits or '-', not ending in '-'",
        )
    return name


def check_instance_type(name: str) -> VMSize:
    """The catalogue's current size `name`, refused unless managed online endpoints accept it."""
    size = get_vm_size(name)  # unknown and retired sizes stop here, with the catalogue's own hint
    if size.name.lower() not in MANAGED_ONLINE_SKUS:
        cpu = [
            s.name
            for s in list_vm_sizes(include_retired=False)
            if not s.is_gpu and s.name.lower() in MANAGED_ONLINE_SKUS
        ]
        raise SpecError(
            f"instance type {size.name} is not one managed online endpoints accept",
            hint=f"CPU sizes of the catalogue they accept: {', '.join(cpu) or 'none'}; the list: "
            f"{MANAGED_ONLINE_SKU_SOURCE}",
        )
    return size


@dataclass(frozen=True)
class ModelRef:
    """A registered model version (`name:version`); version None means 'the latest' until it is resolved."""

    name: str
    version: str | None = None

    def __post_init__(self) -> None:
        if not MODEL_NAME.match(self.name):
            raise SpecError(
                f"model name {self.name!r} is invalid", hint="use letters, digits, '-', '_' and '.' (255 at most)"
            )
        if self.version is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.version):
            raise SpecError(f"model version {self.version!r} of {self.name} is invalid")

    @property
    def asset(self) -> str:
        """The deployment's `model:` value: azureml:NAME:VERSION (or azureml:NAME@latest)."""
        return f"azureml:{self.name}:{self.version}" if self.version else f"azureml:{self.name}@latest"

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name


def parse_model_ref(text: str) -> ModelRef:
    """'name' or 'name:version' (an 'azureml:' prefix is allowed) -> ModelRef."""
    text = text.strip().removeprefix("azureml:")
    name, _, version = text.partition(":")
    return ModelRef(name, version or None)


def check_compute_name(name: str) -> str:
    if not COMPUTE_NAME.match(name):
        raise SpecError(
            f"compute name {name!r} is not valid", hint="3-24 letters, digits and '-', starting with a letter"
        )
    return name


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    auth_mode: str = "key"
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    compute: str | None = None  # an attached Kubernetes compute: a Kubernetes online endpoint

    def __post_init__(self) -> None:
        check_name(self.name, "endpoint")
        if self.compute is not None:
            check_compute_name(self.compute)
        if self.auth_mode not in AUTH_MODES:
            raise SpecError(f"auth mode {self.auth_mode!r} is not one of {', '.join(AUTH_MODES)}")


@dataclass(frozen=True)
class ProbeSpec:
    """Liveness/readiness probe; the defaults are Azure ML's documented ones (written out so the YAML shows them)."""

    initial_delay: int = 10
    period: int = 10
    timeout: int = 2
    success_threshold: int = 1
    failure_threshold: int = 30

    def __post_init__(self) -> None:
        for key in ("initial_delay", "period", "timeout", "success_threshold", "failure_threshold"):
            if int(getattr(self, key)) < 1:
                raise SpecError(f"probe {key} must be at least 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class KubernetesSpec:
    """Where and how a Kubernetes online deployment runs: the compute, the pods' resources, the scale settings."""

    compute: str
    requests: Mapping[str, str] = field(default_factory=dict)  # e.g. {"cpu": "1", "memory": "4Gi"}
    limits: Mapping[str, str] = field(default_factory=dict)
    min_instances: int = 1
    max_instances: int = 1
    target_utilization: int = DEFAULT_TARGET_UTILIZATION
    polling_interval_s: int = 10

    def __post_init__(self) -> None:
        check_compute_name(self.compute)
        if not 1 <= self.min_instances <= self.max_instances:
            raise SpecError(f"instances {self.min_instances}..{self.max_instances}: give 1 <= min <= max")
        if not 1 <= self.target_utilization <= 100:
            raise SpecError(f"target utilization {self.target_utilization}% is not 1-100")


@dataclass(frozen=True)
class DeploymentSpec:
    """One managed online deployment: the model, the code and scoring script, the environment and the VMs."""

    name: str
    endpoint_name: str
    model: ModelRef
    task: str
    code: Path  # the staged snapshot holding training_scripts/
    environment: EnvironmentSpec
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    # A batch of 64 ResNet-50 images on 4 vCPUs takes a few seconds: above the service's 5 s default.
    request_timeout_ms: int = 10_000
    max_concurrent_requests: int = 1
    liveness_probe: ProbeSpec = field(default_factory=ProbeSpec)
    readiness_probe: ProbeSpec = field(default_factory=ProbeSpec)
    env_vars: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    kubernetes: KubernetesSpec | None = None  # None: a managed online deployment
    # Request telemetry and the scoring script's logs sent to the workspace's Application Insights.
    app_insights: bool = True
    # Model data collection (`data_collector`): the scoring scripts' inputs and outputs as JSON lines in the
    # workspace blob store. Off by default: the collected data is stored, and billed, per request.
    collect_data: bool = False

    def __post_init__(self) -> None:
        check_name(self.name, "deployment")
        check_name(self.endpoint_name, "endpoint")
        if self.task not in SCORING_SCRIPTS:
            raise SpecError(
                f"model task {self.task!r} has no scoring script", hint=f"one of {', '.join(SCORING_SCRIPTS)}"
            )
        if self.kubernetes is None:
            object.__setattr__(self, "instance_type", check_instance_type(self.instance_type).name)
        elif not KUBERNETES_NAME.match(self.instance_type):
            raise SpecError(
                f"instance type {self.instance_type!r} is not a Kubernetes instance type name",
                hint=f"`azure-dl compute instance-types {self.kubernetes.compute}` lists the cluster's",
            )
        if self.instance_count < 1:
            raise SpecError(f"--instance-count must be at least 1, got {self.instance_count}")
        if not 1 <= self.request_timeout_ms <= MAX_REQUEST_TIMEOUT_MS:
            raise SpecError(
                f"request timeout {self.request_timeout_ms} ms is outside 1..{MAX_REQUEST_TIMEOUT_MS} "
                "(the service's limit)"
            )
        if self.max_concurrent_requests < 1:
            raise SpecError(f"max concurrent requests per instance must be >= 1, got {self.max_concurrent_requests}")
        for name, value in self.env_vars.items():
            if not ENV_NAME.match(name):
                raise SpecError(f"environment variable name {name!r} is invalid", hint="use letters, digits and '_'")
            if is_secret_name(name) or looks_secret(str(value)):
                raise SpecError(f"environment variable {name} looks like it carries a credential", hint=SECRET_HINT)
        script = self.code / self.scoring_script
        if not script.is_file():
            raise SpecError(
                f"scoring script {self.scoring_script} not found in the code folder {self.code}",
                hint="stage training_scripts/ with its scoring scripts (score_resnet.py, score_lstm.py)",
            )

    @property
    def scoring_script(self) -> str:
        return SCORING_SCRIPTS[self.task]


# ----------------------------------------------------------------------------------------------------- traffic
def parse_split(text: str, flag: str = "--traffic") -> dict[str, int]:
    """'blue=90,green=10' (or 'blue:90') -> {'blue': 90, 'green': 10}; whole percentages 0..100."""
    split: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.replace(":", "=").partition("=")
        name = name.strip()
        if not sep or not name:
            raise SpecError(f"{flag} entry {item!r} is not NAME=PERCENT", hint=f"e.g. {flag} blue=90,green=10")
        try:
            percent = int(value.strip())
        except ValueError:
            raise SpecError(f"{flag} {name}={value.strip()!r}: the percentage must be a whole number") from None
        if not 0 <= percent <= 100:
            raise SpecError(f"{flag} {name}={percent}: a percentage must be between 0 and 100")
        if name in split:
            raise SpecError(f"{flag} names deployment {name!r} twice")
        check_name(name, "deployment")
        split[name] = percent
    if not split:
        raise SpecError(f"{flag} is empty", hint=f"e.g. {flag} blue=90,green=10")
    return split


def live(traffic: Mapping[str, int]) -> dict[str, int]:
    """The deployments that take live traffic (percentage > 0)."""
    return {name: int(value) for name, value in traffic.items() if int(value) > 0}


def validate_traffic(traffic: Mapping[str, int], deployments: Iterable[str]) -> dict[str, int]:
    """A full split over `deployments` (unnamed ones get 0) that sums to 100; unknown names are errors."""
    known = list(deployments)
    unknown = sorted(set(traffic) - set(known))
    if unknown:
        raise SpecError(
            f"traffic names deployment(s) {', '.join(unknown)} that the endpoint does not have",
            hint=f"its deployments: {', '.join(known) or 'none'}",
        )
    total = sum(traffic.values())
    if total != 100:
        shown = ", ".join(f"{name}={value}" for name, value in traffic.items())
        raise SpecError(
            f"traffic percentages must sum to 100 over the endpoint's deployments; {shown} sums to {total}",
            hint="e.g. --traffic blue=90,green=10",
        )
    return {name: int(traffic.get(name, 0)) for name in known}


def validate_mirror(
    mirror: Mapping[str, int], traffic: Mapping[str, int], deployments: Iterable[str]
) -> dict[str, int]:
    """Mirror traffic: one deployment, at most 50%, not one taking live traffic, only while some traffic is live."""
    mirror = {name: int(value) for name, value in mirror.items() if int(value) > 0}
    if not mirror:
        return {}
    known = set(deployments)
    if len(mirror) > 1:
        raise SpecError(f"mirror traffic can go to one deployment only, got {', '.join(mirror)}")
    ((name, percent),) = mirror.items()
    if name not in known:
        raise SpecError(f"--mirror names deployment {name!r} that the endpoint does not have")
    if percent > MAX_MIRROR_PERCENT:
        raise SpecError(f"--mirror {name}={percent}: Azure ML mirrors at most {MAX_MIRROR_PERCENT}% of live traffic")
    if traffic.get(name, 0) > 0:
        raise SpecError(
            f"--mirror {name}={percent}: {name} takes {traffic[name]}% of live traffic; mirror only to a deployment "
            "at 0%",
            hint="mirroring copies live requests to a deployment under test; set its live traffic to 0 first",
        )
    if not live(traffic):
        raise SpecError("--mirror needs a deployment that takes live traffic to copy requests from")
    return mirror


def check_split(traffic: Mapping[str, int] | None, mirror: Mapping[str, int] | None) -> None:
    """What can be checked without the endpoint: a split sums to 100 (deployments it leaves out get 0), and a
    mirror goes to one deployment, at most 50%, not one the split gives live traffic."""
    if traffic is not None:
        validate_traffic(traffic, traffic)
    if mirror is not None:
        mirror = {name: value for name, value in mirror.items() if value > 0}
        if len(mirror) > 1:
            raise SpecError(f"mirror traffic can go to one deployment only, got {', '.join(mirror)}")
        for name, percent in mirror.items():
            if percent > MAX_MIRROR_PERCENT:
                raise SpecError(f"--mirror {name}={percent}: Azure ML mirrors at most {MAX_MIRROR_PERCENT}% of traffic")
            if traffic is not None and traffic.get(name, 0) > 0:
                validate_mirror(mirror, traffic, traffic)
