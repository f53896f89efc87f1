"""Job inputs beyond --data (--glove, --pretrained, --input), no laptop paths in a cloud job, and the presets'
two profiles: the same command locally and in Azure, the scenario's settings whenever real data is given."""

from __future__ import annotations

import itertools
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from azure_dl import catalog, staging
from azure_dl.cli.main import main
from azure_dl.presets import PRESETS


@pytest.fixture(autouse=True)
def packaged_catalog_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(tmp_path / "none.toml"))
    monkeypatch.setattr(staging, "git_commit", lambda folder: None)
    monkeypatch.chdir(tmp_path)


def reviews(path: Path) -> Path:
    path.write_text("text,label\ngood film,pos\nbad film,neg\n", encoding="utf-8")
    return path


def job_yaml(out: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((out / "job.yml").read_text(encoding="utf-8"))
    return document


def loads(out: Path) -> Any:
    from azure.ai.ml import load_job

    job: Any = load_job(out / "job.yml")
    job._to_job()._to_rest_object()
    return job


def test_glove_file_becomes_an_uploaded_uri_file_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    glove = tmp_path / "glove.6B.300d.txt"
    glove.write_text("film 0.1 0.2\n", encoding="utf-8")
    out = tmp_path / "out"
    assert (
        main(
            [
                *("submit", "lstm", "--data", str(reviews(tmp_path / "r.csv")), "--glove", str(glove)),
                *("--dry-run", "--out", str(out)),
            ]
        )
        == 0
    )
    document = job_yaml(out)
    assert document["inputs"]["glove"] == {"type": "uri_file", "path": str(glove), "mode": "ro_mount"}
    assert "--glove ${{inputs.glove}}" in document["command"]
    assert loads(out).inputs["glove"].type == "uri_file"
    uploads = next(line for line in capsys.readouterr().out.splitlines() if "uploads" in line)
    assert "glove 13 B" in uploads and "data " in uploads and "total" in uploads


def test_an_unpriced_region_fails_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    argv = ["submit", "lstm", "--data", "azureml:reviews:1", "--region", "eastuss", "--dry-run", "--out", str(out)]
    assert main(argv) == 2
    assert "no list prices for region 'eastuss'; did you mean eastus" in capsys.readouterr().err
    assert not out.exists()


def test_glove_archive_member_uploads_the_archive_and_names_the_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    archive = tmp_path / "glove.6B.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("glove.6B.300d.txt", "film 0.1 0.2\n")
    out = tmp_path / "out"
    argv = ["submit", "lstm", "--data", "azureml:reviews:1", "--glove", f"{archive}:glove.6B.300d.txt"]
    assert main([*argv, "--dry-run", "--out", str(out)]) == 0
    document = job_yaml(out)
    assert document["inputs"]["glove"] == {"type": "uri_file", "path": str(archive), "mode": "ro_mount"}
    assert "--glove '${{inputs.glove}}:glove.6B.300d.txt'" in document["command"]
    loads(out)
    local = run_local(
        monkeypatch,
        ["submit", "lstm", "--local", "--glove", f"{archive}:glove.6B.300d.txt", "--out", str(tmp_path / "l")],
    )
    assert local[local.index("--glove") + 1] == f"{archive}:glove.6B.300d.txt"


def test_glove_asset_passes_through(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["submit", "lstm", "--data", "azureml:reviews:1", "--glove", "azureml:glove-6b:2"]
    assert main([*argv, "--dry-run", "--out", str(out)]) == 0
    assert job_yaml(out)["inputs"]["glove"]["path"] == "azureml:glove-6b:2"


@pytest.mark.parametrize("setting", ["none", "default"])
def test_pretrained_settings_are_flags_not_inputs(tmp_path: Path, setting: str) -> None:
    out = tmp_path / "out"
    argv = ["submit", "resnet", "--data", "azureml:chest-xray:1", "--pretrained", setting]
    assert main([*argv, "--dry-run", "--out", str(out)]) == 0
    document = job_yaml(out)
    assert "pretrained" not in document["inputs"]
    tokens = document["command"].split()
    assert tokens.count("--pretrained") == 1 and tokens[tokens.index("--pretrained") + 1] == setting


def test_pretrained_weights_file_is_an_input_that_replaces_the_profiles_setting(tmp_path: Path) -> None:
    weights = tmp_path / "resnet50.pth"
    weights.write_bytes(b"weights")
    out = tmp_path / "out"
    argv = ["submit", "resnet", "--data", "azureml:chest-xray:1", "--pretrained", str(weights)]
    assert main([*argv, "--dry-run", "--out", str(out)]) == 0
    document = job_yaml(out)
    assert document["inputs"]["pretrained"]["type"] == "uri_file"
    assert document["command"].split().count("--pretrained") == 1
    assert "--pretrained ${{inputs.pretrained}}" in document["command"]
    loads(out)


def test_generic_input_is_named_by_the_scripts_own_flag(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("film\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["submit", "lstm", "--data", "azureml:reviews:1", "--input", f"vocab={vocab}"]
    argv += ["--input", "extra=azureml:glove-6b:3", "--input", "folder=azureml:images:2:uri_folder"]
    assert main([*argv, "--dry-run", "--out", str(out), "--", "--vocab", "${{inputs.vocab}}"]) == 0
    document = job_yaml(out)
    assert document["inputs"]["vocab"]["type"] == "uri_file"
    assert document["inputs"]["extra"]["path"] == "azureml:glove-6b:3"  # the version stays whole
    assert document["inputs"]["folder"] == {"type": "uri_folder", "path": "azureml:images:2", "mode": "ro_mount"}
    assert "--vocab ${{inputs.vocab}}" in document["command"]
    loads(out)


def test_a_flag_naming_an_undeclared_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    argv = ["submit", "lstm", "--data", "azureml:reviews:1", "--dry-run", "--out", str(out)]
    assert main([*argv, "--", "--vocab", "${{inputs.vocab}}"]) == 2
    assert "--input vocab=" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(("flag", "option"), [("--glove", "--glove"), ("--vocab", "--input vocab=")])
def test_a_laptop_path_after_double_dash_fails_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, option: str
) -> None:
    local_file = tmp_path / "somewhere" / "file.txt"
    local_file.parent.mkdir()
    local_file.write_text("x", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["submit", "lstm", "--data", "azureml:reviews:1", "--dry-run", "--out", str(out)]
    assert main([*argv, "--", flag, str(local_file)]) == 2
    err = capsys.readouterr().err
    assert flag in err and option in err
    assert not out.exists()
    # the --flag=value spelling too
    assert main([*argv, "--", f"{flag}={local_file}"]) == 2
    assert not out.exists()


def test_paths_inside_the_code_folder_travel_with_the_snapshot(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('hi')\n", encoding="utf-8")
    (code / "labels.txt").write_text("a\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["submit", str(code / "train.py"), "--compute", "cpu", "--dry-run", "--out", str(out)]
    assert main([*argv, "--", "--labels", str(code / "labels.txt")]) == 0


def test_glove_is_an_lstm_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["submit", "resnet", "--glove", "azureml:g:1", "--dry-run", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "--glove is an input of the lstm preset" in capsys.readouterr().err


def test_a_flag_bound_to_an_input_cannot_be_given_again(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["submit", "lstm", "--glove", "azureml:g:1", "--dry-run", "--out", str(tmp_path / "o")]
    assert main([*argv, "--", "--glove", "azureml:h:1"]) == 2
    assert "--glove is also bound to a job input" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------ profiles
def run_local(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> list[str]:
    from azure_dl.backends.local import process

    calls: list[list[str]] = []

    def fake_run(argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path, render: bool) -> Any:
        calls.append(argv)
        return process.CommandResult(0, log_path, {"done": {}})

    monkeypatch.setattr(process, "run_command", fake_run)
    assert main(argv) == 0
    return calls[0]


def flag_values(argv: list[str]) -> dict[str, str]:
    return {token: value for token, value in itertools.pairwise(argv) if token.startswith("--")}


def test_local_run_with_real_data_trains_the_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    argv = run_local(
        monkeypatch, ["submit", "lstm", "--local", "--data", str(reviews(tmp_path / "r.csv")), "--out", str(out)]
    )
    values = flag_values(argv)
    expected = {"--seq-len": "100", "--batch-size": "64", "--lr": "1e-3", "--hidden-size": "128"}
    expected |= {"--dropout": "0.5", "--patience": "3", "--epochs": "10", "--embed-dim": "300"}
    assert {flag: values[flag] for flag in expected} == expected
    assert "profile: scenario" in capsys.readouterr().err
    # The job it renders runs the same command, token for token, apart from the input and output bindings.
    cloud = shlex.split(job_yaml(out)["command"])
    bindings = {"${{inputs.data}}": str(tmp_path / "r.csv"), "${{outputs.model}}": str(out)}
    bindings["${{outputs.checkpoints}}"] = str(out / "checkpoints")
    assert [bindings.get(token, token) for token in cloud[1:]] == argv[1:]
    assert cloud[0] == "python" and argv[0] == sys.executable


def test_local_run_without_data_trains_the_small_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    argv = run_local(monkeypatch, ["submit", "lstm", "--local", "--out", str(tmp_path / "out")])
    assert flag_values(argv)["--seq-len"] == "64"
    assert "profile: local" in capsys.readouterr().err


def test_profile_flag_forces_either_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = run_local(
        monkeypatch, ["submit", "lstm", "--local", "--profile", "scenario", "--out", str(tmp_path / "a")]
    )
    assert flag_values(scenario)["--seq-len"] == "100"
    data = str(reviews(tmp_path / "r.csv"))
    small = run_local(
        monkeypatch, ["submit", "lstm", "--local", "--data", data, "--profile", "local", "--out", str(tmp_path / "b")]
    )
    assert flag_values(small)["--seq-len"] == "64"


def test_generic_local_input_is_bound_to_its_path_in_a_local_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("film\n", encoding="utf-8")
    argv = ["submit", "lstm", "--local", "--input", f"vocab={vocab}", "--out", str(tmp_path / "o")]
    local = run_local(monkeypatch, [*argv, "--", "--vocab", "${{inputs.vocab}}"])
    assert local[local.index("--vocab") + 1] == str(vocab)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_scenario_settings_are_the_scripts_own_defaults(name: str) -> None:
    """The scenario's flags are spelled out in job.yml; they must not drift from the script's defaults."""
    import importlib

    preset = PRESETS[name]
    parser = importlib.import_module(preset.module).get_args_parser()
    defaults = vars(parser.parse_args(["--data", "d", "--output", "o"]))
    given = vars(parser.parse_args(["--data", "d", "--output", "o", *preset.scenario_args]))
    assert given == defaults
    assert preset.scenario_args, "the scenario's settings are listed"
