"""Which Azure ML workspace a command talks to: flags, then environment variables, then studio's config.json."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from azure_dl.errors import ConfigError

ENV_SUBSCRIPTION = "AZURE_SUBSCRIPTION_ID"
ENV_RESOURCE_GROUP = "AZURE_RESOURCE_GROUP"
ENV_WORKSPACE = "AZUREML_WORKSPACE_NAME"

AUTH_CHOICES = ("default", "cli", "managed-identity", "interactive")

# The search of MLClient.from_config (azure-ai-ml 1.35): for each folder name in this order and each file name,
# walk up from the start folder (20 levels), so `.azureml/config.json` anywhere above beats `./config.json`.
CONFIG_DIRS: tuple[str | None, ...] = (".azureml", "aml_config", None)
CONFIG_FILES = ("config.json", "project.json")
CONFIG_SEARCH_LEVELS = 20

# (setting, flag, environment variable, config.json key)
_SETTINGS = (
    ("subscription_id", "--subscription", ENV_SUBSCRIPTION, "subscription_id"),
    ("resource_group", "--resource-group", ENV_RESOURCE_GROUP, "resource_group"),
    ("workspace_name", "--workspace", ENV_WORKSPACE, "workspace_name"),
)


@dataclass(frozen=True)
class WorkspaceSettings:
    """The three coordinates of an Azure ML workspace, and where they came from (for messages, never secret)."""

    subscription_id: str
    resource_group: str
    workspace_name: str
    source: str


def find_config_file(start_dir: Path | str | None = None) -> Path | None:
    """The config.json MLClient.from_config would use when started in `start_dir` (default: the working folder)."""
    start = Path(start_dir) if start_dir is not None else Path.cwd()
    start = start.resolve()
    for folder, file_name in product(CONFIG_DIRS, CONFIG_FILES):
        relative = Path(folder, file_name) if folder else Path(file_name)
        current = start
        for _ in range(CONFIG_SEARCH_LEVELS + 1):
            candidate = current / relative
            if candidate.is_file():
                return candidate
            if current.parent == current:
                break
            current = current.parent
    return None


def read_config_file(path: Path) -> dict[str, str]:
    """The workspace settings in a studio config.json (flat keys, or the older `Scope` ARM id)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"cannot read the workspace config file {path}: {exc}",
            hint="download it again from Azure ML studio (workspace menu > Download config file)",
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"the workspace config file {path} is not a JSON object")
    scope = data.get("Scope")
    if isinstance(scope, str) and scope:
        # /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>
        pieces = scope.split("/")
        if len(pieces) < 9:
            raise ConfigError(f"the `Scope` in {path} is not a workspace resource id: {scope!r}")
        return {"subscription_id": pieces[2], "resource_group": pieces[4], "workspace_name": pieces[8]}
    return {key: str(data[key]) for key in ("subscription_id", "resource_group", "workspace_name") if data.get(key)}


def resolve_workspace(
    *,
    subscription: str | None = None,
    resource_group: str | None = None,
    workspace: str | None = None,
    start_dir: Path | str | None = None,
) -> WorkspaceSettings:
    """Each setting from its flag, else its environment variable, else the nearest config.json.

    Raises ConfigError naming every missing setting and the three ways to provide it.
    """
    flags = {"subscription_id": subscription, "resource_group": resource_group, "workspace_name": workspace}
    values: dict[str, str] = {}
    sources: list[str] = []
    config_path: Path | None = None
    config: dict[str, str] | None = None
    for setting, flag, env_var, _key in _SETTINGS:
        if flags[setting]:
            values[setting] = str(flags[setting])
            sources.append(flag)
        elif os.environ.get(env_var):
            values[setting] = os.environ[env_var]
            sources.append(env_var)
        else:
            if config is None:
                config_path = find_config_file(start_dir)
                config = read_config_file(config_path) if config_path else {}
            if config.get(setting):
                values[setting] = config[setting]
                sources.append(str(config_path))
    missing = [spec for spec in _SETTINGS if spec[0] not in values]
    if missing:
        raise ConfigError(_missing_message(missing, config_path), hint=_missing_hint(missing))
    unique_sources = list(dict.fromkeys(sources))
    return WorkspaceSettings(
        subscription_id=values["subscription_id"],
        resource_group=values["resource_group"],
        workspace_name=values["workspace_name"],
        source=", ".join(unique_sources),
    )


def _missing_message(missing: list[tuple[str, str, str, str]], config_path: Path | None) -> str:
    names = ", ".join(setting for setting, *_ in missing)
    where = f"found {config_path} but it lacks them" if config_path else "no config.json found"
    return f"Azure ML workspace setting missing: {names} ({where})"


def _missing_hint(missing: list[tuple[str, str, str, str]]) -> str:
    flags = " ".join(f"{flag} VALUE" for _s, flag, _e, _k in missing)
    env = ", ".join(env_var for _s, _f, env_var, _k in missing)
    keys = ", ".join(key for *_, key in missing)
    return (
        f"provide it in one of three ways: (1) flags: {flags}; (2) environment variables: {env}; "
        f"(3) the config.json downloaded from Azure ML studio (keys: {keys}) in this folder, a parent folder "
        "or their .azureml/ subfolder"
    )


def add_workspace_arguments(parser: argparse.ArgumentParser) -> None:
    """The workspace and credential flags every Azure verb shares."""
    group = parser.add_argument_group("Azure ML workspace")
    group.add_argument(
        "--subscription",
        metavar="ID",
        default=None,
        help=f"Azure subscription id (default: ${ENV_SUBSCRIPTION}, else the studio config.json)",
    )
    group.add_argument(
        "--resource-group",
        metavar="NAME",
        default=None,
        help=f"resource group of the workspace (default: ${ENV_RESOURCE_GROUP}, else the studio config.json)",
    )
    group.add_argument(
        "--workspace",
        metavar="NAME",
        default=None,
        help=f"Azure ML workspace name (default: ${ENV_WORKSPACE}, else the studio config.json)",
    )
    group.add_argument(
        "--auth",
        choices=AUTH_CHOICES,
        default="default",
        help=(
            "how to sign in: default = azure-identity's DefaultAzureCredential (environment, managed identity, "
            "Azure CLI, ...), cli = `az login`, managed-identity, interactive = browser (default: default)"
        ),
    )


def settings_from_args(args: argparse.Namespace, start_dir: Path | str | None = None) -> WorkspaceSettings:
    """resolve_workspace() from the flags add_workspace_arguments() defined (missing attributes count as unset)."""
    return resolve_workspace(
        subscription=getattr(args, "subscription", None),
        resource_group=getattr(args, "resource_group", None),
        workspace=getattr(args, "workspace", None),
        start_dir=start_dir,
    )
