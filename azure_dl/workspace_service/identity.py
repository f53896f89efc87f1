"""Tokens: the managed-identity endpoint that azure-identity's App Service flavour calls, and the check on ARM calls.

The request (msal's `_obtain_token_on_app_service`, used by azure-identity's ManagedIdentityCredential when
IDENTITY_ENDPOINT and IDENTITY_HEADER are set): `GET IDENTITY_ENDPOINT?api-version=2019-08-01&resource=R` with the
header `X-IDENTITY-HEADER: <secret>`. The answer: `{"access_token", "expires_on" (epoch seconds, a string),
"resource", "token_type"}`. The token is a JWT because azure-ai-ml decodes it (without verifying the signature):
`aud` must equal the requested resource (the job PUT checks the Azure ML token's audience) and `tid` names a tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable

from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError, Request, Response, Router, json_response

TOKEN_PATH = "/msi/token"
TOKEN_LIFETIME_S = 3600
TENANT_ID = "00000000-0000-0000-0000-00000000a2d1"
PRINCIPAL_ID = "00000000-0000-0000-0000-0000000010ca"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def issue_token(context: ServiceContext, resource: str, now: float | None = None) -> tuple[str, int]:
    """A signed HS256 JWT for `resource` and its expiry (epoch seconds)."""
    issued = int(now if now is not None else time.time())
    expires = issued + TOKEN_LIFETIME_S
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {
        "aud": resource,
        "iss": f"{context.base_url}/{TENANT_ID}/",
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "oid": PRINCIPAL_ID,
        "sub": PRINCIPAL_ID,
        "tid": TENANT_ID,
        "appid": PRINCIPAL_ID,
        "idtyp": "MI",
        "uti": uuid.uuid4().hex,
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(context.signing_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}", expires


def check_bearer(context: ServiceContext, request: Request) -> None:
    """Refuse a call without a token this service issued (401, as ARM answers), so a test can't pass unauthenticated."""
    authorization = request.header("Authorization") or ""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        raise ApiError(401, "AuthenticationFailed", "the request has no bearer token (Authorization: Bearer ...)")
    signing_input, _, signature = token.rpartition(".")
    expected = _b64(hmac.new(context.signing_key, signing_input.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature, expected):
        raise ApiError(401, "InvalidAuthenticationToken", "the bearer token was not issued by this local service")
    padded = signing_input.split(".")[1] + "=" * (-len(signing_input.split(".")[1]) % 4)
    claims = json.loads(base64.urlsafe_b64decode(padded))
    if int(claims.get("exp", 0)) < time.time():
        raise ApiError(401, "ExpiredAuthenticationToken", "the bearer token has expired; ask for a new one")


def _token(context: ServiceContext, request: Request) -> Response:
    secret = request.header("X-IDENTITY-HEADER")
    if secret is None or not hmac.compare_digest(secret, context.identity_secret):
        raise ApiError(
            401, "Unauthorized", "missing or wrong X-IDENTITY-HEADER (use IDENTITY_HEADER from connection.env)"
        )
    resource = request.query.get("resource")
    if not resource:
        raise ApiError(400, "BadRequest", "the token request names no `resource` query parameter")
    token, expires = issue_token(context, resource)
    return json_response(
        200,
        {
            "access_token": token,
            "expires_on": str(expires),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": PRINCIPAL_ID,
        },
    )


def register(router: Router, context: ServiceContext) -> None:
    router.add("GET", TOKEN_PATH, lambda request: _token(context, request))


def authenticated(context: ServiceContext, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """`handler`, answering 401 first when the request carries no token from this service."""

    def _checked(request: Request) -> Response:
        check_bearer(context, request)
        return handler(request)

    return _checked
