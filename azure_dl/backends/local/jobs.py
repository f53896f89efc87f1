"""Run a command job's JobSpec on this machine: the job's own command, its outputs bound to local folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure_dl.backends.local.process import CommandResult
    from azure_dl.spec import JobSpec


def run_locally(
    spec: JobSpec,
    *,
    cwd: Path,
    output: Path,
    nproc: int | None,
    log_path: Path,
    extra: Any = None,
) -> CommandResult:
    """Run the job's command here with outputs bound under `output` (torchrun when nproc > 1).

    `extra` are a sweep trial's values for the searched flags.
    """
    from azure_dl.backends.local.process import run_command, torchrun_wrap
    from azure_dl.backends.local.tracking import tracking_uri
    from azure_dl.render import local_command

    bindings = {"model": output, "checkpoints": output / "checkpoints"}
    argv = local_command(spec, bindings, search=extra)
    if nproc and nproc > 1:
        argv = torchrun_wrap(argv, nproc)
    env = dict(os.environ)
    env.update(spec.env_vars)
    env["MLFLOW_TRACKING_URI"] = tracking_uri()
    return run_command(argv, cwd=cwd, env=env, log_path=log_path, render=True)
