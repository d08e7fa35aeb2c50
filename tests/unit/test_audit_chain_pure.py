"""The pure hash chain: any edit, removal, insertion or reorder of a row is reported where it is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vmesh.audit.chain import GENESIS, check_chain, row_hash

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def chain(n: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    prev = GENESIS
    for i in range(1, n + 1):
        r: dict[str, object] = {
            "seq": i,
            "at": T0 + timedelta(seconds=i),
            "username": "张三",
            "roles": "operator",
            "action": "directory.view",
            "target_code": f"330106000013260000{i:02d}",
            "client_addr": "10.0.0.9",
            "result": "ok",
            "detail": '{"purpose":"巡查"}',
        }
        r["prev_hash"] = prev
        r["hash"] = prev = row_hash(prev, r)
        rows.append(r)
    return rows


def test_intact() -> None:
    rows = chain(5)
    rep = check_chain(rows)
    assert rep.ok and rep.checked == 5 and rep.last_hash == rows[-1]["hash"]


@pytest.mark.parametrize("field", ["username", "action", "target_code", "result", "detail", "at"])
def test_edit_of_any_field_is_found(field: str) -> None:
    rows = chain(4)
    rows[2][field] = T0 if field == "at" else "forged"
    rep = check_chain(rows)
    assert not rep.ok and rep.seq == 3 and "edited" in rep.problem


def test_removal_is_found() -> None:
    rows = chain(4)
    del rows[1]
    rep = check_chain(rows)
    assert not rep.ok and rep.seq == 2 and "missing" in rep.problem


def test_rehashed_forgery_breaks_the_next_link() -> None:
    rows = chain(4)
    rows[1]["username"] = "mallory"
    rows[1]["hash"] = row_hash(str(rows[1]["prev_hash"]), rows[1])
    rep = check_chain(rows)
    assert not rep.ok and rep.seq == 3 and "link" in rep.problem


def test_batches_continue_the_chain() -> None:
    rows = chain(6)
    first = check_chain(rows[:3])
    rest = check_chain(rows[3:], first.last_hash, 4)
    assert first.ok and rest.ok and rest.checked == 3


def test_naive_timestamps_are_taken_as_utc() -> None:
    rows = chain(1)
    naive = dict(rows[0], at=T0.replace(tzinfo=None) + timedelta(seconds=1))
    assert row_hash(GENESIS, naive) == rows[0]["hash"]
