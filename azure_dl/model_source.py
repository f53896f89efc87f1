"""Where `azure-dl register` finds the model: a local training output folder, a job's output, or a sweep's best trial.

`parse_source` validates the command line (pure, before any I/O). `pick_best_trial` chooses a sweep's trial by the
sweep's own primary metric and goal (pure). `fetch` turns a job or sweep source into a local folder by downloading
the output, so that the gate and the content hash see the files before anything is uploaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from azure_dl.errors import AzureDLError, SpecError
from training_scripts.model_folder import ONNX_FILE

DEFAULT_OUTPUT = "model"  # the training scripts' --output, as azure-dl's job YAML names it
JOB_OUTPUT_URI = re.compile(r"^azureml://jobs/(?P<job>[A-Za-z0-9_.-]+)/outputs/(?P<output>[A-Za-z0-9_]+)/?$")
JOB_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")


@dataclass(frozen=True)
class ModelSource:
    kind: Literal["folder", "job", "sweep"]
    folder: Path | None = None
    job: str | None = None
    output: str = DEFAULT_OUTPUT
    sweep: str | None = None

    @property
    def needs_azure(self) -> bool:
        return self.kind != "folder"

    def describe(self) -> str:
        """A line for tags and messages: the folder, the job output URI, or the sweep."""
        if self.kind == "folder":
            return str(Path(self.folder or ".").resolve())
        if self.kind == "job":
            return f"azureml://jobs/{self.job}/outputs/{self.output}"
        return f"sweep {self.sweep} (best trial)"


def parse_source(source: str | None, *, job: str | None = None, sweep: str | None = None) -> ModelSource:
    """Exactly one of SOURCE (a folder or azureml://jobs/<job>/outputs/<output>), --job NAME or --sweep NAME."""
    given = [what for what, value in (("SOURCE", source), ("--job", job), ("--sweep", sweep)) if value]
    if len(given) != 1:
        raise SpecError(
            "give the model's source once: " + (f"got {' and '.join(given)}" if given else "none given"),
            hint="a training output folder, azureml://jobs/<job>/outputs/<output>, --job NAME or --sweep NAME",
        )
    if job or sweep:
        name = str(job or sweep)
        if not JOB_NAME.match(name):
            raise SpecError(f"{'--job' if job else '--sweep'} {name!r} is not a job name")
        return ModelSource("job", job=name) if job else ModelSource("sweep", sweep=name)
    assert source is not None
    if source.startswith("azureml:"):
        match = JOB_OUTPUT_URI.match(source)
        if not match:
            raise SpecError(
                f"{source!r} is not a job output URI",
                hint="use azureml://jobs/<job>/outputs/<output> (e.g. .../outputs/model), or a local folder",
            )
        return ModelSource("job", job=match["job"], output=match["output"])
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise SpecError(f"model folder {folder} does not exist", hint="pass a training output folder (--output)")
    if not (folder / ONNX_FILE).is_file():
        raise SpecError(
            f"{folder} has no {ONNX_FILE}, so it is not a training output folder",
            hint="pass the folder a training script wrote with --output (or download a job: azure-dl jobs download)",
        )
    return ModelSource("folder", folder=folder)


@dataclass(frozen=True)
class Trial:
    name: str
    status: str
    value: float | None


def pick_best_trial(trials: Sequence[Trial], metric: str, goal: str, *, sweep: str = "the sweep") -> Trial:
    """The completed trial with the best finite `metric` value for `goal` ("maximize"/"minimize"); ties: first."""
    if goal not in ("maximize", "minimize"):
        raise AzureDLError(f"{sweep} has goal {goal!r}; expected maximize or minimize")
    scored = [
        trial
        for trial in trials
        if trial.status.lower() == "completed" and trial.value is not None and math.isfinite(trial.value)
    ]
    if not scored:
        states = ", ".join(f"{trial.name} {trial.status}" for trial in trials) or "no trials"
        raise AzureDLError(
            f"{sweep} has no completed trial that reported {metric} ({states})",
            hint="wait for the sweep to finish (azure-dl jobs show NAME), or register one trial with --job NAME",
        )
    best = scored[0]
    for trial in scored[1:]:
        assert trial.value is not None and best.value is not None
        if (trial.value > best.value) if goal == "maximize" else (trial.value < best.value):
            best = trial
    return best


@dataclass(frozen=True)
class FetchedModel:
    """A local folder holding the model, and what the registration records about where it came from."""

    folder: Path
    source: str
    git_commit: str | None = None
    note: str | None = None


def fetch(source: ModelSource, ml_client: Any, workdir: Path, *, read_metric: Any = None) -> FetchedModel:
    """A local folder for `source`: the folder itself, or the job's (best trial's) output downloaded into `workdir`."""
    if source.kind == "folder":
        assert source.folder is not None
        return FetchedModel(source.folder, source.describe())
    from azure_dl.backends.azureml.models import download_job_output, job_git_commit, sweep_info

    note = None
    job, output = source.job, source.output
    if source.kind == "sweep":
        assert source.sweep is not None
        info = sweep_info(ml_client, source.sweep, read_metric)
        trials = [Trial(t.name, t.status, t.value) for t in info.trials]
        best = pick_best_trial(trials, info.primary_metric, info.goal, sweep=f"sweep {source.sweep}")
        job = best.name
        note = f"best trial of sweep {source.sweep}: {best.name} ({info.goal} {info.primary_metric} = {best.value:.4g})"
    assert job is not None
    folder = download_job_output(ml_client, job, output, workdir / f"{job}-{output}")
    if not (folder / ONNX_FILE).is_file():
        raise AzureDLError(
            f"output {output!r} of job {job} holds no {ONNX_FILE}",
            hint="name the output that holds the training output folder: azureml://jobs/<job>/outputs/<output>",
        )
    return FetchedModel(folder, f"azureml://jobs/{job}/outputs/{output}", job_git_commit(ml_client, job), note)
