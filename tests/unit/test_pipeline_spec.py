"""Pipeline definitions: Azure ML's own loaders accept the components and pipelines (golden files), overrides are
type-checked, the dry-run YAML is self-contained and loads with load_job, and the plan bounds the cost."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from azure_dl.cluster_needs import ClusterNeeds
from azure_dl.errors import SpecError
from azure_dl.pipeline_inputs import apply_overrides, parse_overrides, validate_inputs
from azure_dl.pipeline_plan import plan_pipeline, plan_rows
from azure_dl.pipeline_render import pipeline_document, render_command, write_pipeline_yaml
from azure_dl.pipeline_spec import PIPELINES_DIR, PRESETS, load_component, load_pipeline
from tests.golden_utils import assert_golden, normalise

pytestmark = pytest.mark.filterwarnings(
    "ignore::marshmallow.warnings.ChangedInMarshmallow4Warning",
    "ignore::marshmallow.warnings.RemovedInMarshmallow4Warning",
)

REPO_ROOT = PIPELINES_DIR.parent
COMPONENTS = sorted((PIPELINES_DIR / "components").glob("*.yml"))


@pytest.fixture(autouse=True)
def packaged_catalogue_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plans read the packaged VM catalogue, not whatever overlay this machine's user has."""
    monkeypatch.setenv("AZURE_DL_CATALOG", str(tmp_path / "no-user-catalogue.toml"))


def _sdk_component_text(path: Path) -> str:
    """What azure.ai.ml understood of a component file, with machine- and pin-specific parts replaced."""
    from azure.ai.ml import load_component as sdk_load_component

    component = sdk_load_component(path)
    assert component._validate().passed
    data = component._to_dict()
    data["code"] = data["code"].replace(str(REPO_ROOT), "<repo>")
    environment = data["environment"]
    environment["version"] = "<anonymous environment hash>"
    environment["conda_file"] = "<conda.yml of " + yaml.safe_load(path.read_text())["environment"]["conda_file"] + ">"
    return yaml.safe_dump(data, sort_keys=False, width=1000)


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: p.stem)
def test_component_round_trips_through_load_component(path: Path) -> None:
    assert_golden(f"component_{path.stem}.yml", _sdk_component_text(path))
    ours = load_component(path)
    from azure.ai.ml import load_component as sdk_load_component

    sdk = sdk_load_component(path)
    assert list(ours.inputs) == list(sdk.inputs)
    for name, port in ours.inputs.items():
        assert port.type == sdk.inputs[name].type, name
        assert port.optional == bool(sdk.inputs[name].optional), name
    assert {name: p.type for name, p in ours.outputs.items()} == {n: o.type for n, o in sdk.outputs.items()}


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: p.stem)
def test_component_environment_is_one_of_environments(path: Path) -> None:
    from azure_dl.environments import read_image

    raw = yaml.safe_load(path.read_text())
    conda = (path.parent / raw["environment"]["conda_file"]).resolve()
    assert conda.is_file() and conda.parent.parent == REPO_ROOT / "environments"
    assert raw["environment"]["image"] == read_image(conda.parent)
    assert (path.parent / raw["code"]).resolve() == REPO_ROOT
    expected = "train-gpu" if path.stem == "train_resnet" else "train-cpu"  # the LSTM scenario trains on CPU
    assert conda.parent.name == expected


def test_amlignore_uploads_only_training_scripts() -> None:
    from azure.ai.ml._utils._asset_utils import get_ignore_file

    ignore = get_ignore_file(REPO_ROOT)
    assert ignore.exists()
    uploaded = ["training_scripts/prepare_data.py", "training_scripts/evaluate.py", "training_scripts/__init__.py"]
    left_out = [
        "azure_dl/cli/main.py",
        "tests/conftest.py",
        "pipelines/resnet.yml",
        ".venv/bin/python",
        "README.md",
        "mlflow.db",
        "training_scripts/__pycache__/evaluate.cpython-311.pyc",
    ]
    assert [p for p in uploaded if ignore.is_file_excluded(REPO_ROOT / p)] == []
    assert [p for p in left_out if not ignore.is_file_excluded(REPO_ROOT / p)] == []


