"""Backend-neutral, validated job specs: every check happens once, in the constructor, before any I/O.

A `JobSpec` says what to run (a module or script in a code folder, with its flags), on what (VM size, node count,
processes per node), with which data (inputs bound to script flags), where results go (outputs bound to script
flags), in which environment, for how long at most, and with which tags (a sweep wraps one: sweep_spec.py).
Invalid values raise `SpecError` naming the value and what to do instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from azure_dl.catalog import VMSize, get_vm_size
from azure_dl.errors import SpecError

# Azure ML accepts these forms for an input path (https://learn.microsoft.com/azure/machine-learning/how-to-read-write-data-v2).
DATASTORE_URI = re.compile(
    r"^azureml://(?:subscriptions/[^/\s]+/resourcegroups/[^/\s]+/workspaces/[^/\s]+/)?"
    r"datastores/(?P<datastore>[A-Za-z0-9_]+)/paths/(?P<path>\S*)$",
    re.IGNORECASE,
)
JOB_OUTPUT_URI = re.compile(r"^azureml://jobs/[A-Za-z0-9_.-]+/outputs/[A-Za-z0-9_]+(?:/paths/\S*)?$")
ASSET_REF = re.compile(r"^azureml:(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,254})(?::(?P<version>[A-Za-z0-9_.-]+)|@latest)$")
STORAGE_URL = re.compile(r"^(?:https|wasbs|abfss)://[A-Za-z0-9.-]+(?::\d+)?/\S*$")
_ANY_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
COMPUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,14}[A-Za-z0-9]$")
SHM_SIZE = re.compile(r"^(?P<number>[1-9][0-9]*)(?P<unit>[bkmg])$")
FLAG = re.compile(r"^--?[A-Za-z0-9][A-Za-z0-9_-]*$")
# `${{inputs.NAME}}` / `${{outputs.NAME}}` in a script flag: Azure ML substitutes the mounted path, --local binds it.
PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

INPUT_KINDS = ("uri_folder", "uri_file")
INPUT_MODES = ("ro_mount", "download", "direct")
OUTPUT_MODES = ("rw_mount", "upload")
FILE_SUFFIXES = (".csv", ".jsonl", ".json", ".txt", ".tsv", ".parquet", ".zip", ".tar", ".gz", ".npz", ".pt")

# Names whose values must never be written into a job definition (it is stored in the workspace, readable by
# everyone with access, and shown in studio).
_SECRET_WORDS = {"KEY", "APIKEY", "ACCESSKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PWD", "SAS", "CREDENTIAL"}
# A bearer token (an OAuth/Entra access token is a JWT: base64url '{"alg"...' starts with 'eyJ') is a credential too.
_SECRET_VALUE = re.compile(
    r"AccountKey=|SharedAccessSignature=|[?&]sig=|-----BEGIN [A-Z ]*PRIVATE KEY"
    r"|Bearer\s+\S|\b(?-i:eyJ)[A-Za-z0-9_-]{8,}\.",
    re.IGNORECASE,
)
SECRET_HINT = (
    "keep secrets out of job definitions: store them in a workspace connection or Azure Key Vault and read them "
    "in the script (or use a datastore / data asset for storage access)"
)


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return "CONNECTION_STRING" in upper or bool(_SECRET_WORDS & set(upper.split("_")))


def looks_secret(value: str) -> bool:
    return bool(_SECRET_VALUE.search(value))


def classify_input(value: str) -> str:
    """'datastore', 'job_output', 'asset', 'url' or 'local'; a malformed Azure reference raises SpecError."""
    if looks_secret(value):
        raise SpecError("an input URL carries a credential (a SAS signature or account key)", hint=SECRET_HINT)
    if value.startswith("azureml://"):
        if DATASTORE_URI.match(value):
            return "datastore"
        if JOB_OUTPUT_URI.match(value):
            return "job_output"
        raise SpecError(
            f"malformed datastore URI {value!r}",
            hint="use azureml://datastores/<datastore>/paths/<path> (e.g. azureml://datastores/workspaceblobstore/"
            "paths/data/images/) or the full azureml://subscriptions/.../workspaces/<ws>/datastores/... form",
        )
    if value.startswith("azureml:"):
        if ASSET_REF.match(value):
            return "asset"
        raise SpecError(
            f"malformed data asset reference {value!r}",
            hint="use azureml:<name>:<version> (e.g. azureml:chest-xray:3) or azureml:<name>@latest",
        )
    if _ANY_SCHEME.match(value) and not re.match(r"^[A-Za-z]:[\\/]", value):  # not a Windows drive letter
        if STORAGE_URL.match(value):
            return "url"
        raise SpecError(
            f"unsupported input URL {value!r}",
            hint="inputs can be https:// (or wasbs:// / abfss://) URLs, azureml:// datastore URIs, "
            "azureml:<name>:<version> data assets, or local paths",
        )
    return "local"


def infer_input_kind(value: str, default: str) -> str:
    """uri_file or uri_folder from the value itself when it says (a local path, a trailing slash, a file suffix)."""
    if classify_input(value) == "local":
        path = Path(value).expanduser()
        if path.is_file():
            return "uri_file"
        if path.is_dir():
            return "uri_folder"
        return default
    if value.endswith("/"):
        return "uri_folder"
    if value.lower().endswith(FILE_SUFFIXES):
        return "uri_file"
    return default


@dataclass(frozen=True)
class InputSpec:
    """Data bound to a script flag. Local paths must exist (they are uploaded at submission) and become absolute.

    `flag=None` is an input the script's own flags refer to as `${{inputs.NAME}}` (`--input NAME=PATH`).
    """

    value: str
    flag: str | None
    kind: str = "uri_folder"
    mode: str = "ro_mount"
    source: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.value.strip():
            raise SpecError(f"empty value for input {self.flag}", hint="give a path, URL or azureml: reference")
        if self.flag is not None:
            check_flag(self.flag)
        if self.kind not in INPUT_KINDS:
            raise SpecError(f"input kind {self.kind!r} is not supported", hint=f"use one of {', '.join(INPUT_KINDS)}")
        if self.mode not in INPUT_MODES:
            raise SpecError(f"input mode {self.mode!r} is not supported", hint=f"use one of {', '.join(INPUT_MODES)}")
        source = classify_input(self.value)
        object.__setattr__(self, "source", source)
        if source == "local":
            path = Path(self.value).expanduser().resolve()
            if not path.exists():
                raise SpecError(
                    f"local data path {self.value!r} (for {self.flag}) does not exist",
                    hint="check the path, or give an azureml:// datastore URI, an azureml:<name>:<version> data "
                    "asset or an https URL",
                )
            if self.kind == "uri_file" and not path.is_file():
                raise SpecError(f"{self.flag} expects a file but {self.value!r} is a folder")
            if self.kind == "uri_folder" and not path.is_dir():
                raise SpecError(f"{self.flag} expects a folder but {self.value!r} is a file")
            object.__setattr__(self, "value", str(path))

    @property
    def is_local(self) -> bool:
        return self.source == "local"


@dataclass(frozen=True)
class OutputSpec:
    """A folder the job writes, bound to a script flag. rw_mount writes straight to storage as the job runs."""

    flag: str
    mode: str = "rw_mount"
    kind: str = "uri_folder"

    def __post_init__(self) -> None:
        check_flag(self.flag)
        if self.mode not in OUTPUT_MODES:
            raise SpecError(f"output mode {self.mode!r} is not supported", hint=f"use one of {', '.join(OUTPUT_MODES)}")
        if self.kind != "uri_folder":
            raise SpecError(f"output kind {self.kind!r} is not supported", hint="outputs are uri_folder")


CURATED_ENVIRONMENT = re.compile(r"^azureml:[A-Za-z0-9][A-Za-z0-9_.-]*(?::[A-Za-z0-9_.-]+|@latest)$")


@dataclass(frozen=True)
class EnvironmentSpec:
    """Either a registered/curated environment (`azureml:NAME:VERSION`, `azureml:NAME@latest`) or an inline one
    built from a base image and a conda file (one of the definitions in environments/)."""

    name: str
    image: str | None = None
    conda_file: Path | None = None

    def __post_init__(self) -> None:
        if self.is_registered:
            if not CURATED_ENVIRONMENT.match(self.name):
                raise SpecError(
                    f"malformed environment reference {self.name!r}",
                    hint="use azureml:<name>:<version> or azureml:<name>@latest "
                    "(e.g. azureml:AzureML-ACPT-pytorch-2.2-cuda12.1@latest), or one of azure-dl's environments",
                )
            return
        if not self.image or self.conda_file is None:
            raise SpecError(f"environment {self.name!r} needs a base image and a conda file")
        if not self.conda_file.is_file():
            raise SpecError(f"conda file {self.conda_file} of environment {self.name!r} does not exist")

    @property
    def is_registered(self) -> bool:
        return self.name.startswith("azureml:")


def check_flag(flag: str) -> None:
    if not FLAG.match(flag):
        raise SpecError(f"{flag!r} is not a command-line flag", hint="flags look like --data or --checkpoint-dir")


def _check_secret_free(what: str, value: str) -> None:
    if looks_secret(value):
        raise SpecError(f"{what} looks like it carries a credential (not shown)", hint=SECRET_HINT)


def default_shm_size(vm: VMSize) -> str:
    """16g of shared memory for DataLoader workers, but never more than half the VM's RAM."""
    return f"{max(1, min(16, int(vm.ram_gb // 2)))}g"


