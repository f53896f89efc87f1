"""`azure-dl score TARGET --image FILE... | --text TEXT...`: call a local or Azure ML endpoint, print predictions."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from typing import Any

from azure_dl.workspace import add_workspace_arguments

KEY_ENV = "AZURE_DL_ENDPOINT_KEY"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_BATCH_SIZE = 32


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="send images or texts to a local or Azure ML endpoint and print the predictions",
        description=(
            "TARGET is a URL (http://127.0.0.1:5001 from `azure-dl serve`; /score is added to a bare base URL) or "
            "the name of an Azure ML online endpoint, whose scoring URI and key are read from the workspace. "
            f"A URL target sends ${KEY_ENV} as its key when that variable is set. Errors show the scoring "
            "script's own status and message (a managed endpoint's 424 is unwrapped). The key is never printed."
        ),
    )
    parser.add_argument("target", metavar="TARGET", help="http(s) URL of the endpoint, or an Azure ML endpoint name")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", nargs="+", metavar="FILE", help="JPEG, PNG, BMP or DICOM files to classify")
    what.add_argument("--text", nargs="+", metavar="TEXT", help="texts to classify (quote each one)")
    parser.add_argument(
        "--top-k",
        type=int,
        default=None,
        metavar="K",
        help="with --image: how many classes to return per image (default: the server's, 3)",
    )
    parser.add_argument(
        "--deployment",
        metavar="NAME",
        default=None,
        help="call this deployment of the endpoint, whatever its traffic share (header azureml-model-deployment; "
        "default: the endpoint's traffic split)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"items per request; more are sent in several requests (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S", help="seconds per request (default: 60)"
    )
    parser.add_argument("--json", action="store_true", help="print the answer as JSON instead of a table")
    add_workspace_arguments(parser)
    parser.set_defaults(handler=_score)


def _azure_target(args: argparse.Namespace) -> tuple[str, str]:
    """(scoring URI, key) of an Azure ML online endpoint, read through the workspace."""
    from azure_dl.backends.azureml import client as azure_client
    from azure_dl.backends.azureml.endpoints import endpoint_target

    ml_client = azure_client.client_from_args(args)
    uri, key = endpoint_target(ml_client, args.target, deployment=args.deployment)
    return str(uri), str(key)


def _target(args: argparse.Namespace) -> tuple[str, str | None, str]:
    """(scoring URL, key or None, what to call it in messages)."""
    from azure_dl import scoring_client

    if scoring_client.is_url(args.target):
        url = scoring_client.scoring_url(args.target)
        return url, os.environ.get(KEY_ENV) or None, url
    uri, key = _azure_target(args)
    which = f" (deployment {args.deployment})" if args.deployment else ""
    return uri, key, f"endpoint {args.target}{which}"


def _score(args: argparse.Namespace) -> int:
    from azure_dl import scoring_client
    from azure_dl.console import print_table
    from azure_dl.errors import AzureDLError

    if args.text is not None and args.top_k is not None:
        raise AzureDLError("--top-k applies to --image only: a text model returns every class")
    inputs: list[str] = list(args.image or args.text)
    scoring_client.batches(inputs, args.batch_size)  # validates --batch-size before anything is read or sent
    url, key, shown = _target(args)
    predictions: list[scoring_client.Prediction] = []
    for chunk in scoring_client.batches(inputs, args.batch_size):
        payload: dict[str, Any] = (
            scoring_client.image_request(chunk, args.top_k) if args.image else scoring_client.text_request(chunk)
        )
        predictions += scoring_client.score(url, payload, key=key, deployment=args.deployment, timeout_s=args.timeout)
    if len(predictions) != len(inputs):
        raise AzureDLError(f"{shown} returned {len(predictions)} predictions for {len(inputs)} inputs")
    if args.json:
        print(json.dumps({"predictions": [asdict(p) for p in predictions]}, indent=2))
        return 0
    print_table(
        f"Predictions from {shown}",
        ["#", "image" if args.image else "text", "label", "score", "probabilities"],
        scoring_client.prediction_rows(inputs, predictions),
    )
    return 0
