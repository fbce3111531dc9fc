"""Who is calling: the Principal behind a request, and the ASGI middleware that finds it.

The middleware authenticates every /v1/* request from `Authorization: Bearer KEY` before the
app reads any of the body, so an unauthenticated upload costs nothing but its headers. Keys
are looked up by HMAC-SHA256(settings.api_key_secret, key); see shared/db/api_keys.py.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from shared.db import api_keys as key_store
from shared.db.ownership import EVERYONE, Owner
from shared.errors import PermissionDenied, Unauthenticated
from shared.settings import PLACEHOLDER_SECRETS, Settings

LOCAL_SCOPE = "local"
PRINCIPAL_STATE = "principal"
RESPONSE_HEADERS_STATE = "auth_response_headers"
SIGNED_IMAGE_PATH = re.compile(r"^/v1/jobs/[^/]+/images/[^/]+$")
APPEAL_PATH = re.compile(r"^/v1/jobs/[^/]+/appeal$")
WS_POLICY_VIOLATION = 1008


@dataclass(frozen=True)
class Principal:
    """The caller. `api_key_id` None is the local keyless principal (keys not required), or
    the bootstrap admin token. `rpm` / `max_active_jobs` None mean no limit."""

    api_key_id: str | None
    name: str
    is_admin: bool
    rpm: int | None = None
    max_active_jobs: int | None = None

    @property
    def scope(self) -> str:
        """The never-NULL name that idempotency keys and rate limits are scoped by."""
        return self.api_key_id or LOCAL_SCOPE


LOCAL_PRINCIPAL = Principal(api_key_id=None, name=LOCAL_SCOPE, is_admin=False)
BOOTSTRAP_ADMIN = Principal(api_key_id=None, name="admin-token", is_admin=True)


def get_principal(request: Request) -> Principal:
    """The principal the middleware stored on the request (the local one outside /v1)."""
    principal = getattr(request.state, PRINCIPAL_STATE, None)
    return principal if isinstance(principal, Principal) else LOCAL_PRINCIPAL


def admin_refusal(principal: Principal, path: str) -> Unauthenticated | PermissionDenied | None:
    """Why `principal` may not use the admin endpoint `path` (None if it may): a 401 without
    a key, a 403 for a key that is not an admin key."""
    if principal.is_admin:
        return None
    if principal.api_key_id is None:
        return Unauthenticated(
            f"{path} is an admin endpoint: send Authorization: Bearer <admin key> "
            "(create one with `unclip keys create --name NAME --admin`)"
        )
    return PermissionDenied(
        f"key {principal.name!r} is not an admin key; {path} needs an admin key "
        "(`unclip keys create --name NAME --admin`)",
        code="admin_key_required",
    )


def require_admin_principal(request: Request) -> Principal:
    """The principal if it is an admin (AdminDep); otherwise the 401 or 403 of admin_refusal."""
    principal = get_principal(request)
    refusal = admin_refusal(principal, request.url.path)
    if refusal is not None:
        raise refusal
    return principal


def owner_filter(principal: Principal) -> Owner:
    """The jobs `principal` may see: its own, or every job for an admin."""
    return EVERYONE if principal.is_admin else Owner(api_key_id=principal.api_key_id)


def add_response_headers(request: Request, headers: dict[str, str]) -> None:
    """Headers the middleware adds to whatever response this request ends with (errors too)."""
    pending = getattr(request.state, RESPONSE_HEADERS_STATE, None) or {}
    pending.update(headers)
    setattr(request.state, RESPONSE_HEADERS_STATE, pending)


def _masked(token: str) -> str:
    """A key as an error may show it: its first and last few characters only."""
    return f"{token[:6]}...{token[-4:]}" if len(token) >= 20 else "(too short to be a key)"


def _is_placeholder(token: str) -> bool:
    return token.lower() in PLACEHOLDER_SECRETS


def _is_signed_image_fetch(scope: Scope) -> bool:
    """A GET of a signed image URL: the image route checks the signature, not a key."""
    if scope.get("method") not in ("GET", "HEAD") or not SIGNED_IMAGE_PATH.match(scope["path"]):
        return False
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return "signature" in query and "expires" in query


async def _refuse(
    exc: Unauthenticated | PermissionDenied,
    message: str,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Answer a 401 or 403 in the API's error shape without reading the request body."""
    if scope["type"] == "websocket":  # refused before the handshake: the server sends 403
        await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": message})
        return
    if isinstance(exc, Unauthenticated):
        response = error_response(
            401, message, code=exc.code, headers={"WWW-Authenticate": "Bearer"}
        )
    else:
        response = error_response(403, message, code=exc.code)
    await response(scope, receive, send)


