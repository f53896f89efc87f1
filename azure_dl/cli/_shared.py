"""Pieces the verb modules share (not a verb: main.py skips modules named _*): the bare-verb handler, the client,
the quality-gate flag of register and deploy."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from azure_dl.flag_values import parse_min_metric


def show_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A handler for `azure-dl VERB` with no action: print the verb's help and exit 2 (a usage error)."""

    def handler(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return handler


def workspace_client(args: argparse.Namespace) -> Any:
    """The MLClient for the workspace the flags, environment or config.json name (imports the Azure SDK)."""
    from azure_dl.backends.azureml import client as azure_client

    return azure_client.client_from_args(args)


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """`--min-metric NAME=VALUE` (repeatable): the test-metric thresholds of the registration gate."""
    parser.add_argument(
        "--min-metric",
        action="append",
        type=parse_min_metric,
        default=[],
        metavar="NAME=VALUE",
        help="refuse the model unless its test NAME is at least VALUE, e.g. macro_f1=0.8 (repeatable; "
        "default: only the parity check)",
    )
