"""The local pipeline runner on toy components (`python -c` commands): order, reuse, partial re-runs, failures."""

from __future__ import annotations

import json
import stat
import textwrap
from pathlib import Path

import pytest

from azure_dl.backends.local.pipelines import PipelineRun, run_pipeline, summary_rows
from azure_dl.pipeline_inputs import apply_overrides
from azure_dl.pipeline_spec import PipelineSpec, load_pipeline

# Each toy step is one `python -c` program; its arguments come from ${{inputs.x}} / ${{outputs.y}}.
COMPONENTS = {
    "make": (
        {"n": "integer"},
        {"out": "uri_folder"},
        "import sys, pathlib; pathlib.Path(sys.argv[2], 'n.txt').write_text(sys.argv[1])",
        "${{inputs.n}} ${{outputs.out}}",
    ),
    "scale": (
        {"src": "uri_folder", "factor": "number"},
        {"out": "uri_folder"},
        "import sys, pathlib; n = float(pathlib.Path(sys.argv[1], 'n.txt').read_text()); "
        "pathlib.Path(sys.argv[3], 'n.txt').write_text(str(n * float(sys.argv[2])))",
        "${{inputs.src}} ${{inputs.factor}} ${{outputs.out}}",
    ),
    "join": (
        {"a": "uri_folder", "b": "uri_folder"},
        {"out": "uri_folder"},
        "import os, sys, pathlib; a, b, out = map(pathlib.Path, sys.argv[1:4]); "
        "(out / 'joined.txt').write_text((a / 'n.txt').read_text() + '+' + (b / 'n.txt').read_text()); "
        "(out / 'run_id.txt').write_text(os.environ['MLFLOW_RUN_ID'])",
        "${{inputs.a}} ${{inputs.b}} ${{outputs.out}}",
    ),
    "check": (
        {"src": "uri_folder", "limit": "number"},
        {"out": "uri_folder"},
        "import sys, pathlib; n = float(pathlib.Path(sys.argv[1], 'n.txt').read_text()); "
        "sys.exit(f'value {n} is above the limit {sys.argv[2]}') if n > float(sys.argv[2]) else "
        "pathlib.Path(sys.argv[3], 'n.txt').write_text(str(n))",
        "${{inputs.src}} ${{inputs.limit}} ${{outputs.out}}",
    ),
}

# Listed out of dependency order on purpose: the runner must sort them.
PIPELINE = """
type: pipeline
experiment_name: toy-pipeline
inputs:
  n: 3
  factor: 2.0
  limit: 100.0
jobs:
  join:
    type: command
    component: ./join.yml
    inputs:
      a: ${{parent.jobs.make.outputs.out}}
      b: ${{parent.jobs.scale.outputs.out}}
  scale:
    type: command
    component: ./scale.yml
    inputs:
      src: ${{parent.jobs.make.outputs.out}}
      factor: ${{parent.inputs.factor}}
  make:
    type: command
    component: ./make.yml
    inputs:
      n: ${{parent.inputs.n}}
  check:
    type: command
    component: ./check.yml
    inputs:
      src: ${{parent.jobs.scale.outputs.out}}
      limit: ${{parent.inputs.limit}}
  after_check:
    type: command
    component: ./join.yml
    inputs:
      a: ${{parent.jobs.check.outputs.out}}
      b: ${{parent.jobs.make.outputs.out}}
"""


