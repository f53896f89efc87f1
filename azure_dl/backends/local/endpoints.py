"""A local endpoint: a model's scoring script under the real Azure ML inference server (azmlinfsrv) on this machine.

`LocalEndpoint` stages what an Azure ML deployment container holds - the uploaded code (a copy of
training_scripts/, or with `ServerSpec.code_dir` a deployment's own code folder and `scoring_script` in it, as the
local workspace service runs a deployment's uploaded code asset) and the model in Azure's layout
(AZUREML_MODEL_DIR = azureml-models/NAME/VERSION, the registered folder one level below it, here a symlink to the
model folder) - and sets AML_APP_ROOT as Azure ML does, to the
folder of the scoring script (code/training_scripts, so the scripts must find their package themselves). It starts
the server in its own process group, waits until `GET /` answers "Healthy", and stops the whole group (SIGTERM,
then SIGKILL) on `stop()`, which drains in-flight requests first. The server binds
127.0.0.1 unless told otherwise: azmlinfsrv hard-codes 0.0.0.0, so it is started through endpoint_launcher.py,
which changes only that host before calling the server's own `amlserver.run()`.

The pure pieces (`model_task`, `server_argv`, `server_env`) build the command and can be checked without a server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from azure_dl.errors import AzureDLError
from training_scripts.model_folder import PREPROCESS_FILE, SERVING_FILES, VOCAB_FILE

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001  # azmlinfsrv's own default
DEFAULT_STARTUP_TIMEOUT_S = 120.0
GUNICORN_GRACEFUL_TIMEOUT_S = 30  # gunicorn's --graceful-timeout default; azmlinfsrv does not change it
# stop() waits for gunicorn's own drain (in-flight requests get up to its graceful timeout), plus a margin for the
# master to reap its workers, before it SIGKILLs the group: a shorter grace would cut the drain short.
DEFAULT_STOP_GRACE_S = GUNICORN_GRACEFUL_TIMEOUT_S + 5.0
LAUNCHER_FILE = "endpoint_launcher.py"
SCORING_SCRIPTS = {
    "image-classification": "training_scripts/score_resnet.py",
    "text-classification": "training_scripts/score_lstm.py",
}
# The server's own settings that would change what we start; removed from the environment we pass on.
_SERVER_ENV_OVERRIDES = ("SEPERATE_HEALTH_ENDPOINT", "HEALTH_PORT", "AZUREML_ENTRY_SCRIPT", "AZUREML_CONFIG_FILE")


def model_task(model_dir: Path) -> str:
    """The model folder's task from preprocess.json, after checking the files scoring needs are there."""
    missing = [name for name in SERVING_FILES if not (model_dir / name).is_file()]
    if missing:
        raise AzureDLError(
            f"{model_dir} is not a training output folder: {', '.join(missing)} missing",
            hint="pass the folder a training run wrote with --output (or `azure-dl jobs download`), "
            "or a registered model as models:/NAME/VERSION",
        )
    try:
        task = json.loads((model_dir / PREPROCESS_FILE).read_text(encoding="utf-8")).get("task")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise AzureDLError(f"{model_dir / PREPROCESS_FILE} is not a JSON object: {exc}") from exc
    if task not in SCORING_SCRIPTS:
        raise AzureDLError(
            f"{model_dir / PREPROCESS_FILE} names task {task!r}; azure-dl serves {', '.join(SCORING_SCRIPTS)}"
        )
    if task == "text-classification" and not (model_dir / VOCAB_FILE).is_file():
        raise AzureDLError(f"{model_dir} holds a text model but no {VOCAB_FILE}")
    return str(task)


@dataclass(frozen=True)
class ResolvedModel:
    """A model to serve: its training output folder, and the name and version it is staged under."""

    path: Path
    name: str
    version: str


def resolve_model(ref: str, *, tracking_uri: str | None = None) -> ResolvedModel:
    """MODEL as `azure-dl serve` takes it: an existing training output folder, or a locally registered
    `models:/NAME/VERSION` / `NAME:VERSION` (VERSION may be `latest`), downloaded from the local MLflow registry."""
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path.resolve()
        return ResolvedModel(path, path.name, "1")
    if ref.startswith("models:/") or ":" in ref:
        from azure_dl.backends.local.models import parse_model_ref, resolve_local_model

        name, version = parse_model_ref(ref)
        return ResolvedModel(resolve_local_model(ref, tracking_uri=tracking_uri), name, version)
    raise AzureDLError(
        f"model {ref!r} is neither an existing folder nor a registered model reference",
        hint="pass a training output folder, models:/NAME/VERSION or NAME:VERSION",
    )


