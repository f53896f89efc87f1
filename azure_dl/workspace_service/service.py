"""The service itself: an HTTPS ThreadingHTTPServer on 127.0.0.1 and DIR/connection.env for client shells.

Lifecycle: `start()` prepares TLS and state, binds (port 0 = a free one), serves on a background thread, then
writes connection.env (so its presence means "ready"); `stop()` removes connection.env and closes the socket.
`serve_until_signalled()` is what the CLI runs: SIGINT/SIGTERM stop it cleanly.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from azure_dl.errors import ConfigError
from azure_dl.workspace_service import (
    app_insights,
    autoscale,
    blobs,
    codes,
    components,
    computes,
    data_assets,
    datastores,
    endpoint_metrics,
    environments,
    faults,
    identity,
    job_archive,
    jobs,
    kubernetes_computes,
    metadata,
    mlflow_front,
    models,
    online_deployments,
    online_endpoints,
    operations,
    registries,
    scoring,
    tls,
    usages,
    workspaces,
)
from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.faults import Faults
from azure_dl.workspace_service.http import Router
from azure_dl.workspace_service.store import Store

HOST = "127.0.0.1"
DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_RESOURCE_GROUP = "azure-dl-local"
DEFAULT_WORKSPACE = "local"
CONNECTION_FILE = "connection.env"
SIGNING_KEY_FILE = "signing.key"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects
    # Headers and body go out as separate TLS records: with Nagle's algorithm the body waits for the client's
    # delayed ACK of the headers (~40 ms per answer on a kept-alive connection).
    disable_nagle_algorithm = True

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        response = self.server.router.dispatch(self.command, self.path, dict(self.headers.items()), body)
        if response.drop:  # an injected fault: processed, but the client gets no answer
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if "Content-Length" not in response.headers:  # a HEAD answer names the length of what GET would send
            self.send_header("Content-Length", str(len(response.body)))
        self.send_header("x-ms-request-id", secrets.token_hex(16))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _handle

    def log_message(self, format: str, *args: object) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], router: Router, log_requests: bool) -> None:
        super().__init__(address, _Handler)
        self.router = router
        self.log_requests = log_requests


def _signing_key(data_dir: Path) -> bytes:
    # Persisted so that tokens handed out before a restart stay valid after it.
    path = data_dir / SIGNING_KEY_FILE
    if not path.is_file():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


class WorkspaceService:
    """One local workspace served from `data_dir`; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        subscription_id: str = DEFAULT_SUBSCRIPTION,
        resource_group: str = DEFAULT_RESOURCE_GROUP,
        workspace: str = DEFAULT_WORKSPACE,
        log_requests: bool = False,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} is out of range", hint="give 1-65535, or 0 for a free port")
        self.data_dir = data_dir.resolve()
        self.port = port
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace = workspace
        self.log_requests = log_requests
        self.context: ServiceContext | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> Faults:
        """The running service's fault rules (faults.py): `service.faults.add("PUT", "/codes/", status=503)`."""
        hook = self._server.router.fault_hook if self._server is not None else None
        if not isinstance(hook, Faults):
            raise RuntimeError("the workspace service is not running: start() it before injecting faults")
        return hook

    @property
    def connection_file(self) -> Path:
        return self.data_dir / CONNECTION_FILE

    def start(self) -> ServiceContext:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        files = tls.prepare(self.data_dir / "tls")
        try:
            server = _Server((HOST, self.port), Router(), self.log_requests)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {HOST}:{self.port}: {exc.strerror}", hint="choose another --port, or 0 for any"
            ) from exc
        # The handshake waits for the first read, on the connection's thread: a slow client cannot block accept().
        server.socket = tls.server_context(files).wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        port = server.server_address[1]
        context = ServiceContext(
            base_url=f"https://{HOST}:{port}",
            subscription_id=self.subscription_id,
            resource_group=self.resource_group,
            workspace=self.workspace,
            data_dir=self.data_dir,
            store=Store(self.data_dir / "state"),
            identity_secret=secrets.token_urlsafe(24),
            signing_key=_signing_key(self.data_dir),
        )
        families = (
            metadata,
            identity,
            faults,
            workspaces,
            datastores,
            blobs,
            codes,
            environments,
            data_assets,
            components,
            computes,
            usages,
            mlflow_front,
            jobs,
            job_archive,
            models,
            operations,
            online_endpoints,
            online_deployments,
            scoring,
            endpoint_metrics,
            autoscale,
            kubernetes_computes,
            app_insights,
            registries,
        )
        for family in families:
            family.register(server.router, context)
        self._server, self.context = server, context
        self._thread = threading.Thread(target=server.serve_forever, name="workspace-service", daemon=True)
        self._thread.start()
        self._write_connection(context, files.bundle)
        return context

    def connection_values(self, context: ServiceContext, bundle: Path) -> dict[str, str]:
        return {
            "ARM_CLOUD_METADATA_URL": metadata.metadata_url(context),
            "IDENTITY_ENDPOINT": f"{context.base_url}{identity.TOKEN_PATH}",
            "IDENTITY_HEADER": context.identity_secret,
            # Pins DefaultAzureCredential to managed identity, so service-principal variables in the shell
            # cannot send it to the real Azure.
            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
            "AZURE_SUBSCRIPTION_ID": context.subscription_id,
            "AZURE_RESOURCE_GROUP": context.resource_group,
            "AZUREML_WORKSPACE_NAME": context.workspace,
            # azureml-mlflow reads the cloud by this name only (else it asks management.azure.com, and checks
            # artifact URLs against Azure's storage suffix); azure-ai-ml resolves it from the metadata URL.
            "AZUREML_CURRENT_CLOUD": metadata.CLOUD_NAME,
            # azure-ai-ml finds a registry (azureml://registries/...) only through this for a cloud it does not
            # know: registries.py answers the discovery, and names this service as the registry's host.
            "REGISTRY_DISCOVERY_ENDPOINT_URL": f"{context.base_url}/",
            "REQUESTS_CA_BUNDLE": str(bundle),
            # urllib / aiohttp / msal paths that bypass requests read this one.
            "SSL_CERT_FILE": str(bundle),
        }

    def _write_connection(self, context: ServiceContext, bundle: Path) -> None:
        lines = [f"{key}={value}" for key, value in self.connection_values(context, bundle).items()]
        partial = self.connection_file.with_suffix(".env.partial")
        partial.write_text("# written by `azure-dl workspace serve`; removed when it stops\n" + "\n".join(lines) + "\n")
        partial.chmod(0o600)  # it holds the identity secret
        partial.replace(self.connection_file)

    def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.connection_file.unlink()
        if self.context is not None:
            jobs.shutdown(self.context)  # running jobs end Canceled, their process groups stopped
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.context is not None:
            for helper in reversed(list(self.context.helpers.values())):
                helper.stop()
            self.context.helpers.clear()

    def __enter__(self) -> WorkspaceService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_until_signalled(self, on_ready: Callable[[ServiceContext], None] | None = None) -> None:
        """Serve until SIGINT or SIGTERM, then stop (connection.env removed); `on_ready` runs once it answers."""
        stopping = threading.Event()

        def _on_signal(_signum: int, _frame: FrameType | None) -> None:
            stopping.set()

        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            context = self.start()
            if on_ready is not None:
                on_ready(context)
            stopping.wait()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def read_connection_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a connection.env (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values
