"""Password hashing (argon2id) and the password policy. Pure apart from CPU time; no I/O.

Hashes use argon2-cffi's defaults (RFC 9106 low-memory profile: argon2id, 64 MiB, t=3, p=4), so a
stored hash carries its own parameters and ``needs_rehash`` tells when they fell behind the current
ones. Hashing costs ~0.1 s of CPU: async callers run these functions in a worker thread.

``dummy_hash()`` is verified against when a login names an unknown user, so that an unknown username
costs the same time as a wrong password.

Public: ``check_policy``, ``hash_password``, ``verify_password``, ``needs_rehash``, ``dummy_hash``,
``MIN_LENGTH``, ``MAX_LENGTH``.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from vmesh.errors import InvalidInput

MIN_LENGTH = 8
# argon2 takes any length, but a megabyte "password" is an attack on CPU, not a password.
MAX_LENGTH = 256

_hasher = PasswordHasher()


def check_policy(password: str, username: str, field: str = "password") -> None:
    """Refuse a password that breaks the policy, naming the field and the reason."""
    if not isinstance(password, str):
        raise InvalidInput.one(field, "must be a string")
    if len(password) < MIN_LENGTH:
        raise InvalidInput.one(field, f"must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise InvalidInput.one(field, f"must be at most {MAX_LENGTH} characters long")
    if password.strip().casefold() == username.strip().casefold():
        raise InvalidInput.one(field, "must not be the same as the username")
    if not password.strip():
        raise InvalidInput.one(field, "must not be only blanks")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches; False on mismatch or an unreadable stored hash."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@cache
def dummy_hash() -> str:
    """A hash of a random password, computed once, for timing-equal checks of unknown users."""
    import secrets

    return _hasher.hash(secrets.token_urlsafe(16))
