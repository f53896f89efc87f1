"""Run a pipeline graph on this machine, step by step, with Azure ML-style reuse of unchanged steps.

Each step runs its component's command as a subprocess (the same command Azure ML runs on a node) with inputs
and outputs bound to folders under OUT/steps/<step>/. A step's cache key hashes its component definition
(command, environment files), the code snapshot, its resolved input values and the content of the upstream
outputs it reads: an unchanged key reuses the cached outputs (hard links to read-only files) instead of running,
so changing a training parameter re-runs training and what follows it, nothing before. A failed step stops the
steps that depend on it. Every step gets a child MLflow run under one parent run; the step's process logs into
its child run through MLFLOW_RUN_ID. A named `custom_model` pipeline output is registered in the local MLflow
registry, as Azure ML registers it in the workspace.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from azure_dl.errors import AzureDLError
from azure_dl.pipeline_render import command_argv, render_command
from azure_dl.pipeline_spec import DATA_TYPES, PipelineSpec, Step

StepStatus = Literal["ran", "reused", "failed", "skipped"]
CACHE_ENV_VAR = "AZURE_DL_PIPELINE_CACHE"
DEFAULT_CACHE = Path("~/.azure-dl/pipeline-cache")
RESULT_FILE = "pipeline_run.json"
ENTRY_FILE = "step.json"
LOG_FILE = "step.log"

Executor = Callable[..., Any]  # run_command(argv, *, cwd, env, log_path, render) -> object with .returncode


@dataclass
class StepResult:
    name: str
    status: StepStatus
    duration_s: float = 0.0
    log_path: Path | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    output_hashes: dict[str, str] = field(default_factory=dict)
    cache_key: str | None = None
    run_id: str | None = None
    message: str = ""


@dataclass
class PipelineRun:
    """The outcome of a local pipeline run: one StepResult per step in dependency order."""

    pipeline: str
    out_dir: Path
    steps: list[StepResult]
    parent_run_id: str | None
    tracking_uri: str
    registered: dict[str, Any] = field(default_factory=dict)  # pipeline output -> RegisteredModel

    @property
    def ok(self) -> bool:
        return all(step.status in ("ran", "reused") for step in self.steps)

    @property
    def failed(self) -> StepResult | None:
        return next((step for step in self.steps if step.status == "failed"), None)

    def status_of(self, name: str) -> StepStatus:
        return next(step.status for step in self.steps if step.name == name)

    def to_dict(self) -> dict[str, Any]:
        def step_dict(step: StepResult) -> dict[str, Any]:
            data = asdict(step)
            data["log_path"] = str(step.log_path) if step.log_path else None
            data["outputs"] = {name: str(path) for name, path in step.outputs.items()}
            return data

        return {
            "pipeline": self.pipeline,
            "ok": self.ok,
            "steps": [step_dict(step) for step in self.steps],
            "parent_run_id": self.parent_run_id,
            "tracking_uri": self.tracking_uri,
            "registered": {
                key: {"name": m.name, "version": m.version, "reused": m.reused} for key, m in self.registered.items()
            },
        }


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE).expanduser()


# ----------------------------------------------------------------------------------------------------- hashing
def _hash_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def tree_hash(path: Path) -> str:
    """sha256 of a file, or of a folder's relative file paths and contents (not times or permissions)."""
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(b"file\0" + _file_hash(path).encode())
        return digest.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + _file_hash(file).encode() + b"\0")
    return digest.hexdigest()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def component_fingerprint(step: Step) -> str:
    """The component definition, with the content of local files it names (environment conda files)."""
    raw = step.component.raw
    files: dict[str, str] = {}
    environment = raw.get("environment")
    if isinstance(environment, dict):
        for key in ("conda_file",):
            if isinstance(environment.get(key), str):
                local = step.component.path.parent / environment[key]
                if local.is_file():
                    files[key] = _file_hash(local)
    # The command, inputs/outputs, environment and code all sit in `raw`; compute does not change results.
    return _hash_json({"component": raw, "files": files})


