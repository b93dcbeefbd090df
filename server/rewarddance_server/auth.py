"""Optional API keys: scoring keys and a separate admin key, compared in constant time, never logged.

- no keys configured: everything is open (local development);
- scoring keys configured: scoring routes need one of them (or an admin key) -> else 401 / UNAUTHENTICATED;
- admin routes need an admin key: a missing or unknown key -> 401, a valid scoring key -> 403 /
  PERMISSION_DENIED. With scoring keys but no admin key, admin routes are closed (403) to everyone.
Keys arrive as ``Authorization: Bearer <key>`` or ``x-api-key: <key>`` (gRPC: metadata ``authorization``).
"""

from __future__ import annotations

import hmac
from enum import Enum

from .errors import GatewayError


class Role(Enum):
    NONE = 0
    SCORING = 1
    ADMIN = 2


def _matches(candidate: bytes, keys: tuple[str, ...]) -> bool:
    found = False
    for key in keys:  # no early exit: the time does not depend on which key matched
        found |= hmac.compare_digest(candidate, key.encode())
    return found


class Authenticator:
    def __init__(self, api_keys: tuple[str, ...] = (), admin_keys: tuple[str, ...] = ()) -> None:
        self._api_keys = tuple(api_keys)
        self._admin_keys = tuple(admin_keys)

    def __repr__(self) -> str:  # never show the keys
        return f"Authenticator(api_keys={len(self._api_keys)}, admin_keys={len(self._admin_keys)})"

    @property
    def enabled(self) -> bool:
        return bool(self._api_keys or self._admin_keys)

    @staticmethod
    def extract(authorization: str | None, x_api_key: str | None) -> str | None:
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return authorization.strip()  # tolerate a bare key
        if x_api_key:
            return x_api_key.strip()
        return None

    def role(self, key: str | None) -> Role:
        if key is None:
            return Role.NONE
        candidate = key.encode()
        if _matches(candidate, self._admin_keys):
            return Role.ADMIN
        if _matches(candidate, self._api_keys):
            return Role.SCORING
        return Role.NONE

    def check_scoring(self, key: str | None) -> None:
        if not self._api_keys:
            return  # scoring is open unless scoring keys are configured
        if self.role(key) is Role.NONE:
            raise GatewayError(401, "unauthenticated", "missing or invalid API key")

    def check_admin(self, key: str | None) -> None:
        if not self.enabled:
            return
        role = self.role(key)
        if role is Role.ADMIN:
            return
        if role is Role.SCORING:
            raise GatewayError(403, "permission_denied", "this key may not use admin routes")
        if not self._admin_keys:
            raise GatewayError(403, "permission_denied", "admin routes are disabled (no admin key configured)")
        raise GatewayError(401, "unauthenticated", "missing or invalid admin key")
