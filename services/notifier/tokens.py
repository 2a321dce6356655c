"""Viewer tokens: short-lived signed tokens that name one storefront viewer.

The shop's backend asks for one with the service token (``POST /v1/viewer-tokens``, in
:mod:`services.notifier.api.tokens`) and hands it to the browser; the browser sends it back as
``Authorization: Bearer <token>`` or, where it cannot set headers (EventSource, WebSocket), as
the ``viewer_token`` query parameter. Only with a valid token does the notifier reveal
``friends_bought``, and only for the viewer the token names.

Format: ``vt1.<payload>.<signature>``, both base64url; the payload is JSON ``{"sub": viewer,
"exp": unix seconds}`` and the signature is HMAC-SHA256 over ``vt1.<payload>``. The key is
``SOCIALPROOF_VIEWER_TOKEN_SECRET``; when that is unset it is derived from the service token
(HMAC(service token, label)), so a deployment with one secret still works and rotating the
service token also invalidates every viewer token. A service token is never a viewer token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import orjson
from pydantic import TypeAdapter, ValidationError

from contracts.events import Identifier

PREFIX = "vt1"
#: parsed claims kept per verifier (tokens are short-lived; the table is cleared when full)
MAX_REMEMBERED = 10_000
_DERIVATION_LABEL = b"socialproof viewer tokens v1"
_viewer_id = TypeAdapter(Identifier)


class InvalidViewerToken(Exception):
    """The token is malformed, tampered with, expired, or not a viewer token; says which."""


@dataclass(frozen=True)
class ViewerToken:
    viewer_id: str
    expires_at: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_secret(service_token: str) -> bytes:
    return hmac.new(service_token.encode(), _DERIVATION_LABEL, hashlib.sha256).digest()


class ViewerTokens:
    def __init__(self, secret: bytes, ttl_s: int) -> None:
        if len(secret) < 16:
            raise ValueError("the viewer token secret must be at least 16 bytes")
        self._secret = secret
        self.ttl_s = ttl_s
        self._claims: dict[str, ViewerToken] = {}  # signed payload -> its claims

    def _sign(self, signed_part: str) -> str:
        return self._signature(signed_part.encode()).decode()

    def _signature(self, signed_part: bytes) -> bytes:
        # one C call: this runs on every read API request
        digest = hmac.digest(self._secret, signed_part, "sha256")
        return base64.urlsafe_b64encode(digest).rstrip(b"=")

    def mint(self, viewer_id: str, now: float | None = None) -> tuple[str, ViewerToken]:
        """A new token for ``viewer_id`` valid for ``ttl_s`` seconds."""
        now = time.time() if now is None else now
        claims = ViewerToken(
            viewer_id=_viewer_id.validate_python(viewer_id), expires_at=int(now) + self.ttl_s
        )
        payload = _b64(orjson.dumps({"sub": claims.viewer_id, "exp": claims.expires_at}))
        signed = f"{PREFIX}.{payload}"
        return f"{signed}.{self._sign(signed)}", claims

    def verify(self, token: str, now: float | None = None) -> ViewerToken:
        """The token's claims, or :class:`InvalidViewerToken` saying why it is refused."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise InvalidViewerToken("not a viewer token")
        signed = f"{parts[0]}.{parts[1]}".encode("utf-8", "surrogatepass")
        # as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not a 401)
        if not hmac.compare_digest(
            self._signature(signed), parts[2].encode("utf-8", "surrogatepass")
        ):
            raise InvalidViewerToken("bad signature")
        claims = self._claims.get(parts[1])
        if claims is None:
            claims = self._parse(parts[1])
        now = time.time() if now is None else now
        if claims.expires_at <= now:
            raise InvalidViewerToken("expired")
        return claims

    def _parse(self, payload: str) -> ViewerToken:
        """The claims of a signed payload, remembered: a page's reads all carry the same token,
        and parsing it again gives the same claims (the signature and the expiry are still
        checked on every request)."""
        try:
            raw = orjson.loads(_unb64(payload))
            claims = ViewerToken(
                viewer_id=_viewer_id.validate_python(raw["sub"]), expires_at=int(raw["exp"])
            )
        except (ValueError, KeyError, TypeError, ValidationError):
            raise InvalidViewerToken("malformed payload") from None
        if len(self._claims) >= MAX_REMEMBERED:
            self._claims.clear()  # bounded; the next requests parse again
        self._claims[payload] = claims
        return claims