class ApiKeyAuth:
    """Pure ASGI middleware: authenticate /v1/* (HTTP and WebSocket), answer 401 before the
    body is read, and add the headers routes queued with add_response_headers."""

    def __init__(
        self, app: ASGIApp, *, settings: Settings, sessions: sessionmaker[Session]
    ) -> None:
        self.app = app
        self.settings = settings
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] in ("http", "websocket") else ""
        if not (path == "/v1" or path.startswith("/v1/")) or _is_signed_image_fetch(scope):
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        # A suspended key may still appeal its refused jobs (that is how a suspension caused
        # by mistaken blocks is contested); every other route answers 401 key_suspended.
        appeal = scope.get("method") == "POST" and APPEAL_PATH.match(path) is not None
        try:
            principal = await self._authenticate(authorization, allow_suspended=appeal)
        except Unauthenticated as exc:
            message = exc.message
            if path.startswith("/v1/admin/"):
                message += "; admin endpoints need an admin key"
            await _refuse(exc, message, scope, receive, send)
            return
        # Admin endpoints turn other principals away before their bodies too.
        refusal = admin_refusal(principal, path) if path.startswith("/v1/admin/") else None
        if refusal is not None:
            await _refuse(refusal, refusal.message, scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state[PRINCIPAL_STATE] = principal

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = state.get(RESPONSE_HEADERS_STATE) or {}
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _authenticate(
        self, authorization: str | None, *, allow_suspended: bool = False
    ) -> Principal:
        if authorization is None:
            if self.settings.require_api_keys:
                raise Unauthenticated(
                    "no API key: send Authorization: Bearer KEY (UNCLIP_REQUIRE_API_KEYS is on; "
                    "create a key with `unclip keys create --name NAME`)"
                )
            return LOCAL_PRINCIPAL
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            # The "scheme" may be a key sent without "Bearer ": never echo one whole.
            shown = scheme if len(scheme) < 20 else _masked(scheme)
            raise Unauthenticated(
                f"the Authorization header must be 'Bearer KEY', got scheme {shown!r}"
            )
        if not token:
            raise Unauthenticated("the Authorization header says Bearer but carries no key")
        admin_token = self.settings.admin_token.get_secret_value()
        if not _is_placeholder(admin_token) and hmac.compare_digest(
            token.encode(), admin_token.encode()
        ):
            return BOOTSTRAP_ADMIN
        return await run_in_threadpool(self._principal_for_key, token, allow_suspended)

    def _principal_for_key(self, token: str, allow_suspended: bool = False) -> Principal:
        secret = self.settings.api_key_secret.get_secret_value()
        with self.sessions() as session:
            row = key_store.find_key(session=session, server_secret=secret, key=token)
        if row is None or row.revoked_at is not None:
            state = "unknown" if row is None else "revoked"
            raise Unauthenticated(
                f"the API key {_masked(token)} is {state}; "
                "use a valid key (`unclip keys list` shows them)"
            )
        if row.suspended_at is not None and not allow_suspended:
            raise Unauthenticated(
                f"API key {row.name!r} is suspended since {row.suspended_at.isoformat()}: "
                f"{row.suspended_reason or 'no reason given'}",
                code="key_suspended",
            )
        return Principal(
            api_key_id=row.id,
            name=row.name,
            is_admin=row.is_admin,
            rpm=row.rpm or self.settings.key_default_rpm,
            max_active_jobs=row.max_active_jobs or self.settings.key_default_max_active_jobs,
        )