def training_scripts_dir() -> Path:
    """The training_scripts package folder this azure_dl runs with (a checkout or site-packages)."""
    import training_scripts

    return Path(training_scripts.__file__).resolve().parent


def stage_code_root(destination: Path, training_scripts: Path | None = None) -> Path:
    """Copy training_scripts/ (no caches) into `destination`: the code a deployment uploads."""
    training_scripts = training_scripts or training_scripts_dir()
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / "training_scripts"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(training_scripts, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    return destination


def copy_code_root(source: Path, destination: Path) -> Path:
    """Copy a deployment's own code folder (no caches) to `destination`: the code root the container gets."""
    if not source.is_dir():
        raise AzureDLError(f"the deployment's code folder {source} does not exist")
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


def scoring_script_in(code_root: Path, scoring_script: str) -> Path:
    """`scoring_script` (relative, as code_configuration names it) inside the code root; an error if it is not."""
    script = (code_root / scoring_script).resolve()
    if not script.is_relative_to(code_root.resolve()) or not script.is_file():
        raise AzureDLError(
            f"scoring script {scoring_script!r} is not a file in the deployment's code",
            hint="code_configuration.scoring_script is relative to code_configuration.code",
        )
    return script


def stage_launcher(destination: Path) -> Path:
    """Copy endpoint_launcher.py into a folder of its own (run by path, its folder lands on sys.path)."""
    destination.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(Path(__file__).with_name(LAUNCHER_FILE), destination / LAUNCHER_FILE))


def entry_script(code_root: Path, task: str) -> Path:
    """The scoring script for `task` inside a staged code root."""
    return code_root / SCORING_SCRIPTS[task]


def stage_model_dir(destination: Path, model_dir: Path, name: str, version: str) -> Path:
    """AZUREML_MODEL_DIR as Azure ML lays it out for one model: destination/NAME/VERSION/<folder> -> model_dir."""
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "-", name) or "model"
    version_dir = destination / safe_name / (version if version.isdigit() else "1")
    version_dir.mkdir(parents=True, exist_ok=True)
    link = version_dir / (model_dir.name or "model")
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(model_dir.resolve(), target_is_directory=True)
    return version_dir


def server_argv(
    python: str, launcher: Path, script: Path, model_dir: Path, *, host: str, port: int, workers: int
) -> list[str]:
    """The command that runs azmlinfsrv (through the launcher) with the scoring script `script`."""
    if workers < 1:
        raise AzureDLError(f"--workers {workers}: need at least one worker process")
    return [
        python,
        str(launcher),
        "--host",
        host,
        "--entry_script",
        str(script),
        "--model_dir",
        str(model_dir),
        "--port",
        str(port),
        "--worker_count",
        str(workers),
    ]


