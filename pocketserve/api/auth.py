"""API keys and per-key rate limits, as pure-ASGI middleware.

Keys are compared as SHA-256 digests with `hmac.compare_digest`, against every configured key
without stopping at a match, so timing says nothing about which key or how much of it matched.
A key is known in logs and metrics only by a short hash of it.

WebSocket handshakes are checked the same way, before they are accepted; browsers, which cannot
set headers there, may send the key as the `openai-insecure-api-key.<key>` subprotocol.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from pocketserve.api.websocket import answer_error, key_from_subprotocols
from pocketserve.errors import RateLimited, Unauthorized
from pocketserve.serving.context import current_request
from pocketserve.serving.ratelimit import RateLimiter


def key_id(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def presented_key(headers: Headers) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or None


def handshake_key(scope: Scope) -> str | None:
    """The key of a request or WebSocket handshake; headers first, then the subprotocol."""
    key = presented_key(Headers(scope=scope))
    if key is None and scope["type"] == "websocket":
        key = key_from_subprotocols(scope.get("subprotocols") or [])
    return key


def _missing_key_message(websocket: bool) -> str:
    message = ("You didn't provide an API key. Send it as `Authorization: Bearer YOUR_KEY` or "
               "as the `X-API-Key` header")
    if websocket:
        message += ", or as the subprotocol `openai-insecure-api-key.YOUR_KEY`"
    return message + "."


def is_open_path(path: str, open_paths: list[str]) -> bool:
    for pattern in open_paths:
        if pattern.endswith("*") and path.startswith(pattern[:-1]):
            return True
        if path == pattern:
            return True
    return False


class ApiKeys:
    def __init__(self, keys: list[str]):
        self._digests = [(hashlib.sha256(k.encode()).digest(), key_id(k)) for k in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def match(self, candidate: str) -> str | None:
        """The id of the key equal to `candidate`, compared in constant time."""
        digest = hashlib.sha256(candidate.encode()).digest()
        found: str | None = None
        for known, ident in self._digests:
            if hmac.compare_digest(digest, known):
                found = ident
        return found


class ApiKeyAuth:
    """401 without a valid key (except on open paths); 429 past the key's rate limits.

    For a WebSocket the limits count connections opened, and the tokens its session used are
    charged when it closes.
    """

    def __init__(self, app: ASGIApp, keys: ApiKeys, open_paths: list[str],
                 limiter: RateLimiter):
        self.app = app
        self.keys = keys
        self.open_paths = open_paths
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] not in ("http", "websocket") or not self.keys
                or is_open_path(scope["path"], self.open_paths)):
            await self.app(scope, receive, send)
            return
        candidate = handshake_key(scope)
        ident = self.keys.match(candidate) if candidate else None
        if ident is None:
            message = ("Incorrect API key provided." if candidate else
                       _missing_key_message(scope["type"] == "websocket"))
            await answer_error(scope, send, Unauthorized(message), "unauthorized")
            return
        ctx = current_request()
        if ctx is not None:
            ctx.api_key_id = ident
        try:
            self.limiter.admit(ident)
        except RateLimited as exc:
            await answer_error(scope, send, exc, "rate_limited")
            return
        try:
            await self.app(scope, receive, send)
        finally:
            if ctx is not None:
                self.limiter.charge_tokens(ident, ctx.prompt_tokens + ctx.completion_tokens)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, has_keys: bool, allow_open: bool) -> str | None:
    """Why the server must not start on `host`, or None when it may."""
    if has_keys or allow_open or is_loopback(host):
        return None
    return (f"Refusing to listen on {host} without API keys: anyone who can reach it could use "
            "the server. Set a key (POCKETSERVE_API_KEYS='[\"your-key\"]', api_keys in the "
            "config file, or --api-key-file FILE), or pass --allow-open-access to serve "
            "without authentication on purpose.")
