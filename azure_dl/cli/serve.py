"""`azure-dl serve MODEL`: a model's scoring script under the real Azure ML inference server, on this machine."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

DEFAULT_PORT = 5001  # azmlinfsrv's default (azure_dl.backends.local.endpoints.DEFAULT_PORT)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_STARTUP_TIMEOUT_S = 120.0
ENV_CHOICES = ("local", "inference")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model locally under the Azure ML inference server (azmlinfsrv)",
        description=(
            "Runs the model's scoring script (training_scripts/score_resnet.py or score_lstm.py) under the real "
            "azureml-inference-server-http, with the model laid out as in an Azure ML deployment. POST JSON to "
            '/score (try `azure-dl score URL --image FILE` or `--text TEXT`); GET / answers "Healthy". '
            "Stops on Ctrl-C."
        ),
    )
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a training output folder, or a locally registered model: models:/NAME/VERSION or NAME:VERSION "
        "(VERSION may be `latest`)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="P", help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        metavar="ADDR",
        help=f"address to listen on; 0.0.0.0 exposes the unauthenticated endpoint to the network "
        f"(default: {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--env",
        choices=ENV_CHOICES,
        default="local",
        help="local = this Python environment; inference = the deployment's environment "
        "(environments/inference: ONNX Runtime + the inference server, no torch), built once into a cached "
        "virtual environment keyed by its content hash (default: local)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server worker processes; with N > 1 each gets cores/N ONNX Runtime threads unless "
        "AZURE_DL_ORT_THREADS is set (default: 1)",
    )
    parser.add_argument(
        "--rebuild-env", action="store_true", help="with --env inference: build the environment again (default: reuse)"
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=DEFAULT_STARTUP_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for the server to answer (default: {DEFAULT_STARTUP_TIMEOUT_S:.0f})",
    )
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from azure_dl.backends.local import endpoints
    from azure_dl.console import note
    from azure_dl.errors import AzureDLError

    if not 1 <= args.port <= 65535:
        raise AzureDLError(f"--port {args.port} is not a TCP port (1-65535)")
    if args.workers < 1:
        raise AzureDLError(f"--workers {args.workers}: need at least one worker")
    model = endpoints.resolve_model(args.model)
    task = endpoints.model_task(model.path)
    python, isolated = sys.executable, False
    if args.env == "inference":
        from azure_dl.backends.local.inference_env import ensure_inference_env

        python, isolated = str(ensure_inference_env(rebuild=args.rebuild_env, log=note)), True
    spec = endpoints.ServerSpec(
        model_dir=model.path,
        task=task,
        model_name=model.name,
        model_version=model.version,
        python=python,
        host=args.host,
        port=args.port,
        workers=args.workers,
        isolated=isolated,
    )
    if args.host not in LOOPBACK:
        note(f"warning: listening on {args.host}: anyone who can reach this machine can call the endpoint (no key)")
    from azure_dl.backends.local.request_log import LogFollower, describe, summarize

    # The server writes to a file that is echoed here as it grows, so that its request lines can be counted at exit.
    log_dir = Path(tempfile.mkdtemp(prefix="azure-dl-serve-log-"))
    log_path = log_dir / "server.log"
    server = endpoints.LocalEndpoint(spec, log_path=log_path)
    follower = LogFollower(log_path, sys.stderr).start()
    restore = _stop_on_signals()
    try:
        server.start()
        server.wait_ready(args.startup_timeout)
        example = "--image IMAGE.jpg" if task == "image-classification" else '--text "some text"'
        print(
            f"\nServing {model.path} ({task}, {endpoints.SCORING_SCRIPTS[task]}, {args.env} environment)\n"
            f"  score:  POST {spec.scoring_url}\n"
            f"  health: GET  {spec.base_url}/\n"
            f"  try:    azure-dl score {spec.base_url} {example}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        code = server.wait()
        note(f"the inference server exited with code {code}")
        return code or 1
    except KeyboardInterrupt:
        note("stopping the inference server (requests in flight finish first; Ctrl-C again to stop at once)")
        return 0
    finally:
        server.stop()
        follower.stop()
        restore()
        if log_path.is_file():
            note(describe(summarize(log_path.read_text(encoding="utf-8", errors="replace").splitlines())))
        shutil.rmtree(log_dir, ignore_errors=True)


def _stop_on_signals() -> Callable[[], None]:
    """Ctrl-C and SIGTERM both stop the server cleanly; returns what restores the previous handlers.

    SIGINT is (re)armed explicitly: a shell starts background jobs with SIGINT ignored, and Python keeps it so.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, interrupt)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    return restore
