"""A command job's code, inputs, outputs and command line, resolved to this machine's paths.

Inputs: literals (integer, number, string, boolean) give their value; uri_file / uri_folder / mltable give a
local path, from `azureml://datastores/NAME/paths/P`, its long form `azureml://subscriptions/.../datastores/NAME/
paths/P`, or a data asset `azureml:/subscriptions/.../data/NAME/versions/V` or that id bare (store kind "data",
key NAME/V, its properties.dataUri). Named outputs are folders where Azure ML puts them: the default datastore's
azureml/JOB/OUTPUT/. `${{inputs.X}}` and `${{outputs.Y}}` are replaced; a `$[[...]]` block is kept (without its
brackets) when every input it names is set, dropped otherwise, as Azure ML does.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError

# Outputs that are a folder the job writes (a model output is registered from its folder by the parent pipeline).
FOLDER_OUTPUT_TYPES = ("uri_folder", "custom_model", "mlflow_model", "triton_model")
LITERAL_TYPES = ("literal", "integer", "number", "string", "boolean")
SERVERLESS = "serverless"  # azure-ai-ml's SERVERLESS_COMPUTE: a job with no compute of its own
_DATASTORE_URI = re.compile(r"^azureml://(?:subscriptions/.+?/)?datastores/(?P<store>[^/]+)/paths/(?P<path>.*)$")
# `azureml:NAME:V`, `azureml:/subscriptions/.../data/NAME/versions/V`, or that ARM id bare: the SDK sends the bare
# id for an input it resolved from a label (`azureml:NAME@latest`, as Microsoft's hello-dataset sample gives).
_DATA_ASSET = re.compile(
    r"^(?:azureml:(?:/subscriptions/.+?/data/)?|/subscriptions/.+?/data/)(?P<name>[^/:]+)(?:/versions/|:)(?P<version>[^/]+)$"
)
_CODE_ID = re.compile(r"codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$")
_BINDING = re.compile(r"\$\{\{\s*(inputs|outputs)\.([\w.-]+)\s*\}\}")
_OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.S)


class JobSetupError(Exception):
    """The job cannot start as asked: the message names the bad value."""


def _blob_folder(context: ServiceContext, datastore: str, path: str) -> Path:
    record = context.store.get("datastores", datastore)
    if record is None:
        raise JobSetupError(f"the datastore {datastore!r} does not exist in this local workspace")
    return context.data_dir / "blobs" / record["containerName"] / unquote(path)


def resolve_uri(context: ServiceContext, uri: str, depth: int = 0) -> Path:
    match = _DATASTORE_URI.match(uri)
    if match:
        return _blob_folder(context, match["store"], match["path"])
    asset = _DATA_ASSET.match(uri)
    if asset and depth == 0:
        record = context.store.get("data", f"{asset['name']}/{asset['version']}")
        if record is None:
            raise JobSetupError(f"the data asset {asset['name']}:{asset['version']} does not exist ({uri})")
        return resolve_uri(context, record["properties"]["dataUri"], depth + 1)
    raise JobSetupError(
        f"input uri {uri!r} is not served locally: give azureml://datastores/NAME/paths/PATH or a data asset"
    )


def output_folder(context: ServiceContext, job: str, output: str) -> Path:
    default = next((r for r in context.store.list("datastores") if r["isDefault"]), None)
    assert default is not None, "datastores.seed makes the default datastore"
    return context.data_dir / "blobs" / default["containerName"] / "azureml" / job / output


def copy_code(context: ServiceContext, code_id: str | None, workdir: Path) -> None:
    if not code_id:
        return
    match = _CODE_ID.search(code_id)
    record = context.store.get("codes", f"{match['name']}/{match['version']}") if match else None
    if record is None:
        raise JobSetupError(f"the code {code_id!r} does not exist in this local workspace")
    # codeUri = https://HOST/ACCOUNT.blob.SUFFIX/CONTAINER/FOLDER (codes.py): the snapshot is a folder on disk.
    _account, container, *folder = urlsplit(record["properties"]["codeUri"]).path.strip("/").split("/")
    source = context.data_dir / "blobs" / container / "/".join(folder)
    if not source.is_dir():
        raise JobSetupError(f"the snapshot of code {code_id!r} is missing (expected {source})")
    shutil.copytree(source, workdir, dirs_exist_ok=True)


def _input_value(context: ServiceContext, spec: dict[str, Any]) -> str:
    kind = str(spec.get("jobInputType", "")).lower()
    if kind in LITERAL_TYPES:
        return str(spec.get("value"))
    if kind in ("uri_file", "uri_folder", "mltable", *FOLDER_OUTPUT_TYPES):
        return str(resolve_uri(context, str(spec.get("uri"))))
    raise JobSetupError(f"input type {spec.get('jobInputType')!r} is not supported by the local runner")


def render(context: ServiceContext, job: str, properties: dict[str, Any]) -> str:
    """The command with its bindings replaced (paths quoted for bash); output folders are created."""
    values: dict[tuple[str, str], str] = {}
    for name, spec in (properties.get("inputs") or {}).items():
        if spec is not None:
            values[("inputs", name)] = _input_value(context, spec)
    for name, spec in (properties.get("outputs") or {}).items():
        if name == "default" or spec is None:
            continue
        if str(spec.get("jobOutputType", "uri_folder")).lower() not in FOLDER_OUTPUT_TYPES:
            raise JobSetupError(
                f"output {name}: {spec.get('jobOutputType')} outputs are not supported locally "
                f"({', '.join(FOLDER_OUTPUT_TYPES)} are)"
            )
        folder = output_folder(context, job, name)
        folder.mkdir(parents=True, exist_ok=True)
        values[("outputs", name)] = str(folder)

    def _optional(match: re.Match[str]) -> str:
        named = _BINDING.findall(match.group(1))
        return match.group(1) if all(key in values for key in named) else ""

    def _bind(match: re.Match[str]) -> str:
        key = (match.group(1), match.group(2))
        if key not in values:
            raise JobSetupError(f"the command uses ${{{{{key[0]}.{key[1]}}}}}, which the job does not define")
        return shlex.quote(values[key])

    command = _BINDING.sub(_bind, _OPTIONAL.sub(_optional, str(properties.get("command") or "")))
    distribution = properties.get("distribution") or {}
    if str(distribution.get("distributionType", "")).lower() == "pytorch":
        count = int(distribution.get("processCountPerInstance") or 1)
        command = re.sub(
            r"^\s*python\s", f"python -m torch.distributed.run --nproc-per-node {count} --standalone ", command
        )
    return command


def output_uris(context: ServiceContext, name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The REST `outputs` of job `name`: the default (its artifact folder) and each named output's URI."""
    outputs: dict[str, Any] = {
        "default": {
            "description": None,
            "uri": f"azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{name}",
            "assetName": None,
            "mode": "ReadWriteMount",
            "jobOutputType": "uri_folder",
        }
    }
    for output, spec in (properties.get("outputs") or {}).items():
        if output != "default" and spec is not None:
            outputs[output] = {
                "description": spec.get("description"),
                "uri": spec.get("uri") or f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/{output}/",
                "assetName": spec.get("assetName"),
                "mode": spec.get("mode", "ReadWriteMount"),
                "jobOutputType": spec.get("jobOutputType", "uri_folder"),
            }
    return outputs


def check_compute(context: ServiceContext, job: str, compute: str | None) -> None:
    """A 400 when the job names a compute this workspace does not have (no compute: serverless, runs here)."""
    if not compute:
        return
    compute_name = str(compute).rstrip("/").rsplit("/", 1)[-1]
    # "serverless" (bare or as .../computes/serverless, as azure-ai-ml sends it) is Azure ML's serverless compute,
    # no resource of the workspace (recorded: tests/fixtures/recordings/pipeline_job_create.json): it runs here.
    if compute_name == SERVERLESS:
        return
    if context.store.get("computes", compute_name) is None:
        raise ApiError(
            400, "UserError", f"job {job}: the compute {compute_name!r} does not exist in this local workspace"
        )
