"""Opaque secrets for console sessions and API tokens: random, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

COOKIE_NAME = "vmesh_session"
TOKEN_PREFIX = "vmt_"


def new_secret(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