def server_env(
    base: Mapping[str, str],
    app_root: Path,
    model_dir: Path,
    *,
    workers: int,
    isolated: bool = False,
    runtime_dir: Path | None = None,
) -> dict[str, str]:
    """The server's environment: AML_APP_ROOT (the scoring script's folder, as in Azure ML) and AZUREML_MODEL_DIR
    set, the server's own overrides removed.

    With several workers and no AZURE_DL_ORT_THREADS set, each worker's ONNX Runtime gets cores / workers
    threads so that the workers do not fight over the cores. `isolated` (a separate inference environment)
    drops PYTHONPATH and PYTHONHOME so that nothing from this environment leaks into it. `runtime_dir` becomes
    XDG_RUNTIME_DIR, where gunicorn (>= 25.1) puts its control socket: otherwise every local server shares
    ~/.gunicorn/gunicorn.ctl and the first to stop removes the others' socket.
    """
    env = {key: value for key, value in base.items() if key not in _SERVER_ENV_OVERRIDES}
    if isolated:
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
    env["AML_APP_ROOT"] = str(app_root)
    env["AZUREML_MODEL_DIR"] = str(model_dir)
    env["PYTHONUNBUFFERED"] = "1"
    if runtime_dir is not None:
        env["XDG_RUNTIME_DIR"] = str(runtime_dir)
    if workers > 1 and not env.get("AZURE_DL_ORT_THREADS"):
        env["AZURE_DL_ORT_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    return env


def probe_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host` (a wildcard address means loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port that is free on `host` right now (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise AzureDLError(
                f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick another port with --port"
            ) from exc


@dataclass(frozen=True)
class ServerSpec:
    """What to serve and how: the model folder, its task, the interpreter, host, port and worker count."""

    model_dir: Path
    task: str
    model_name: str = "model"
    model_version: str = "1"
    python: str = sys.executable
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    isolated: bool = False  # a separate inference environment (see server_env)
    # A deployment's own code: this folder is the code root (instead of a copy of training_scripts/), the script
    # is `scoring_script` in it, and PYTHONPATH is that root, so its packages win over any installed copy.
    code_dir: Path | None = None
    scoring_script: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)  # the deployment's environment_variables

    @property
    def base_url(self) -> str:
        return f"http://{probe_host(self.host)}:{self.port}"

    @property
    def scoring_url(self) -> str:
        return f"{self.base_url}/score"


class LocalEndpoint:
    """azmlinfsrv serving one model; use as a context manager, or call start(), wait_ready() and stop().

    `log_path` receives the server's output (stdout and stderr); None lets it print to this process's output.
    """

    def __init__(self, spec: ServerSpec, *, log_path: Path | None = None) -> None:
        self.spec = spec
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._staging: Path | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        spec = self.spec
        check_port_free(spec.host, spec.port)
        self._staging = staging = Path(tempfile.mkdtemp(prefix="azure-dl-serve-"))
        try:
            self._launch(staging)
        except BaseException:  # a missing scoring script or an unstartable Python: leave no staging behind
            self._cleanup()
            raise

    def _launch(self, staging: Path) -> None:
        spec = self.spec
        if spec.code_dir is None:
            code_root = stage_code_root(staging / "code")
        else:
            code_root = copy_code_root(spec.code_dir, staging / "code")
        if spec.scoring_script:
            script = scoring_script_in(code_root, spec.scoring_script)
        else:
            script = entry_script(code_root, spec.task)
        launcher = stage_launcher(staging / "launcher")
        model_root = stage_model_dir(staging / "azureml-models", spec.model_dir, spec.model_name, spec.model_version)
        runtime_dir = staging / "run"
        runtime_dir.mkdir(mode=0o700)
        argv = server_argv(
            spec.python, launcher, script, model_root, host=spec.host, port=spec.port, workers=spec.workers
        )
        env = server_env(
            {**os.environ, **spec.environment},
            script.parent,
            model_root,
            workers=spec.workers,
            isolated=spec.isolated,
            runtime_dir=runtime_dir,
        )
        if spec.code_dir is not None:
            env["PYTHONPATH"] = str(code_root)
        output: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = output = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=staging,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,  # its own group: Ctrl-C reaches gunicorn's workers only through stop()
        )

    def wait_ready(self, timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S) -> None:
        """Return once `GET /` answers "Healthy"; AzureDLError if the server exits or the time runs out."""
        if self.process is None:
            raise RuntimeError("start() the endpoint first")
        deadline = time.monotonic() + timeout_s
        url = self.spec.base_url + "/"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise AzureDLError(
                    f"the inference server exited with code {code} before it was ready" + self._log_hint(),
                    hint="init() of the scoring script failed or the server could not start; read its log above",
                )
            if self.healthy(url):
                return
            time.sleep(0.2)
        raise AzureDLError(
            f"the inference server did not answer {url} within {timeout_s:.0f} s" + self._log_hint(),
            hint="a slow machine may need a longer --startup-timeout",
        )

    def healthy(self, url: str | None = None) -> bool:
        try:
            with urllib.request.urlopen(url or self.spec.base_url + "/", timeout=2) as response:
                return bool(response.status == 200 and response.read().strip() == b"Healthy")
        except (urllib.error.URLError, OSError):
            return False

    def _log_hint(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        tail = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        return f"; last lines of {self.log_path}:\n" + "\n".join(tail)

    def wait(self) -> int:
        """Block until the server exits by itself; its exit code."""
        if self.process is None:
            raise RuntimeError("start() the endpoint first")
        return self.process.wait()

    def stop(self, grace_s: float = DEFAULT_STOP_GRACE_S) -> None:
        """SIGTERM to the server's process group (gunicorn's graceful stop), SIGKILL after `grace_s`; clean up.

        The graceful stop drains: requests the workers have accepted finish and get their answers, while new
        connections are refused at once (endpoint_launcher.py shuts the listening socket down on SIGTERM).
        """
        process = self.process
        try:
            if process is not None and process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=grace_s)
        finally:  # also when a second Ctrl-C interrupts the drain: then it stops at once
            if process is not None:
                # Workers outlive a master that died first; nothing of the group may be left behind.
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
            self._cleanup()

    def _cleanup(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def __enter__(self) -> LocalEndpoint:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
