"""Entry point of `azure-dl`: builds the argument parser from the per-verb modules and dispatches.

Every verb module in this package exposes `add_parser(subparsers)` and imports only the standard library
and light azure_dl modules at import time, so that `azure-dl --help` answers without importing torch,
mlflow, onnxruntime or azure.ai.ml. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from azure_dl import __version__
from azure_dl.errors import AzureDLError

# Order in `--help`; a verb module not listed here still works and is listed after these.
VERB_ORDER = [
    "submit",
    "sweep",
    "jobs",
    "pipeline",
    "register",
    "deploy",
    "endpoint",
    "serve",
    "score",
    "compute",
    "workspace",
    "data",
    "catalog",
    "demo",
]
_NOT_VERBS = {"main"}


def _verb_modules() -> list[str]:
    import azure_dl.cli as cli_package

    found = {
        info.name
        for info in pkgutil.iter_modules(cli_package.__path__)
        if not info.name.startswith("_") and info.name not in _NOT_VERBS
    }
    ordered = [name for name in VERB_ORDER if name in found]
    return ordered + sorted(found - set(ordered))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azure-dl",
        description=(
            "Package PyTorch training scripts as Azure ML jobs, sweeps and pipelines, register and serve "
            "the models - and run every step locally with --local, or render it with --dry-run."
        ),
    )
    parser.add_argument("--version", action="version", version=f"azure-dl {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for name in _verb_modules():
        module = importlib.import_module(f"azure_dl.cli.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.verb is None else 2
    try:
        return int(handler(args) or 0)
    except AzureDLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
