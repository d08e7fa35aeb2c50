"""Password policy and argon2id hashing."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from vmesh.auth import passwords
from vmesh.errors import InvalidInput

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 8 characters"),
        ("", "at least 8 characters"),
        ("x" * 257, "at most 256 characters"),
        ("Wang.Wei", "same as the username"),
        ("  wang.wei ", "same as the username"),
        (" " * 9, "only blanks"),
    ],
)
def test_policy_refuses_naming_field_and_reason(password: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as e:
        passwords.check_policy(password, "wang.wei", field="new_password")
    (err,) = e.value.errors
    assert err.field == "new_password" and reason in err.reason
    assert err.value is None  # the password itself is never echoed


def test_policy_accepts_a_reasonable_password() -> None:
    passwords.check_policy("雪亮工程2024!", "wang.wei")
    passwords.check_policy("12345678", "wang.wei")


def test_hash_is_argon2id_salted_and_verifies() -> None:
    h1 = passwords.hash_password("correct horse")
    h2 = passwords.hash_password("correct horse")
    assert h1.startswith("$argon2id$") and h1 != h2
    assert passwords.verify_password(h1, "correct horse")
    assert not passwords.verify_password(h1, "correct horsE")
    assert not passwords.verify_password("not-a-hash", "correct horse")
    assert not passwords.needs_rehash(h1)


def test_weaker_hash_needs_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("correct horse")
    assert passwords.verify_password(weak, "correct horse")
    assert passwords.needs_rehash(weak)


def test_dummy_hash_matches_no_ordinary_password() -> None:
    d = passwords.dummy_hash()
    assert d == passwords.dummy_hash() and d.startswith("$argon2id$")
    assert not passwords.verify_password(d, "")
    assert not passwords.verify_password(d, "password")
