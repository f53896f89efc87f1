"""The blob routes azure-storage-blob uses for the SDK's uploads and downloads, served path-style under
/{account}.blob.{suffix}/CONTAINER/BLOB (why there: datastores.py and docs/architecture.md).

Served: Put Blob, Put Block + Put Block List, Set Blob Metadata (comp=metadata), Get Blob (with a range),
Get Blob Properties (HEAD), List Blobs (restype=container&comp=list, XML). Blobs live as files under
DIR/blobs/CONTAINER/BLOB, their metadata and ETag in DIR/blobs/.meta/CONTAINER/BLOB.json. The SAS from
listSecrets is not checked: the service answers loopback only, and the ARM side is what holds the token check.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import Request, Response, Router
from azure_dl.workspace_service.metadata import STORAGE_SUFFIX
from azure_dl.workspace_service.workspaces import STORAGE_ACCOUNT

META_PREFIX = "x-ms-meta-"
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def _storage_error(status: int, code: str, message: str) -> Response:
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>'
    )
    return Response(status, body.encode(), {"Content-Type": "application/xml", "x-ms-error-code": code})


class BlobStore:
    """Files under `root`, one per blob; uncommitted blocks under root/.blocks until Put Block List."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _safe(self, base: Path, container: str, name: str) -> Path:
        path = (base / container / name).resolve()
        if not path.is_relative_to(base.resolve()) or ".." in Path(name).parts:
            raise ValueError(f"blob name {name!r} leaves its container")
        return path

    def data_path(self, container: str, name: str) -> Path:
        return self._safe(self.root, container, name)

    def _meta_path(self, container: str, name: str) -> Path:
        return self._safe(self.root / ".meta", container, name).with_name(Path(name).name + ".json")

    def _block_path(self, container: str, name: str, block_id: str) -> Path:
        digest = hashlib.sha256(block_id.encode()).hexdigest()
        return self._safe(self.root / ".blocks", container, name) / digest

    def meta(self, container: str, name: str) -> dict[str, Any] | None:
        path = self._meta_path(container, name)
        if not path.is_file() or not self.data_path(container, name).is_file():
            return None
        document: dict[str, Any] = json.loads(path.read_text())
        return document

    def _write_meta(self, container: str, name: str, meta: dict[str, Any]) -> None:
        path = self._meta_path(container, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(meta))

    def put(
        self, container: str, name: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> dict[str, Any]:
        with self._lock:
            path = self.data_path(container, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            meta = {
                "etag": f'"0x{hashlib.md5(data + name.encode(), usedforsecurity=False).hexdigest()[:16].upper()}"',
                "modified": format_datetime(datetime.now(UTC), usegmt=True),
                "length": len(data),
                "contentType": content_type,
                "md5": base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode(),
                "metadata": metadata,
            }
            self._write_meta(container, name, meta)
            return meta

    def put_block(self, container: str, name: str, block_id: str, data: bytes) -> None:
        path = self._block_path(container, name, block_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def commit_blocks(
        self, container: str, name: str, block_ids: list[str], content_type: str, metadata: dict[str, str]
    ) -> dict[str, Any]:
        missing = [block for block in block_ids if not self._block_path(container, name, block).is_file()]
        if missing:
            raise KeyError(missing[0])
        data = b"".join(self._block_path(container, name, block).read_bytes() for block in block_ids)
        meta = self.put(container, name, data, content_type, metadata)
        for block in block_ids:
            self._block_path(container, name, block).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other uncommitted blocks may remain: then the folder stays
            self._block_path(container, name, "x").parent.rmdir()
        return meta

    def set_metadata(self, container: str, name: str, metadata: dict[str, str]) -> dict[str, Any] | None:
        with self._lock:
            meta = self.meta(container, name)
            if meta is None:
                return None
            meta["metadata"] = metadata
            self._write_meta(container, name, meta)
            return meta

    def names(self, container: str, prefix: str) -> list[str]:
        folder = self.root / container
        if not folder.is_dir():
            return []
        found = (path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
        return sorted(name for name in found if name.startswith(prefix))


def _metadata_from(request: Request) -> dict[str, str]:
    return {key[len(META_PREFIX) :]: value for key, value in request.headers.items() if key.startswith(META_PREFIX)}


def _blob_headers(meta: dict[str, Any]) -> dict[str, str]:
    headers = {
        "ETag": meta["etag"],
        "Last-Modified": meta["modified"],
        "Content-Type": meta["contentType"],
        "Content-MD5": meta["md5"],
        "x-ms-blob-type": "BlockBlob",
        "x-ms-server-encrypted": "true",
        "Accept-Ranges": "bytes",
    }
    headers.update({f"{META_PREFIX}{key}": value for key, value in meta["metadata"].items()})
    return headers


def _written(meta: dict[str, Any]) -> Response:
    headers = {"ETag": meta["etag"], "Last-Modified": meta["modified"], "Content-MD5": meta["md5"]}
    return Response(201, b"", {**headers, "x-ms-request-server-encrypted": "true"})


def _block_list(body: bytes) -> list[str]:
    # <BlockList><Latest>id</Latest>...</BlockList>; Committed/Uncommitted read the same (no committed blocks kept).
    return [match.group(2).decode() for match in re.finditer(rb"<(Latest|Uncommitted|Committed)>([^<]*)</\1>", body)]


def _list_xml(container: str, prefix: str, names: list[str], store: BlobStore, with_metadata: bool) -> bytes:
    items = []
    for name in names:
        meta = store.meta(container, name)
        if meta is None:
            continue
        metadata = "".join(f"<{key}>{escape(value)}</{key}>" for key, value in meta["metadata"].items())
        items.append(
            f"<Blob><Name>{escape(name)}</Name><Properties><Last-Modified>{meta['modified']}</Last-Modified>"
            f"<Etag>{escape(meta['etag'])}</Etag><Content-Length>{meta['length']}</Content-Length>"
            f"<Content-Type>{escape(meta['contentType'])}</Content-Type><Content-MD5>{meta['md5']}</Content-MD5>"
            f"<BlobType>BlockBlob</BlobType></Properties>"
            + (f"<Metadata>{metadata}</Metadata>" if with_metadata else "")
            + "</Blob>"
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="{escape(container)}">'
        f"<Prefix>{escape(prefix)}</Prefix><Blobs>{''.join(items)}</Blobs><NextMarker /></EnumerationResults>"
    ).encode()


def register(router: Router, context: ServiceContext) -> None:
    store = BlobStore(context.data_dir / "blobs")
    prefix = f"/{STORAGE_ACCOUNT}.blob.{STORAGE_SUFFIX}"

    def _blob(request: Request) -> Response:
        container, name = request.params["container"], request.params["blob"]
        try:
            store.data_path(container, name)
        except ValueError as exc:
            return _storage_error(400, "InvalidResourceName", str(exc))
        comp = request.query.get("comp")
        content_type = request.header("x-ms-blob-content-type") or "application/octet-stream"
        if request.method == "PUT" and comp is None:
            return _written(store.put(container, name, request.body, content_type, _metadata_from(request)))
        if request.method == "PUT" and comp == "block":
            store.put_block(container, name, request.query["blockid"], request.body)
            return Response(201, b"", {"x-ms-request-server-encrypted": "true"})
        if request.method == "PUT" and comp == "blocklist":
            try:
                meta = store.commit_blocks(
                    container, name, _block_list(request.body), content_type, _metadata_from(request)
                )
            except KeyError as exc:
                return _storage_error(400, "InvalidBlockList", f"block {exc.args[0]} of {name} was never uploaded")
            return _written(meta)
        if request.method == "PUT" and comp == "metadata":
            updated = store.set_metadata(container, name, _metadata_from(request))
            if updated is None:
                return _storage_error(404, "BlobNotFound", f"The specified blob does not exist: {container}/{name}")
            return Response(200, b"", {"ETag": updated["etag"], "Last-Modified": updated["modified"]})
        if request.method in ("GET", "HEAD") and comp is None:
            found = store.meta(container, name)
            if found is None:
                return _storage_error(404, "BlobNotFound", f"The specified blob does not exist: {container}/{name}")
            data = store.data_path(container, name).read_bytes() if request.method == "GET" else b""
            headers = _blob_headers(found)
            wanted = _RANGE.fullmatch(request.header("x-ms-range") or request.header("Range") or "")
            if request.method == "GET" and wanted is not None:
                start = int(wanted.group(1))
                end = min(int(wanted.group(2) or found["length"] - 1), found["length"] - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{found['length']}"
                return Response(206, data[start : end + 1], headers)
            if request.method == "HEAD":
                # No body, but the blob's length: azure-storage-blob reads the size from this header.
                headers["Content-Length"] = str(found["length"])
            return Response(200, data, headers)
        return _storage_error(
            501, "NotImplemented", f"{request.method} comp={comp} on a blob is not served by the local workspace"
        )

    def _container(request: Request) -> Response:
        container = request.params["container"]
        if request.query.get("restype") == "container" and request.query.get("comp") == "list":
            name_prefix = request.query.get("prefix", "")
            with_metadata = "metadata" in request.query.get("include", "")
            body = _list_xml(container, name_prefix, store.names(container, name_prefix), store, with_metadata)
            return Response(200, body, {"Content-Type": "application/xml"})
        if request.query.get("restype") == "container" and request.method in ("GET", "HEAD"):
            return Response(200, b"", {"ETag": '"0x1"', "Last-Modified": format_datetime(datetime.now(UTC), True)})
        return _storage_error(501, "NotImplemented", f"{request.method} {request.path} is not served")

    for method in ("GET", "HEAD", "PUT"):
        router.add(method, prefix + "/{container}/{blob:path}", _blob)
        router.add(method, prefix + "/{container}", _container)