def _component_yaml(name: str) -> str:
    inputs, outputs, program, args = COMPONENTS[name]
    lines = ["type: command", f"name: toy_{name}", 'version: "1"', "inputs:"]
    lines += [f"  {port}:\n    type: {kind}" for port, kind in inputs.items()]
    lines += ["outputs:"] + [f"  {port}:\n    type: {kind}" for port, kind in outputs.items()]
    lines += ["environment:", "  image: python:3.11-slim", f"command: >-\n  python -c {json.dumps(program)} {args}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A toy pipeline, a cache and a tracking store shared by the tests of this module (created once)."""
    root = tmp_path_factory.mktemp("toy")
    for name in COMPONENTS:
        (root / f"{name}.yml").write_text(_component_yaml(name))
    (root / "pipeline.yml").write_text(textwrap.dedent(PIPELINE))
    return {
        "spec": load_pipeline(root / "pipeline.yml"),
        "cache": root / "cache",
        "uri": f"sqlite:///{root / 'mlflow.db'}",
        "code": root,
    }


def _run(toy: dict[str, object], out: Path, spec: PipelineSpec | None = None, **kwargs: object) -> PipelineRun:
    lines: list[str] = []
    run = run_pipeline(
        spec or toy["spec"],  # type: ignore[arg-type]
        out,
        code_dir=toy["code"],  # type: ignore[arg-type]
        code_hash="toy-code-v1",
        cache_dir=toy["cache"],  # type: ignore[arg-type]
        tracking_uri=toy["uri"],  # type: ignore[arg-type]
        render=False,
        announce=lines.append,
        **kwargs,  # type: ignore[arg-type]
    )
    assert len(lines) == len(run.steps)
    return run


def _statuses(run: PipelineRun) -> dict[str, str]:
    return {step.name: step.status for step in run.steps}


def test_runs_in_dependency_order_then_reuses_everything(toy: dict[str, object], tmp_path: Path) -> None:
    import mlflow

    first = _run(toy, tmp_path / "first")
    assert [s.name for s in first.steps] == ["make", "scale", "join", "check", "after_check"]
    assert set(_statuses(first).values()) == {"ran"} and first.ok
    joined = tmp_path / "first" / "steps" / "join" / "outputs" / "out" / "joined.txt"
    assert joined.read_text() == "3+6.0"

    # The step's process logged into its own child run of the pipeline's parent run.
    client = mlflow.MlflowClient(tracking_uri=toy["uri"])  # type: ignore[arg-type]
    join = next(s for s in first.steps if s.name == "join")
    assert (joined.parent / "run_id.txt").read_text() == join.run_id
    child = client.get_run(str(join.run_id))
    assert child.data.tags["mlflow.parentRunId"] == first.parent_run_id
    assert child.info.status == "FINISHED"
    assert client.get_run(str(first.parent_run_id)).data.params["factor"] == "2.0"

    second = _run(toy, tmp_path / "second")
    assert set(_statuses(second).values()) == {"reused"}
    reused = tmp_path / "second" / "steps" / "join" / "outputs" / "out" / "joined.txt"
    assert reused.read_text() == "3+6.0"
    assert not reused.stat().st_mode & stat.S_IWUSR  # cached outputs are read-only
    assert reused.samefile(joined)  # hard links to the one cached copy
    record = json.loads((tmp_path / "second" / "pipeline_run.json").read_text())
    assert record["ok"] and [s["status"] for s in record["steps"]] == ["reused"] * 5
    rows = summary_rows(second)
    assert rows[0][:2] == ["make", "reused"]


def test_changed_input_reruns_only_the_affected_steps(toy: dict[str, object], tmp_path: Path) -> None:
    _run(toy, tmp_path / "base")
    changed = apply_overrides(toy["spec"], {"factor": "3"})  # type: ignore[arg-type]
    run = _run(toy, tmp_path / "changed", changed)
    assert _statuses(run) == {"make": "reused", "scale": "ran", "join": "ran", "check": "ran", "after_check": "ran"}
    assert (tmp_path / "changed" / "steps" / "join" / "outputs" / "out" / "joined.txt").read_text() == "3+9.0"

    # Only `check` reads `limit`; a new limit leaves everything before it reused.
    limit = apply_overrides(changed, {"limit": "50"})
    assert _statuses(_run(toy, tmp_path / "limit", limit)) == {
        "make": "reused",
        "scale": "reused",
        "join": "reused",
        "check": "ran",
        "after_check": "reused",  # check's output is byte-identical, so what reads it is unchanged
    }
    # --no-reuse runs everything again.
    assert set(_statuses(_run(toy, tmp_path / "forced", limit, reuse=False)).values()) == {"ran"}


def test_a_failing_step_stops_its_downstream_and_names_its_log(toy: dict[str, object], tmp_path: Path) -> None:
    import mlflow

    failing = apply_overrides(toy["spec"], {"limit": "1"})  # type: ignore[arg-type]
    run = _run(toy, tmp_path / "fail", failing)
    assert _statuses(run)["check"] == "failed"
    assert _statuses(run)["after_check"] == "skipped"
    assert {_statuses(run)[name] for name in ("make", "scale", "join")} <= {"ran", "reused"}  # other branches run
    assert not run.ok
    failed = run.failed
    assert failed is not None and failed.name == "check"
    assert failed.log_path == tmp_path / "fail" / "steps" / "check" / "step.log"
    assert str(failed.log_path) in failed.message
    assert "value 6.0 is above the limit 1.0" in failed.log_path.read_text()
    assert "upstream check did not complete" in next(s for s in run.steps if s.name == "after_check").message
    client = mlflow.MlflowClient(tracking_uri=toy["uri"])  # type: ignore[arg-type]
    assert client.get_run(str(failed.run_id)).info.status == "FAILED"
    assert client.get_run(str(run.parent_run_id)).info.status == "FAILED"

    # A failure is never cached: fixing the input runs the step again.
    fixed = apply_overrides(toy["spec"], {"limit": "7"})  # type: ignore[arg-type]
    assert _statuses(_run(toy, tmp_path / "fixed", fixed))["check"] == "ran"


def test_missing_local_data_is_a_clear_error(tmp_path: Path) -> None:
    from azure_dl.errors import SpecError
    from azure_dl.pipeline_inputs import validate_inputs

    spec = load_pipeline("resnet")
    with pytest.raises(SpecError, match="data input 'data' has no value"):
        validate_inputs(spec, target="local")
    missing = apply_overrides(spec, {"data": str(tmp_path / "nope")})
    with pytest.raises(SpecError, match="does not exist"):
        validate_inputs(missing, target="local")
