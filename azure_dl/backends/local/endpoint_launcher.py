"""Start the real Azure ML inference server (azmlinfsrv) bound to a chosen host instead of its hard-coded 0.0.0.0.

`azmlinfsrv` passes azureml_inference_server_http.constants.DEFAULT_HOST ("0.0.0.0", star-imported into
amlserver.py) to gunicorn, and has no flag to change it. This launcher replaces that one name in amlserver's
namespace and then calls the server's own `amlserver.run()`, so it is still the very server Azure's inference
images run (their argument parsing, gunicorn settings and Flask app), only listening on `--host`.

Usage: python endpoint_launcher.py --host 127.0.0.1 [azmlinfsrv arguments: --entry_script, --model_dir, --port, ...]

On SIGTERM it also stops the listening socket before gunicorn starts its graceful stop (see
`refuse_new_connections_on_term`), so that a draining server refuses new connections instead of leaving them
unanswered in the kernel's queue.

`azure-dl serve` copies this file next to the code it serves and runs it with the serving environment's Python,
which need not have azure_dl installed: it imports only the standard library and the inference server.
"""

from __future__ import annotations

import contextlib
import socket
import sys


def split_host(argv: list[str], default: str = "127.0.0.1") -> tuple[str, list[str]]:
    """(host, the remaining arguments) from `--host H` or `--host=H` anywhere in argv."""
    host = default
    rest: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--host":
            if index + 1 >= len(argv):
                raise SystemExit("endpoint_launcher: --host needs a value")
            host = argv[index + 1]
            index += 2
            continue
        if arg.startswith("--host="):
            host = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        index += 1
    return host, rest


def refuse_new_connections_on_term() -> None:
    """Make gunicorn's master shut its listening sockets down (not only close them) when SIGTERM arrives.

    gunicorn's graceful stop closes the master's copy of each listening socket, but every worker holds its own
    copy until it exits, and a worker finishing a slow request keeps the socket listening: the kernel goes on
    completing new connections into the queue, nobody accepts them, and they are reset only when the last
    worker exits. `shutdown(SHUT_RD)` acts on the socket itself, shared by all the processes: new connections
    are refused at once, while the requests workers have already accepted finish (they are on their own
    sockets). Only the master's SIGTERM handler is wrapped; SIGINT/SIGQUIT (gunicorn's fast stop) are unchanged.
    """
    from gunicorn.arbiter import Arbiter

    handle_term = Arbiter.handle_term

    def shut_listeners_then_term(self: Arbiter) -> None:
        for listener in self.LISTENERS:
            # Already shut (a second SIGTERM) or not a listening socket: gunicorn closes it anyway.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RD)
        handle_term(self)

    Arbiter.handle_term = shut_listeners_then_term


def main() -> None:
    host, rest = split_host(sys.argv[1:])
    from azureml_inference_server_http import amlserver

    refuse_new_connections_on_term()

    amlserver.DEFAULT_HOST = host
    sys.argv = [sys.argv[0], *rest]
    amlserver.run()


if __name__ == "__main__":
    main()
