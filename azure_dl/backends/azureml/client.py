"""The MLClient factory: credentials, retry policy, studio URLs, and SDK errors turned into redacted AzureDLErrors.

azure.ai.ml and azure.identity are imported inside functions only, so importing this module stays cheap.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from azure_dl.errors import AzureDLError, ConfigError
from azure_dl.workspace import WorkspaceSettings, settings_from_args

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

SDK_INSTALL_HINT = (
    "install the Azure ML SDK into this environment: pip install azure-ai-ml azure-identity "
    "(or reinstall azure-dl with its pinned dependencies: make install)"
)

# azure-core's RetryPolicy reads these from the MLClient kwargs (each generated service client builds
# `RetryPolicy(**kwargs)`). Job and compute creation are PUTs to a name we choose, so retrying a 429/5xx
# can only re-send the same resource; azure-core also honours Retry-After.
RETRY_SETTINGS: dict[str, Any] = {
    "retry_total": 6,
    "retry_connect": 3,
    "retry_read": 3,
    "retry_status": 5,
    "retry_backoff_factor": 1.0,
    "retry_backoff_max": 60,
    "retry_on_status_codes": [408, 429, 500, 502, 503, 504],
}

STUDIO = "https://ml.azure.com"


def require_sdk() -> None:
    """Fail with an install hint (not an ImportError traceback) when azure-ai-ml / azure-identity are missing."""
    try:
        import azure.ai.ml
        import azure.identity  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the Azure ML SDK cannot be imported ({exc.name or exc})", hint=SDK_INSTALL_HINT) from exc


def make_credential(auth: str = "default") -> Any:
    """An azure-identity credential for `--auth` (constructing one is offline; tokens are fetched on first use)."""
    require_sdk()
    from azure.identity import (
        AzureCliCredential,
        DefaultAzureCredential,
        InteractiveBrowserCredential,
        ManagedIdentityCredential,
    )

    if auth == "default":
        return DefaultAzureCredential()
    if auth == "cli":
        return AzureCliCredential()
    if auth == "managed-identity":
        # A user-assigned identity is picked by its client id; without one the system-assigned identity is used.
        client_id = os.environ.get("AZURE_CLIENT_ID")
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    if auth == "interactive":
        return InteractiveBrowserCredential()
    raise ConfigError(
        f"unknown --auth {auth!r}", hint="choose one of: default, cli, managed-identity, interactive (default: default)"
    )


def get_ml_client(settings: WorkspaceSettings, auth: str = "default", *, credential: Any = None) -> MLClient:
    """An MLClient for the workspace, with azure-core retrying transient 429/5xx responses (no network call yet)."""
    require_sdk()
    from azure.ai.ml import MLClient

    # A failed sign-in is reported once, as a ConfigError with what to do; azure-identity would also log the
    # whole credential chain as a warning on stderr.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)

    with sdk_errors("connect to the workspace"):
        return MLClient(
            credential if credential is not None else make_credential(auth),
            subscription_id=settings.subscription_id,
            resource_group_name=settings.resource_group,
            workspace_name=settings.workspace_name,
            **RETRY_SETTINGS,
        )


def client_from_args(args: argparse.Namespace) -> MLClient:
    """get_ml_client() for the flags of add_workspace_arguments() (missing attributes count as unset)."""
    return get_ml_client(settings_from_args(args), getattr(args, "auth", None) or "default")


def workspace_id(subscription_id: str, resource_group: str, workspace_name: str) -> str:
    """The ARM id studio links carry in `wsid=`."""
    return f"/subscriptions/{subscription_id}/resourcegroups/{resource_group}/workspaces/{workspace_name}"


def job_studio_url(ml_client: Any, job_name: str) -> str:
    """The studio page of a job (the link studio itself uses: /runs/<name>?wsid=<workspace id>)."""
    wsid = workspace_id(ml_client.subscription_id, ml_client.resource_group_name, ml_client.workspace_name)
    return f"{STUDIO}/runs/{job_name}?wsid={wsid}"


def compute_studio_url(ml_client: Any, compute_name: str) -> str:
    """The studio page of a compute cluster."""
    wsid = workspace_id(ml_client.subscription_id, ml_client.resource_group_name, ml_client.workspace_name)
    return f"{STUDIO}/compute/{compute_name}/details?wsid={wsid}"


# What secrets look like in SDK messages: SAS query strings, bearer tokens/JWTs, storage keys and connection
# strings, and "key": "..." pairs. Each pattern keeps the name and hides the value.
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "***"),
    (
        re.compile(
            r"(?i)([?&](?:sig|signature|se|st|sp|sv|sr|skoid|sktid|skt|ske|sks|skv|spr|srt|ss|code|token)=)"
            r"[^&\s\"'<>]+"
        ),
        r"\1***",
    ),
    (re.compile(r"(?i)((?:AccountKey|SharedAccessKey|SharedAccessSignature|Password)=)[^;\s\"']+"), r"\1***"),
    (
        re.compile(
            r"(?i)([\"']?(?:api[_-]?key|primary[_-]?key|secondary[_-]?key|account[_-]?key|client[_-]?secret|secret|"
            r"password|access[_-]?token|refresh[_-]?token|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]+"
        ),
        r"\1***",
    ),
    # Storage account keys are 64 random bytes in base64 (88 characters ending in '==').
    (re.compile(r"[A-Za-z0-9+/]{86}=="), "***"),
)


def redact(text: str) -> str:
    """`text` with anything that looks like a key, SAS token, bearer token or password replaced by ***."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