@pytest.mark.parametrize("preset", PRESETS)
def test_pipeline_definition_loads_with_load_job(preset: str) -> None:
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import PipelineJob

    job = load_job(PIPELINES_DIR / f"{preset}.yml")
    assert isinstance(job, PipelineJob)
    assert job._validate().passed
    rest = job._to_rest_object().as_dict()["properties"]
    assert rest["outputs"]["registered_model"] == {"assetName": f"azure-dl-{preset}", "jobOutputType": "custom_model"}
    train_compute = "gpu_compute" if preset == "resnet" else "cpu_compute"  # the LSTM scenario trains on CPU
    assert rest["jobs"]["train"]["computeId"] == f"${{{{parent.inputs.{train_compute}}}}}"
    assert rest["jobs"]["prepare"]["computeId"] == "${{parent.inputs.cpu_compute}}"

    spec = load_pipeline(preset)
    assert list(spec.steps) == ["prepare", "train", "evaluate", "register"]
    assert spec.steps["register"].outputs == {"registered_model": "registered_model"}


def _data_for(preset: str, out: Path) -> Path:
    if preset == "resnet":
        (out / "data" / "cats").mkdir(parents=True)
        return out / "data"
    (out / "data").mkdir(parents=True)
    (out / "data" / "reviews.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    return out / "data" / "reviews.csv"


@pytest.mark.parametrize("preset", PRESETS)
def test_dry_run_yaml_is_self_contained_golden_and_loads(preset: str, tmp_path: Path) -> None:
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import PipelineJob

    from azure_dl.snapshot import package_dir, stage_snapshot

    out = tmp_path / "dry"
    data = _data_for(preset, out)
    spec = apply_overrides(load_pipeline(preset), {"data": str(data), "epochs": "3", "train.max_steps": "50"})
    validate_inputs(spec, target="azure")
    snapshot = stage_snapshot(package_dir(), out / "snapshot")
    path = write_pipeline_yaml(spec, out, code_dir=snapshot.path)

    text = path.read_text()
    assert str(tmp_path) not in text  # every path relative to the folder: it can be moved or zipped
    assert_golden(f"pipeline_{preset}.yml", normalise(text, out_dir=out))

    job = load_job(path)
    assert isinstance(job, PipelineJob)
    assert job._validate().passed
    rest = job._to_rest_object().as_dict()["properties"]
    assert rest["inputs"]["epochs"]["value"] == "3"
    assert rest["jobs"]["train"]["inputs"]["max_steps"]["value"] == "50"
    train = job.jobs["train"]
    assert (path.parent / train.component.code).resolve() == snapshot.path.resolve()
    train_env = "train-gpu" if preset == "resnet" else "train-cpu"
    assert (out / "environments" / train_env / "conda.yml").is_file()


def test_overrides_are_type_checked_with_actionable_errors() -> None:
    spec = load_pipeline("resnet")
    with pytest.raises(SpecError, match=r"'epochs' takes an integer, got '2\.5'"):
        apply_overrides(spec, {"epochs": "2.5"})
    with pytest.raises(SpecError, match="'lr' takes a number, got 'fast'"):
        apply_overrides(spec, {"lr": "fast"})
    with pytest.raises(SpecError, match="must be one of macro_f1, balanced_accuracy, accuracy, auroc; got 'loss'"):
        apply_overrides(spec, {"gate_metric": "loss"})
    with pytest.raises(SpecError, match=r"'gate_threshold' must be <= 1\.0; got 1\.5"):
        apply_overrides(spec, {"gate_threshold": "1.5"})
    with pytest.raises(SpecError, match="'epochs' must be >= 1; got 0"):
        apply_overrides(spec, {"epochs": "0"})
    with pytest.raises(SpecError) as unknown:
        apply_overrides(spec, {"epoch": "3"})
    assert "has no input 'epoch'" in str(unknown.value)
    assert "epochs (integer, default 50)" in str(unknown.value)
    assert "data (uri_folder, no default)" in str(unknown.value)
    with pytest.raises(SpecError, match="no step 'training'"):
        apply_overrides(spec, {"training.max_steps": "3"})
    with pytest.raises(SpecError, match=r"settable inputs of train: .*max_steps"):
        apply_overrides(spec, {"train.data": "x"})
    with pytest.raises(SpecError, match="NAME=VALUE"):
        parse_overrides(["epochs"])

    changed = apply_overrides(
        spec, parse_overrides(["epochs=3", "lr=1e-2", "gpu_compute=my-gpus", "train.max_steps=7"])
    )
    assert (changed.inputs["epochs"].value, changed.inputs["lr"].value) == (3, 0.01)
    assert changed.compute_of(changed.steps["train"]) == "my-gpus"
    assert spec.inputs["epochs"].value == 50  # the original is unchanged
    train = changed.steps["train"]
    values: dict[str, Any] = {**changed.resolve_step_inputs(train), "data": "/d"}
    command = render_command(train.component, values, {"model": "/m", "checkpoints": "/c"})
    assert "--epochs 3 --lr 0.01" in command and command.endswith("--seed 0 --max-steps 7")
    assert "--max-steps" not in render_command(
        spec.steps["train"].component,
        {**spec.resolve_step_inputs(spec.steps["train"]), "data": "/d"},
        {"model": "/m", "checkpoints": "/c"},
    )


def test_data_inputs_are_validated_for_each_target(tmp_path: Path) -> None:
    spec = load_pipeline("lstm")
    for uri in (
        "azureml:reviews:3",
        "azureml:reviews@latest",
        "azureml://datastores/blob/paths/r.csv",
        "https://x.org/r.csv",
    ):
        validate_inputs(apply_overrides(spec, {"data": uri}), target="azure")
        with pytest.raises(SpecError, match="a local run reads local files"):
            validate_inputs(apply_overrides(spec, {"data": uri}), target="local")
    with pytest.raises(SpecError, match="malformed data URI 'azureml:'"):
        validate_inputs(apply_overrides(spec, {"data": "azureml:"}), target="azure")
    with pytest.raises(SpecError, match="is a uri_file but"):
        validate_inputs(apply_overrides(spec, {"data": str(tmp_path)}), target="local")
    with pytest.raises(SpecError, match="does not exist"):
        validate_inputs(apply_overrides(spec, {"data": str(tmp_path / "missing.csv")}), target="azure")


def test_plan_names_vm_sizes_and_bounds_cost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_pipeline("resnet")
    plan = plan_pipeline(spec)
    train = next(step for step in plan.steps if step.step == "train")
    assert (train.compute, train.vm_size, train.hours) == ("nc4as-t4-v3", "Standard_NC4as_T4_v3", 2.0)
    # The packaged catalogue's dated list prices (eastus by default) price every step.
    assert train.price_per_hour is not None and train.cost_bound == pytest.approx(train.price_per_hour * 2.0)
    assert plan.cost_bound is not None and plan.region == "eastus" and "retrieved" in plan.price_sources[0]
    assert plan.registers == ("azure-dl-resnet",)
    # A region without list prices: unknown, never 0.
    elsewhere = plan_pipeline(spec, region="westeurope")
    assert elsewhere.cost_bound is None and plan_rows(elsewhere)[-1][-1] == "unknown"
    # One entry per cluster the steps use, each on 1 dedicated node.
    assert plan.needs == (
        ClusterNeeds("d4s-v3", "Standard_D4s_v3", nodes=1, low_priority=False),
        ClusterNeeds("nc4as-t4-v3", "Standard_NC4as_T4_v3", nodes=1, low_priority=False),
    )

    catalogue = tmp_path / "prices.toml"  # test prices, only to check the arithmetic
    catalogue.write_text(
        textwrap.dedent(
            """
            [[size]]
            name = "Standard_NC4as_T4_v3"
            price_per_hour = 0.5
            price_source = "test"
            [[size]]
            name = "Standard_D4s_v3"
            price_per_hour = 0.2
            price_source = "test"
            """
        )
    )
    monkeypatch.setenv("AZURE_DL_CATALOG", str(catalogue))
    priced = plan_pipeline(spec)
    assert next(s for s in priced.steps if s.step == "train").cost_bound == pytest.approx(1.0)  # 0.5 x 2 h
    assert priced.cost_bound == pytest.approx(0.5 * 2 + 0.2 * (1 + 1 + 0.25))

    custom = plan_pipeline(apply_overrides(spec, {"gpu_compute": "team-gpus"}))
    step = next(s for s in custom.steps if s.step == "train")
    assert step.vm_size is None and step.cost_bound is None and "not a catalogue-named cluster" in step.vm_summary


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_graph_errors_are_caught_at_load(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "c.yml",
        """
        type: command
        name: c
        inputs: {x: {type: uri_folder}}
        outputs: {y: {type: uri_folder}}
        command: python -c pass ${{inputs.x}} ${{outputs.y}}
        """,
    )
    cycle = """
        type: pipeline
        jobs:
          a: {type: command, component: ./c.yml, inputs: {x: "${{parent.jobs.b.outputs.y}}"}}
          b: {type: command, component: ./c.yml, inputs: {x: "${{parent.jobs.a.outputs.y}}"}}
        """
    with pytest.raises(SpecError, match="cycle"):
        load_pipeline(_write(tmp_path, "cycle.yml", cycle))
    missing = """
        type: pipeline
        jobs:
          a: {type: command, component: ./c.yml, inputs: {x: "${{parent.jobs.z.outputs.y}}"}}
        """
    with pytest.raises(SpecError, match="which no step produces"):
        load_pipeline(_write(tmp_path, "missing.yml", missing))
    undeclared = """
        type: pipeline
        jobs:
          a: {type: command, component: ./c.yml, inputs: {x: "${{parent.inputs.data}}"}}
        """
    with pytest.raises(SpecError, match="undeclared pipeline input 'data'"):
        load_pipeline(_write(tmp_path, "undeclared.yml", undeclared))
    unknown = """
        type: pipeline
        jobs:
          a: {type: command, component: ./c.yml, inputs: {q: 1}}
        """
    with pytest.raises(SpecError, match="sets unknown input 'q'"):
        load_pipeline(_write(tmp_path, "unknown.yml", unknown))
    bad_command = _write(
        tmp_path,
        "bad.yml",
        """
        type: command
        inputs: {x: {type: integer, optional: true}}
        command: python -c pass ${{inputs.x}}
        """,
    )
    with pytest.raises(SpecError, match=r"must sit inside \$\[\[...\]\]"):
        load_component(bad_command)
    with pytest.raises(SpecError, match="unknown pipeline 'bert'"):
        load_pipeline("bert")


def test_a_steps_optional_file_input_is_wired_by_its_name(tmp_path: Path) -> None:
    """`--input glove=FILE` binds train's optional glove input through a pipeline input, uploaded like data."""
    glove = tmp_path / "glove.6B.zip"
    glove.write_bytes(b"zip")
    spec = apply_overrides(load_pipeline("lstm"), {"glove": str(glove)})
    assert spec.inputs["glove"].type == "uri_file" and spec.inputs["glove"].value == str(glove)
    train = spec.steps["train"]
    assert train.inputs["glove"].kind == "parent" and train.inputs["glove"].value == "glove"
    command = render_command(
        train.component, spec.resolve_step_inputs(train) | {"data": "d"}, {"model": "m", "checkpoints": "c"}
    )
    assert f"--glove {glove}" in command
    unset = load_pipeline("lstm")
    assert "--glove" not in render_command(
        unset.steps["train"].component,
        unset.resolve_step_inputs(unset.steps["train"]) | {"data": "d"},
        {"model": "m", "checkpoints": "c"},
    )
    out = tmp_path / "out"
    validate_inputs(apply_overrides(spec, {"data": "azureml:reviews:1"}), target="azure")
    document = pipeline_document(spec, out, code_dir=tmp_path)
    assert document["inputs"]["glove"]["type"] == "uri_file"
    assert document["jobs"]["train"]["inputs"]["glove"] == "${{parent.inputs.glove}}"
    resnet = apply_overrides(load_pipeline("resnet"), {"train.pretrained_weights": "azureml:resnet50-weights:1"})
    assert resnet.inputs["pretrained_weights"].value == "azureml:resnet50-weights:1"
    with pytest.raises(SpecError, match="pretrained_weights"):
        apply_overrides(load_pipeline("resnet"), {"train.weights": "x"})