# ------------------------------------------------------------------------------------------------------- cache
def _store(outputs: Mapping[str, Path], log_path: Path, entry: Path, record: dict[str, Any]) -> None:
    """Move a step's outputs into the cache entry, read-only, and write its record last (= complete)."""
    partial = entry.with_name(entry.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "outputs").mkdir(parents=True)
    for name, path in outputs.items():
        shutil.move(str(path), partial / "outputs" / name)
    if log_path.is_file():
        shutil.copy2(log_path, partial / LOG_FILE)
    for file in (p for p in partial.rglob("*") if p.is_file()):
        file.chmod(0o444)
    (partial / ENTRY_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if entry.exists():
        shutil.rmtree(entry)
    partial.rename(entry)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another filesystem: a copy keeps the read-only mode
        shutil.copy2(source, destination)


def _materialize(entry: Path, outputs: Mapping[str, Path]) -> None:
    """Give the step's output folders the cached files as hard links (read-only: nothing edits a cache entry)."""
    for name, path in outputs.items():
        if path.exists():
            shutil.rmtree(path)
        shutil.copytree(entry / "outputs" / name, path, copy_function=_link_or_copy)


def _read_entry(entry: Path) -> dict[str, Any] | None:
    record = entry / ENTRY_FILE
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


# ------------------------------------------------------------------------------------------------------ runner
class _Tracking:
    """Parent and child runs through an explicit MlflowClient (no global MLflow state in this process)."""

    def __init__(self, uri: str, experiment: str) -> None:
        from azure_dl.backends.local.models import ensure_experiment, mlflow_client

        self.uri = uri
        self.client = mlflow_client(uri)
        self.experiment_id = ensure_experiment(self.client, experiment, uri)
        self.parent_id: str | None = None

    def start_parent(self, name: str, params: Mapping[str, Any]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"azure_dl.pipeline": name})
        self.parent_id = run.info.run_id
        for key, value in params.items():
            self.client.log_param(self.parent_id, key, "" if value is None else str(value))
        return self.parent_id

    def start_child(self, step: str, tags: Mapping[str, str]) -> str:
        assert self.parent_id is not None
        all_tags = {"mlflow.parentRunId": self.parent_id, "azure_dl.step": step, **tags}
        return str(self.client.create_run(self.experiment_id, run_name=step, tags=all_tags).info.run_id)

    def end(self, run_id: str, status: str, tags: Mapping[str, str] | None = None) -> None:
        for key, value in (tags or {}).items():
            self.client.set_tag(run_id, key, value)
        self.client.set_terminated(run_id, status)


@dataclass
class _Context:
    """What every step of one run shares."""

    spec: PipelineSpec
    out_dir: Path
    cache: Path
    code_dir: Path
    code_hash: str
    reuse: bool
    tracking: _Tracking
    render: bool
    python: str
    executor: Executor
    results: dict[str, StepResult] = field(default_factory=dict)
    data_hashes: dict[str, str] = field(default_factory=dict)  # local input path -> content hash, once per run

    def step_inputs(self, step: Step) -> tuple[dict[str, Any], dict[str, Any]]:
        """(values for the command, fingerprints for the cache key) of every input the step has a value for."""
        values: dict[str, Any] = {}
        fingerprints: dict[str, Any] = {}
        for port_name, binding in step.inputs.items():
            port = step.component.inputs[port_name]
            if binding.kind == "step":
                upstream = self.results[binding.step]
                values[port_name] = str(upstream.outputs[binding.output])
                fingerprints[port_name] = {"content": upstream.output_hashes[binding.output]}
                continue
            value = binding.value if binding.kind == "literal" else self.spec.inputs[binding.value].value
            if value is None:
                continue
            if port.type in DATA_TYPES:
                path = Path(str(value)).expanduser().resolve()
                if not path.exists():
                    raise AzureDLError(f"step {step.name!r}: input {port_name!r} path {path} does not exist")
                if str(path) not in self.data_hashes:
                    self.data_hashes[str(path)] = tree_hash(path)
                values[port_name] = str(path)
                fingerprints[port_name] = {"content": self.data_hashes[str(path)]}
            else:
                values[port_name] = value
                fingerprints[port_name] = {"value": value}
        return values, fingerprints

    def run_step(self, step: Step) -> StepResult:
        started = time.monotonic()
        step_dir = self.out_dir / "steps" / step.name
        outputs = {name: step_dir / "outputs" / name for name in step.component.outputs}
        log_path = step_dir / LOG_FILE
        values, fingerprints = self.step_inputs(step)
        key = _hash_json({"component": component_fingerprint(step), "code": self.code_hash, "inputs": fingerprints})
        entry = self.cache / key
        cached = _read_entry(entry) if self.reuse else None
        tags = {"azure_dl.cache_key": key}
        if step_dir.exists():
            shutil.rmtree(step_dir)  # a previous run's outputs or log: never edited in place

        if cached is not None:
            _materialize(entry, outputs)
            source = str(cached.get("run_id"))
            run_id = self.tracking.start_child(step.name, {**tags, "azure_dl.reused_from": source})
            self.tracking.end(run_id, "FINISHED", {"azure_dl.status": "reused"})
            hashes = dict(cached["output_hashes"])
            elapsed = time.monotonic() - started
            return StepResult(step.name, "reused", elapsed, entry / LOG_FILE, outputs, hashes, key, run_id)

        for path in outputs.values():
            path.mkdir(parents=True)
        command = render_command(step.component, values, {name: str(path) for name, path in outputs.items()})
        run_id = self.tracking.start_child(step.name, tags)
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (step.raw.get("environment_variables") or {}).items()})
        # The step's process logs into its child run (the scripts honour MLFLOW_RUN_ID first).
        env.update({"MLFLOW_TRACKING_URI": self.tracking.uri, "MLFLOW_RUN_ID": run_id})
        env.pop("MLFLOW_EXPERIMENT_NAME", None)
        try:
            completed = self.executor(
                command_argv(command, self.python), cwd=self.code_dir, env=env, log_path=log_path, render=self.render
            )
        except KeyboardInterrupt:
            self.tracking.end(run_id, "KILLED")
            raise
        if getattr(completed, "interrupted", False):  # Ctrl-C reached the step: stop the whole pipeline
            self.tracking.end(run_id, "KILLED")
            raise KeyboardInterrupt
        returncode = int(getattr(completed, "returncode", 1))
        duration = time.monotonic() - started
        if returncode != 0:
            self.tracking.end(run_id, "FAILED", {"azure_dl.status": "failed"})
            message = f"exit code {returncode}; log: {log_path}"
            return StepResult(step.name, "failed", duration, log_path, outputs, {}, key, run_id, message)

        hashes = {name: tree_hash(path) for name, path in outputs.items()}
        record = {"step": step.name, "component": step.component.name, "cache_key": key, "run_id": run_id}
        _store(outputs, log_path, entry, {**record, "output_hashes": hashes, "duration_s": duration})
        _materialize(entry, outputs)
        self.tracking.end(run_id, "FINISHED", {"azure_dl.status": "ran"})
        return StepResult(step.name, "ran", duration, log_path, outputs, hashes, key, run_id)


