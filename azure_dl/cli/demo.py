"""`azure-dl demo`: the README's main job - laptop to served model on synthetic data, with the same verbs a user types.

Each stage prints the command it stands for and runs it through the CLI itself, so the demo exercises exactly what
a user would run: render the Azure ML job (dry-run: YAML, snapshot, cost plan; no credentials), train locally with
the very command the job would run, register the model in the local MLflow registry behind a quality gate, serve it
under the real Azure ML inference server and score held-out inputs over HTTP. Everything lands under --out, MLflow
included, so a demo never touches the user's own store.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from pathlib import Path

TASKS = ("resnet", "lstm")
GATE = "macro_f1=0.8"
HOLDOUT_SEED = 12345  # held-out synthetic inputs, generated apart from the training data


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="local end-to-end run on synthetic data: dry-run, train, register, serve, score",
        description=__doc__,
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for everything (default runs/demo)")
    parser.add_argument(
        "--tasks",
        default=",".join(TASKS),
        help=f"comma-separated presets to run, from {', '.join(TASKS)} (default: {','.join(TASKS)})",
    )
    parser.add_argument(
        "--no-serve", action="store_true", help="stop after registration (default: serve and score each model)"
    )
    parser.set_defaults(handler=_demo)


def _step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ azure-dl {shlex.join(argv)}", flush=True)


def _run(title: str, argv: list[str]) -> None:
    from azure_dl.cli.main import main
    from azure_dl.errors import AzureDLError

    _step(title, argv)
    code = main(argv)
    if code != 0:
        raise AzureDLError(
            f"demo stage '{title}' failed (exit {code})", hint=f"run `azure-dl {shlex.join(argv)}` alone"
        )


def _holdout_inputs(task: str, folder: Path) -> list[str]:
    from training_scripts import synth

    if task == "resnet":
        synth.synth_images(folder, per_class=2, image_size=64, imbalance=1.0, seed=HOLDOUT_SEED, overwrite=True)
        return [str(p) for p in sorted(folder.glob("*/*.png"))]
    return [
        "What a brilliant film, the acting was superb and I loved the ending.",
        "The plot was dull and the pacing was terrible. A boring waste of time.",
        "Not bad at all: a delightful, moving story.",
    ]


def _serve_and_score(task: str, model_ref: str, inputs: list[str], log: Path) -> None:
    from azure_dl.backends.local import endpoint
    from azure_dl.cli.main import main
    from azure_dl.errors import AzureDLError

    model = endpoint.resolve_model(model_ref)
    spec = endpoint.ServerSpec(
        model_dir=model.path,
        task=endpoint.model_task(model.path),
        model_name=model.name,
        model_version=model.version,
        port=endpoint.free_port(),
    )
    _step(f"{task}: serve under azmlinfsrv (in the background)", ["serve", model_ref, "--port", str(spec.port)])
    with endpoint.LocalEndpoint(spec, log_path=log) as server:
        server.wait_ready()
        print(f"serving on {spec.base_url} (server log: {log})", flush=True)
        argv = ["score", spec.base_url, "--image" if task == "resnet" else "--text", *inputs]
        _step(f"{task}: score held-out inputs over HTTP", argv)
        if main(argv) != 0:
            raise AzureDLError(f"scoring the {task} endpoint failed; see {log}")


def _demo(args: argparse.Namespace) -> int:
    from azure_dl.console import print_key_values
    from azure_dl.errors import AzureDLError

    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise AzureDLError(
            f"--tasks {args.tasks!r}: unknown {unknown or 'empty'}", hint=f"choose from {', '.join(TASKS)}"
        )
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{out / 'mlflow.db'}"
    # The demo's runs and registered models go to its own store, whatever the user's environment says.
    os.environ["MLFLOW_TRACKING_URI"] = store
    os.environ["MLFLOW_REGISTRY_URI"] = store
    started = time.perf_counter()
    summary: dict[str, str] = {}
    for task in tasks:
        _run(
            f"{task}: render the Azure ML job (no credentials needed)",
            ["submit", task, "--dry-run", "--out", str(out / f"{task}-azure")],
        )
        _run(f"{task}: train locally with the same command", ["submit", task, "--local", "--out", str(out / task)])
        name = f"demo-{task}"
        _run(
            f"{task}: register in the local MLflow registry (gate: test {GATE})",
            ["register", str(out / task), "--name", name, "--local", "--min-metric", GATE],
        )
        if not args.no_serve:
            inputs = _holdout_inputs(task, out / f"{task}-holdout")
            _serve_and_score(task, f"{name}:latest", inputs, out / f"{task}-server.log")
        summary[f"{task} model"] = str(out / task)
        summary[f"{task} Azure job"] = str(out / f"{task}-azure" / "job.yml")
    summary["MLflow"] = f"mlflow ui --backend-store-uri {store}"
    summary["took"] = f"{time.perf_counter() - started:.0f} s"
    print()
    print_key_values("Demo finished", list(summary.items()))
    print("Next: drop --dry-run/--local to submit to Azure ML (see README.md).", flush=True)
    return 0