_MAX_MESSAGE = 600


def _short(text: str) -> str:
    text = redact(" ".join(str(text).split()))
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def azure_error(exc: BaseException, action: str) -> AzureDLError:
    """A user-facing error for an exception raised by azure-core / azure-identity / azure.ai.ml (redacted)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    message = str(getattr(exc, "message", None) or exc or type(exc).__name__)
    # azure-core puts the essence on the first line ("(Code) message", "DefaultAzureCredential failed to ...");
    # the lines after it repeat it or list every credential tried.
    first_line = next((line for line in message.splitlines() if line.strip()), message)
    if isinstance(exc, ClientAuthenticationError):
        return ConfigError(
            f"could not {action}: Azure sign-in failed: {_short(first_line)}",
            hint="sign in with `az login` (and `az account set --subscription ID`), or pick another --auth "
            "(cli, managed-identity, interactive)",
        )
    if isinstance(exc, ResourceNotFoundError):
        return AzureDLError(f"could not {action}: not found (404): {_short(first_line)}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code if exc.status_code is not None else "no status"
        reason = f" {exc.reason}" if exc.reason else ""
        hint = None
        if exc.status_code == 403:
            hint = "your identity lacks a role on the workspace (e.g. AzureML Data Scientist or Contributor)"
        elif exc.status_code in (429, 500, 502, 503, 504):
            hint = "the service is busy or failing; it was retried already - try again in a few minutes"
        return AzureDLError(f"could not {action}: Azure ML returned {status}{reason}: {_short(first_line)}", hint=hint)
    if isinstance(exc, ServiceRequestError):
        return AzureDLError(
            f"could not {action}: cannot reach Azure: {_short(message)}",
            hint="check the network connection or proxy settings",
        )
    return AzureDLError(f"could not {action}: {type(exc).__name__}: {_short(message)}")


@contextmanager
def sdk_errors(action: str) -> Iterator[None]:
    """Turn azure-core, azure-identity and azure.ai.ml exceptions raised inside into redacted AzureDLErrors."""
    require_sdk()
    from azure.ai.ml.exceptions import MlException
    from azure.core.exceptions import AzureError

    try:
        yield
    except AzureDLError:
        raise
    except (AzureError, MlException) as exc:
        raise azure_error(exc, action) from None
