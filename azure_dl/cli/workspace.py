"""`azure-dl workspace serve`: a local Azure ML service that the unmodified azure-ai-ml SDK talks to over HTTPS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from azure_dl.cli._shared import show_help


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "workspace",
        help="serve a local Azure ML workspace that the Azure ML SDK and `azure-dl` reach over HTTPS",
        description="A loopback stand-in for an Azure ML workspace, for tests and offline work.",
    )
    actions = parser.add_subparsers(dest="workspace_action", metavar="ACTION")
    serve = actions.add_parser(
        "serve",
        help="start the local workspace service (stops on Ctrl-C or SIGTERM)",
        description=(
            "Serves the Azure ML REST routes the SDK uses on https://127.0.0.1:PORT with a certificate it "
            "generates, keeps its state under DIR, and writes DIR/connection.env once ready (removed on stop). "
            "In another shell: `set -a; . DIR/connection.env; set +a`, then a plain "
            "MLClient(DefaultAzureCredential(), ...) or `azure-dl` without --local reaches it."
        ),
    )
    serve.add_argument("--dir", required=True, type=Path, metavar="DIR", help="state folder (created if missing)")
    serve.add_argument("--port", type=int, default=0, metavar="N", help="port on 127.0.0.1 (default: a free one)")
    serve.add_argument("--log-requests", action="store_true", help="print one line per request (default: quiet)")
    serve.set_defaults(handler=_serve)
    parser.set_defaults(handler=show_help(parser))


def _serve(args: argparse.Namespace) -> int:
    from azure_dl.workspace_service.service import WorkspaceService

    service = WorkspaceService(args.dir, args.port, log_requests=args.log_requests)

    def _ready(context: object) -> None:
        print(f"local workspace ready; in another shell: set -a; . {service.connection_file}; set +a", flush=True)
        print("Ctrl-C or SIGTERM stops it", file=sys.stderr, flush=True)

    service.serve_until_signalled(_ready)
    return 0
