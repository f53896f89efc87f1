"""What every resource module needs to know about the running service: its address, names and state store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure_dl.workspace_service.store import Store

PROVIDER = "Microsoft.MachineLearningServices"
LOCATION = "local"


@dataclass(frozen=True)
class ServiceContext:
    base_url: str  # https://127.0.0.1:PORT (no trailing slash)
    subscription_id: str
    resource_group: str
    workspace: str
    data_dir: Path
    store: Store
    identity_secret: str  # the X-IDENTITY-HEADER value clients must send to the token endpoint
    signing_key: bytes  # signs the tokens the service hands out and checks on ARM calls
    # Long-lived helpers a family starts (name -> object with stop(), e.g. "mlflow"); WorkspaceService.stop()
    # stops them, last started first. Other families reach them here (mlflow_front.tracking(context)).
    helpers: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def host(self) -> str:
        return self.base_url.split("://", 1)[1]

    @property
    def resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"

    @property
    def workspace_id(self) -> str:
        return f"{self.resource_group_id}/providers/{PROVIDER}/workspaces/{self.workspace}"
