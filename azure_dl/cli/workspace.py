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
    fault = actions.add_parser(
        "fault",
        help="make a running local workspace answer 429/503 or drop responses (to try retry logic)",
        description=(
            "Tells the service serving DIR to answer the next N requests of METHOD whose path matches the "
            "regex PATH with STATUS (not processed), or to process them and close the connection without an "
            "answer (--drop). Faults are consumed in order. Without --method it lists the pending faults "
            "and their hit counts; --clear removes them."
        ),
    )
    fault.add_argument("--dir", required=True, type=Path, metavar="DIR", help="the state folder of `serve`")
    fault.add_argument("--method", metavar="METHOD", help="HTTP method to fault, e.g. PUT")
    fault.add_argument("--path", metavar="REGEX", help="regex searched in the request path, e.g. '/jobs/'")
    what = fault.add_mutually_exclusive_group()
    what.add_argument("--status", type=int, metavar="CODE", help="answer this status: 408, 429, 500, 502, 503, 504")
    what.add_argument("--drop", action="store_true", help="process the request, then close without an answer")
    fault.add_argument("--times", type=int, default=1, metavar="N", help="how many requests (default: 1)")
    fault.add_argument("--retry-after", type=float, metavar="S", help="send Retry-After: S with the status")
    fault.add_argument("--clear", action="store_true", help="remove every pending fault")
    fault.set_defaults(handler=_fault)
    parser.set_defaults(handler=show_help(parser))


def _serve(args: argparse.Namespace) -> int:
    from azure_dl.workspace_service.service import WorkspaceService

    service = WorkspaceService(args.dir, args.port, log_requests=args.log_requests)

    def _ready(context: object) -> None:
        print(f"local workspace ready; in another shell: set -a; . {service.connection_file}; set +a", flush=True)
        print("Ctrl-C or SIGTERM stops it", file=sys.stderr, flush=True)

    service.serve_until_signalled(_ready)
    return 0


def _fault(args: argparse.Namespace) -> int:
    from azure_dl.workspace_service.fault_client import FaultSpec, send_faults

    spec = None
    if args.method or args.path or args.status is not None or args.drop:
        spec = FaultSpec(args.method, args.path, args.status, args.drop, args.times, args.retry_after)
    for line in send_faults(args.dir, spec, clear=args.clear):
        print(line)
    return 0
