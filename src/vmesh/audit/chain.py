"""The hash chain of the audit log, pure: how a row is hashed and how a chain is checked.

``row_hash(prev, fields)`` is SHA-256 over the previous hash and a canonical JSON of the row's
fields (sorted keys, UTF-8, timestamps as ISO 8601 UTC). ``check_chain`` walks rows in ``seq`` order
and reports the first place where a row was edited, removed or inserted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq",
    "at",
    "username",
    "roles",
    "action",
    "target_code",
    "client_addr",
    "result",
    "detail",
)


def _canonical(value: object) -> object:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def row_hash(prev_hash: str, fields: Mapping[str, object]) -> str:
    body = {k: _canonical(fields[k]) for k in HASHED_FIELDS}
    data = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + data).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    problem: str = ""
    seq: int | None = None
    last_hash: str = GENESIS


def check_chain(
    rows: Iterable[Mapping[str, object]], prev_hash: str = GENESIS, first_seq: int = 1
) -> ChainReport:
    """Check rows given in ascending ``seq`` order.

    A long chain is checked in batches: pass the previous batch's ``last_hash`` and next seq.
    """
    prev = prev_hash
    expected_seq = first_seq
    n = 0
    for row in rows:
        seq = row["seq"]
        if seq != expected_seq:
            return ChainReport(
                False, n, f"row with seq {expected_seq} is missing (next is {seq})", expected_seq
            )
        if row["prev_hash"] != prev:
            return ChainReport(False, n, f"row {seq}: link to the previous row is broken", int(seq))
        if row_hash(prev, row) != row["hash"]:
            return ChainReport(
                False, n, f"row {seq}: contents do not match its hash (edited)", int(seq)
            )
        prev = str(row["hash"])
        expected_seq += 1
        n += 1
    return ChainReport(True, n, last_hash=prev)
