"""Workspace settings: flags > environment > studio config.json, found the way MLClient.from_config finds it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from azure_dl.errors import ConfigError
from azure_dl.workspace import (
    add_workspace_arguments,
    find_config_file,
    resolve_workspace,
    settings_from_args,
)

CONFIG = {"subscription_id": "sub-cfg", "resource_group": "rg-cfg", "workspace_name": "ws-cfg"}


def _write_config(folder: Path, data: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(data if data is not None else CONFIG), encoding="utf-8")
    return path


def test_flags_beat_environment_beat_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_config(tmp_path)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "sub-env")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg-env")
    settings = resolve_workspace(subscription="sub-flag", start_dir=tmp_path)
    assert (settings.subscription_id, settings.resource_group, settings.workspace_name) == (
        "sub-flag",
        "rg-env",
        "ws-cfg",
    )
    assert "--subscription" in settings.source
    assert "AZURE_RESOURCE_GROUP" in settings.source
    assert "config.json" in settings.source


def test_environment_alone_needs_no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "s")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "r")
    monkeypatch.setenv("AZUREML_WORKSPACE_NAME", "w")
    settings = resolve_workspace(start_dir=tmp_path)
    assert settings == resolve_workspace(start_dir=tmp_path)
    assert (settings.subscription_id, settings.resource_group, settings.workspace_name) == ("s", "r", "w")


def test_missing_setting_names_it_and_the_three_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "s")
    with pytest.raises(ConfigError) as info:
        resolve_workspace(resource_group="r", start_dir=tmp_path)
    text = str(info.value)
    assert "workspace_name" in text
    assert "subscription_id" not in info.value.message
    assert "--workspace" in text and "AZUREML_WORKSPACE_NAME" in text and "config.json" in text


def test_config_json_is_found_in_a_parent_folder(tmp_path: Path) -> None:
    path = _write_config(tmp_path)
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_config_file(deep) == path
    assert resolve_workspace(start_dir=deep).workspace_name == "ws-cfg"


def test_dot_azureml_higher_up_beats_plain_config_nearer(tmp_path: Path) -> None:
    # MLClient.from_config searches `.azureml/config.json` up the tree before plain `config.json`.
    preferred = _write_config(tmp_path / ".azureml", {**CONFIG, "workspace_name": "ws-dot"})
    nearer = tmp_path / "project"
    _write_config(nearer)
    assert find_config_file(nearer) == preferred
    assert resolve_workspace(start_dir=nearer).workspace_name == "ws-dot"


def test_config_with_arm_scope(tmp_path: Path) -> None:
    scope = "/subscriptions/s1/resourceGroups/r1/providers/Microsoft.MachineLearningServices/workspaces/w1"
    (tmp_path / "config.json").write_text(json.dumps({"Scope": scope}), encoding="utf-8")
    settings = resolve_workspace(start_dir=tmp_path)
    assert (settings.subscription_id, settings.resource_group, settings.workspace_name) == ("s1", "r1", "w1")


def test_incomplete_config_is_a_missing_setting(tmp_path: Path) -> None:
    _write_config(tmp_path, {"subscription_id": "s", "resource_group": "r"})
    with pytest.raises(ConfigError, match="workspace_name") as info:
        resolve_workspace(start_dir=tmp_path)
    assert "lacks" in str(info.value)


def test_unreadable_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_workspace(start_dir=tmp_path)


def test_workspace_arguments_and_their_defaults(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_workspace_arguments(parser)
    args = parser.parse_args(["--subscription", "s", "--resource-group", "r", "--workspace", "w", "--auth", "cli"])
    assert args.auth == "cli"
    settings = settings_from_args(args, start_dir=tmp_path)
    assert (settings.subscription_id, settings.resource_group, settings.workspace_name) == ("s", "r", "w")
    assert parser.parse_args([]).auth == "default"
    assert "default:" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--auth", "password"])
