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
HOLDOUT_SEED = 12345  # held-out synthetic inputs, generated apart from the training data (another seed)
HOLDOUT_IMAGES_PER_CLASS = 20
SHOWN_PER_CLASS = 2  # shown one by one with `azure-dl score`; all of them are scored for the accuracy line


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


def _holdout(task: str, folder: Path) -> tuple[list[str], list[str], list[str]]:
    """(inputs to show, every held-out input, their true labels) for the task."""
    from training_scripts import synth

    if task == "resnet":
        synth.synth_images(
            folder, per_class=HOLDOUT_IMAGES_PER_CLASS, image_size=64, imbalance=1.0, seed=HOLDOUT_SEED, overwrite=True
        )
        paths = sorted(folder.glob("*/*.png"))
        by_class: dict[str, list[Path]] = {}
        for path in paths:
            by_class.setdefault(path.parent.name, []).append(path)
        shown = [str(path) for items in by_class.values() for path in items[:SHOWN_PER_CLASS]]
        return shown, [str(path) for path in paths], [path.parent.name for path in paths]
    from training_scripts.text_table import read_text_table

    # Shown: three hand-written reviews; counted: synthetic reviews generated with another seed.
    shown = [
        "What a brilliant film, the acting was superb and I loved the ending.",
        "The plot was dull and the pacing was terrible. A boring waste of time.",
        "Not bad at all: a delightful, moving story.",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    synth.synth_text(folder / "reviews.csv", n=2 * HOLDOUT_IMAGES_PER_CLASS, seed=HOLDOUT_SEED)
    table = read_text_table(folder / "reviews.csv")
    return shown, table.texts, [str(label) for label in table.labels]


def _heldout_accuracy(task: str, url: str, inputs: list[str], truth: list[str]) -> str:
    """Score every held-out input through the endpoint and summarise accuracy per class."""
    from azure_dl.scoring_client import image_request, score, text_request

    payload = image_request(inputs) if task == "resnet" else text_request(inputs)
    predicted = [prediction.label for prediction in score(url, payload)]
    parts = []
    for label in sorted(set(truth)):
        total = sum(1 for t in truth if t == label)
        right = sum(1 for t, p in zip(truth, predicted) if t == label and p == label)
        parts.append(f"{label} {right}/{total}")
    correct = sum(t == p for t, p in zip(truth, predicted))
    return f"{correct}/{len(truth)} correct ({', '.join(parts)})"


def _serve_and_score(task: str, model_ref: str, holdout: Path, log: Path) -> str:
    from azure_dl.backends.local import endpoints
    from azure_dl.cli.main import main
    from azure_dl.errors import AzureDLError

    model = endpoints.resolve_model(model_ref)
    spec = endpoints.ServerSpec(
        model_dir=model.path,
        task=endpoints.model_task(model.path),
        model_name=model.name,
        model_version=model.version,
        port=endpoints.free_port(),
    )
    _step(f"{task}: serve under azmlinfsrv (in the background)", ["serve", model_ref, "--port", str(spec.port)])
    shown, inputs, truth = _holdout(task, holdout)
    with endpoints.LocalEndpoint(spec, log_path=log) as server:
        server.wait_ready()
        print(f"serving on {spec.base_url} (server log: {log})", flush=True)
        argv = ["score", spec.base_url, "--image" if task == "resnet" else "--text", *shown]
        _step(f"{task}: score held-out inputs over HTTP", argv)
        if main(argv) != 0:
            raise AzureDLError(f"scoring the {task} endpoint failed; see {log}")
        accuracy = _heldout_accuracy(task, spec.scoring_url, inputs, truth)
        print(f"held-out inputs generated with another seed, all scored through the endpoint: {accuracy}", flush=True)
        return accuracy


def _demo(args: argparse.Namespace) -> int:
    from azure_dl.backends.local.tracking import sqlite_store
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
    store = sqlite_store(out)
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
            accuracy = _serve_and_score(task, f"{name}:latest", out / f"{task}-holdout", out / f"{task}-server.log")
            summary[f"{task} held-out (HTTP)"] = accuracy
        summary[f"{task} model"] = str(out / task)
        summary[f"{task} Azure job"] = str(out / f"{task}-azure" / "job.yml")
    summary["MLflow"] = f"mlflow ui --backend-store-uri {store}"
    summary["took"] = f"{time.perf_counter() - started:.0f} s"
    print()
    print_key_values("Demo finished", list(summary.items()))
    print("Next: drop --dry-run/--local to submit to Azure ML (see README.md).", flush=True)
    return 0