def _shm_gb(value: str) -> float:
    match = SHM_SIZE.match(value)
    if not match:
        raise SpecError(f"shm_size {value!r} is not a size", hint="use <number><unit> with unit b, k, m or g, e.g. 16g")
    scale = {"b": 1e-9, "k": 1e-6, "m": 1e-3, "g": 1.0}[match["unit"]]
    return int(match["number"]) * scale


@dataclass(frozen=True)
class JobSpec:
    """One command job. `compute=None` means serverless compute (the VM size is then requested per job)."""

    display_name: str
    experiment: str
    code: Path
    vm_size: str
    environment: EnvironmentSpec
    max_hours: float
    module: str | None = None
    script: str | None = None  # relative to `code`
    args: tuple[str, ...] = ()
    inputs: Mapping[str, InputSpec] = field(default_factory=dict)
    outputs: Mapping[str, OutputSpec] = field(default_factory=dict)
    compute: str | None = None
    instance_count: int = 1
    process_count_per_instance: int | None = None  # None: one process per GPU (one on a CPU size)
    env_vars: Mapping[str, str] = field(default_factory=dict)
    shm_size: str | None = None  # None: default_shm_size(vm)
    low_priority: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    vm: VMSize = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_names()
        self._check_command()
        object.__setattr__(self, "vm", get_vm_size(self.vm_size))
        object.__setattr__(self, "vm_size", self.vm.name)
        self._check_resources()
        self._check_io()
        self._check_env_vars_and_tags()
        if not isinstance(self.max_hours, int | float) or not math.isfinite(self.max_hours) or self.max_hours <= 0:
            raise SpecError(
                f"max hours must be a positive number, got {self.max_hours!r}",
                hint="give --max-hours H (e.g. 2); it bounds the job's run time and so its cost",
            )

    # -- checks ----------------------------------------------------------------------------------------------
    def _check_names(self) -> None:
        if not self.display_name.strip():
            raise SpecError("the job needs a display name")
        if not EXPERIMENT_NAME.match(self.experiment):
            raise SpecError(
                f"experiment name {self.experiment!r} is not valid",
                hint="use letters, digits, '-', '_' and '.', starting with a letter or digit",
            )
        if self.compute is not None and not COMPUTE_NAME.match(self.compute):
            raise SpecError(
                f"compute name {self.compute!r} is not valid",
                hint="2-16 characters: letters, digits and '-', starting with a letter, not ending with '-'",
            )

    def _check_command(self) -> None:
        if not self.code.is_dir():
            raise SpecError(f"code folder {self.code} does not exist", hint="give --code DIR with your script in it")
        if bool(self.module) == bool(self.script):
            raise SpecError(
                "empty command: nothing to run" if not (self.module or self.script) else "give a module or a script",
                hint="submit a preset (resnet, lstm) or a script: azure-dl submit path/to/train.py --code DIR",
            )
        if self.module and not MODULE_NAME.match(self.module):
            raise SpecError(f"{self.module!r} is not a Python module name")
        if self.script:
            script = Path(self.script)
            if script.is_absolute() or ".." in script.parts:
                raise SpecError(f"script {self.script!r} must be a path inside the code folder {self.code}")
            if not (self.code / script).is_file():
                raise SpecError(f"script {self.script!r} not found in code folder {self.code}")
        for arg in self.args:
            _check_secret_free("a script argument", arg)

    def _check_resources(self) -> None:
        if not isinstance(self.instance_count, int) or self.instance_count < 1:
            raise SpecError(
                f"instance count must be at least 1, got {self.instance_count!r}",
                hint="--instance-count N is the number of nodes (VMs) the job runs on",
            )
        processes = self.process_count_per_instance
        if processes is not None:
            if not isinstance(processes, int) or processes < 1:
                raise SpecError(f"processes per node must be at least 1, got {processes!r}")
            if not self.vm.is_gpu and processes > 1:
                raise SpecError(
                    f"{processes} processes per node (one per GPU) requested on {self.vm.name}, a CPU size with no GPU",
                    hint="choose a GPU size (e.g. Standard_NC64as_T4_v3 has 4 GPUs) or use one process per node",
                )
            if self.vm.is_gpu and processes > self.vm.gpu_count:
                raise SpecError(
                    f"{processes} processes per node requested but {self.vm.name} has {self.vm.gpu_count} GPU(s)",
                    hint="use at most one process per GPU, or a size with more GPUs (azure-dl catalog list)",
                )
        shm = self.shm_size or default_shm_size(self.vm)
        if _shm_gb(shm) > self.vm.ram_gb:
            raise SpecError(f"shm_size {shm} exceeds the {self.vm.ram_gb:g} GB of RAM of {self.vm.name}")
        object.__setattr__(self, "shm_size", shm)

    def _check_io(self) -> None:
        flags: dict[str, str] = {}
        for kind, mapping in (("input", self.inputs), ("output", self.outputs)):
            for name, entry in mapping.items():
                if not IDENTIFIER.match(name):
                    raise SpecError(f"{kind} name {name!r} is not valid", hint="use letters, digits and '_'")
                if entry.flag is None:
                    continue
                if entry.flag in flags:
                    raise SpecError(f"flag {entry.flag} is bound to both {flags[entry.flag]} and {name}")
                flags[entry.flag] = name
        both = set(self.inputs) & set(self.outputs)
        if both:
            raise SpecError(f"{', '.join(sorted(both))} is both an input and an output")
        for arg in self.args:
            for kind, name in PLACEHOLDER.findall(arg):
                if name not in (self.inputs if kind == "inputs" else self.outputs):
                    raise SpecError(
                        f"script flag {arg!r} refers to {kind}.{name}, which the job does not have",
                        hint=f"declare it with --input {name}=PATH_OR_URI" if kind == "inputs" else None,
                    )
        checkpoints = self.outputs.get("checkpoints")
        if checkpoints is not None and checkpoints.mode != "rw_mount":
            raise SpecError(
                "the checkpoints output must be rw_mount",
                hint="a preempted low-priority node resumes only from checkpoints written straight to storage",
            )

    def _check_env_vars_and_tags(self) -> None:
        for name, value in self.env_vars.items():
            if not IDENTIFIER.match(name):
                raise SpecError(f"environment variable name {name!r} is not valid", hint="use NAME=VALUE")
            if is_secret_name(name):
                raise SpecError(
                    f"environment variable {name} looks like a secret; its value would be stored in the job "
                    "definition in plain text",
                    hint=SECRET_HINT,
                )
            _check_secret_free(f"environment variable {name}", value)
        for key, value in self.tags.items():
            if not key.strip():
                raise SpecError("tag names cannot be empty", hint="use --tag KEY=VALUE")
            _check_secret_free(f"tag {key}", value)

    # -- derived -----------------------------------------------------------------------------------------------
    @property
    def processes_per_node(self) -> int:
        if self.process_count_per_instance is not None:
            return self.process_count_per_instance
        return self.vm.gpu_count if self.vm.is_gpu else 1

    @property
    def is_distributed(self) -> bool:
        return self.instance_count * self.processes_per_node > 1

    @property
    def world_size(self) -> int:
        return self.instance_count * self.processes_per_node
