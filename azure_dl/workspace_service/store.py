"""The service's resources as JSON files under DIR/state/KIND/NAME.json, so that a restart finds them."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote


class Store:
    """A thread-safe map (kind, name) -> JSON document, one file per resource, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _path(self, kind: str, name: str) -> Path:
        # quote() keeps a name such as "AzureML-sklearn-1.5/versions/3" a single, safe file name.
        return self.root / kind / f"{quote(name, safe='')}.json"

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        path = self._path(kind, name)
        with self._lock:
            if not path.is_file():
                return None
            document: dict[str, Any] = json.loads(path.read_text())
            return document

    def put(self, kind: str, name: str, document: dict[str, Any]) -> None:
        path = self._path(kind, name)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".json.partial")
            partial.write_text(json.dumps(document, indent=1, sort_keys=True))
            partial.replace(path)

    def put_if_absent(self, kind: str, name: str, document: dict[str, Any]) -> None:
        if self.get(kind, name) is None:
            self.put(kind, name, document)

    def list(self, kind: str) -> list[dict[str, Any]]:
        folder = self.root / kind
        with self._lock:
            if not folder.is_dir():
                return []
            return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]

    def delete(self, kind: str, name: str) -> bool:
        """Remove one resource; False when there was none."""
        path = self._path(kind, name)
        with self._lock:
            if not path.is_file():
                return False
            path.unlink()
            return True
