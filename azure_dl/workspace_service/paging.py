"""Paged list answers: a page of items and a `nextLink` the SDK follows, as Azure ML's list routes answer.

Azure's nextLink repeats the request's query and adds an opaque `$skipToken` (recorded: Azure/azure-sdk-assets
python/sdk/ml/azure-ai-ml/tests/recordings/component/e2etests/test_component.pyTestComponenttest_component_list.json,
`components?api-version=2024-01-01-preview&listViewType=ActiveOnly&$skipToken=H4sI...`; trimmed copy:
tests/fixtures/recordings/component_list_paged.json); the last page has no nextLink. The SDK's pager takes the
nextLink's query as it is and only replaces `api-version`.

The token here is the sort key of the page's last item (base64url of its JSON), not an offset: the next page
starts strictly after that item, so an item created while a client pages (newest first, at the front) shifts
nothing, and every item is listed once.

Page size: 50, `AZURE_DL_SERVE_PAGE_SIZE` overrides it (read on each request, so tests can page with a few items).
The recorded component page holds 48 containers; azure-ai-ml 1.35.2 sends no page size for these lists, so the
service's figure is the ARM list default (50), the same as the compute list's (computes.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError, Request

PAGE_SIZE = 50
PAGE_SIZE_VARIABLE = "AZURE_DL_SERVE_PAGE_SIZE"
TOKEN_PARAMETER = "$skipToken"
# Where a client may hand the token back: Azure's nextLink says $skipToken; the SDK's `skip=` sends $skip.
_TOKEN_PARAMETERS = (TOKEN_PARAMETER, "$skip")

T = TypeVar("T")


def page_size() -> int:
    raw = os.environ.get(PAGE_SIZE_VARIABLE, "")
    if not raw:
        return PAGE_SIZE
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(500, "ServiceConfiguration", f"{PAGE_SIZE_VARIABLE}={raw!r}: the page size must be >= 1")
    return int(raw)


def _encode(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _decode(token: str, parameter: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise ApiError(400, "BadRequest", f"{parameter}={token!r} is not a token from this service's nextLink") from exc
    if not isinstance(key, list):
        raise ApiError(400, "BadRequest", f"{parameter}={token!r} is not a token from this service's nextLink")
    return key


def document(values: list[Any], next_link: str | None) -> dict[str, Any]:
    """A list answer: `value`, and `nextLink` only when there is a next page (Azure leaves it out on the last)."""
    return {"value": values, "nextLink": next_link} if next_link else {"value": values}


def page(
    context: ServiceContext,
    request: Request,
    items: Sequence[T],
    sort_key: Callable[[T], Sequence[Any]],
    *,
    descending: bool = True,
) -> tuple[list[T], str | None]:
    """One page of `items` in `sort_key` order (newest first by default) and the nextLink to the rest, or None.

    `$top`, where a client sends it, caps the whole answer (the SDK's `@latest` lookups send `$top=1`).
    """
    ordered = sorted(items, key=lambda item: list(sort_key(item)), reverse=descending)
    for parameter in _TOKEN_PARAMETERS:
        token = request.query.get(parameter)
        if token:
            after = _decode(token, parameter)
            ordered = [
                item
                for item in ordered
                if (list(sort_key(item)) < after if descending else list(sort_key(item)) > after)
            ]
            break
    top = request.query.get("$top")
    if top is not None:
        if not top.isdigit():
            raise ApiError(400, "UserError", f"$top must be a whole number, not {top!r}")
        return ordered[: int(top)], None
    size = page_size()
    if len(ordered) <= size:
        return ordered, None
    shown = ordered[:size]
    query = [(k, v) for k, v in request.query.items() if k not in _TOKEN_PARAMETERS]
    query.append((TOKEN_PARAMETER, _encode(sort_key(shown[-1]))))
    link = "&".join(f"{k}={quote(v, safe='-_.~ ')}".replace(" ", "%20") for k, v in query)
    return shown, f"{context.base_url}{request.path}?{link}"