def run_pipeline(
    spec: PipelineSpec,
    out_dir: Path,
    *,
    code_dir: Path,
    code_hash: str,
    reuse: bool = True,
    cache_dir: Path | None = None,
    tracking_uri: str | None = None,
    render: bool = True,
    python: str = sys.executable,
    register: bool = True,
    executor: Executor | None = None,
    announce: Callable[[str], None] | None = None,
) -> PipelineRun:
    """Run every step of `spec` in dependency order under out_dir/steps/; see the module docstring.

    `code_dir` is the working directory of every step (the staged snapshot) and `code_hash` its content hash.
    `reuse=False` runs every step (and refreshes its cache entry). `announce` receives one line per step.
    """
    from azure_dl.backends.local.tracking import tracking_uri as default_tracking_uri

    if executor is None:
        from azure_dl.backends.local.process import run_command

        executor = run_command
    say = announce or (lambda message: print(message, file=sys.stderr))
    cache = (cache_dir or default_cache_dir()).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri or default_tracking_uri()
    tracking = _Tracking(uri, str(spec.raw.get("experiment_name") or f"azure-dl-{spec.name}-pipeline"))
    parent_id = tracking.start_parent(f"{spec.name}-pipeline", spec.input_values())
    context = _Context(spec, out_dir.resolve(), cache, code_dir, code_hash, reuse, tracking, render, python, executor)
    registered: dict[str, Any] = {}
    total = len(spec.steps)
    try:
        for position, step in enumerate(spec.steps.values(), start=1):
            blocked = sorted(n for n in step.upstream if context.results[n].status in ("failed", "skipped"))
            if blocked:
                result = StepResult(step.name, "skipped", message=f"upstream {', '.join(blocked)} did not complete")
            else:
                result = context.run_step(step)
                if result.status in ("ran", "reused") and register:
                    _register_outputs(spec, step, result, registered, uri, say)
            context.results[step.name] = result
            timing = f" in {result.duration_s:.1f} s" if result.status != "skipped" else ""
            say(
                f"[{position}/{total}] {step.name}: {result.status}{timing}"
                + (f" ({result.message})" * bool(result.message))
            )
    except BaseException:
        tracking.end(parent_id, "KILLED")
        raise
    run = PipelineRun(spec.name, context.out_dir, list(context.results.values()), parent_id, uri, registered)
    tracking.end(parent_id, "FINISHED" if run.ok else "FAILED")
    (context.out_dir / RESULT_FILE).write_text(json.dumps(run.to_dict(), indent=2) + "\n", encoding="utf-8")
    return run


def _register_outputs(
    spec: PipelineSpec,
    step: Step,
    result: StepResult,
    registered: dict[str, Any],
    uri: str,
    say: Callable[[str], None],
) -> None:
    """Register the step's outputs that are named custom_model pipeline outputs (Azure ML does this itself)."""
    from azure_dl.backends.local.models import register_local

    for port, pipeline_output in step.outputs.items():
        output = spec.outputs.get(pipeline_output) if pipeline_output else None
        if pipeline_output is None or output is None or output.type != "custom_model" or not output.model_name:
            continue
        try:
            model = register_local(result.outputs[port], output.model_name, tracking_uri=uri)
        except AzureDLError as exc:
            result.status = "failed"
            result.message = f"registering {output.model_name} failed: {exc}"
            return
        registered[pipeline_output] = model
        how = "already registered as" if model.reused else "registered"
        say(f"model {how} {model.name}:{model.version} (local MLflow registry, {uri})")


def summary_rows(run: PipelineRun) -> list[list[str]]:
    """Rows for the end-of-run table: step, status, duration, and a note (the log of a failed step)."""
    rows = []
    for step in run.steps:
        duration = f"{step.duration_s:.1f} s" if step.status in ("ran", "reused", "failed") else "-"
        rows.append([step.name, step.status, duration, step.message])
    return rows
