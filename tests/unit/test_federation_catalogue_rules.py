"""Catalogue wire format and the idempotent apply plan (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vmesh.errors import InvalidInput
from vmesh.federation.catalogue import (
    CatalogueChange,
    batch_subject,
    decode,
    decode_message,
    encode,
    encode_batch,
    next_version,
    plan_apply,
    stream_config,
    subject,
)

pytestmark = pytest.mark.unit

COUNTY = "33032800002006000001"
CITY = "33030000002006000001"
CAM = "33032800001320000001"
AT = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
ENTRY = {
    "parent_code": "33032800002166000001",
    "kind": "camera",
    "tier": None,
    "name": "西坑村口摄像机",
    "status": "online",
    "lat": 27.78,
    "lon": 120.09,
    "tags": ["村口"],
    "attrs": {"rtsp": "rtsp://10.0.0.1/1"},
}


def change(version: int, code: str = CAM, entry: dict | None = ENTRY) -> CatalogueChange:
    return CatalogueChange(COUNTY, code, version, AT, entry)


def test_a_change_round_trips_through_its_message() -> None:
    c = change(3)
    got = decode(subject(COUNTY, CAM), encode(c), seq=7)
    assert (got.origin, got.code, got.version, got.changed_at, got.seq) == (COUNTY, CAM, 3, AT, 7)
    assert got.entry == ENTRY and not got.deleted
    assert got.msg_id == f"{CAM}:3"
    tomb = decode(subject(COUNTY, CAM), encode(change(4, entry=None)))
    assert tomb.deleted and tomb.entry is None


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.replace(b'"version":3', b'"version":0'), "version"),
        (lambda b: b.replace(b'"format":1', b'"format":9'), "format"),
        (lambda b: b.replace(COUNTY.encode(), b"123"), "origin"),
        (lambda b: b.replace("西坑村口摄像机".encode(), b""), "entry.name"),
        (lambda b: b"[1]", "body"),
        (lambda b: b"{", "body"),
    ],
)
def test_a_bad_message_names_the_field(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as e:
        decode(subject(COUNTY, CAM), mutate(encode(change(3))))
    assert e.value.errors[0].field == field


def test_a_message_on_another_nodes_subject_is_refused() -> None:
    with pytest.raises(InvalidInput) as e:
        decode(subject(CITY, CAM), encode(change(1)))
    assert e.value.errors[0].field == "subject"


def test_apply_plan_is_idempotent_and_never_regresses() -> None:
    other = "33032800001320000002"
    writes, applied, ignored = plan_apply(
        {CAM: 2},
        [change(2), change(1), change(3), change(3), change(5, other), change(4, other)],
    )
    assert {c: w.version for c, w in writes.items()} == {CAM: 3, other: 5}
    assert [(c.code[-1], c.version) for c in applied] == [("1", 3), ("2", 5)]
    assert [(c.code[-1], c.version) for c in ignored] == [("1", 2), ("1", 1), ("1", 3), ("2", 4)]
    # Applying what was written again changes nothing.
    again, applied2, ignored2 = plan_apply({CAM: 3, other: 5}, list(writes.values()))
    assert again == {} and applied2 == [] and len(ignored2) == 2


def test_a_change_superseded_in_the_same_batch_still_counts_as_applied() -> None:
    # After a cut, v1 and v2 of an entry arrive together: both are news, only v2 is written.
    writes, applied, ignored = plan_apply({}, [change(1), change(2)])
    assert writes[CAM].version == 2
    assert [c.version for c in applied] == [1, 2] and ignored == []


def test_catalogue_versions_continue_after_a_deletion() -> None:
    assert next_version(None, 1) == 1
    assert next_version(None, 4) == 4  # first publication of an entry changed several times
    assert next_version(3, 5) == 5
    assert next_version(4, 1) == 5  # re-created after its tombstone (4): never goes back


def test_each_node_captures_only_its_own_subjects_and_sources_its_children() -> None:
    city = stream_config(CITY, [COUNTY])
    county = stream_config(COUNTY, [])
    assert city.subjects == [f"vmesh.cat.{CITY}.>"] and county.subjects == [f"vmesh.cat.{COUNTY}.>"]
    assert not city.subjects[0].startswith(county.subjects[0][:-1])
    [src] = city.sources
    assert (src.name, src.external.api) == (f"CAT_{COUNTY}", f"$JS.{COUNTY}.API")
    assert county.sources is None


def cams(n: int, version: int = 1) -> list[CatalogueChange]:
    return [change(version, f"3303280000132{k:07d}") for k in range(1, n + 1)]


def test_a_batch_of_changes_round_trips_through_format_2_messages() -> None:
    changes = [*cams(5), change(9, entry=None)]
    [(body, msg_id)] = encode_batch(COUNTY, changes)
    got = decode_message(batch_subject(COUNTY), body, seq=11)
    assert [(c.code, c.version, c.entry, c.origin, c.seq) for c in got] == [
        (c.code, c.version, c.entry, COUNTY, 11) for c in changes
    ]
    assert got[-1].deleted and got[0].changed_at == AT
    # The id names the changes it carries: the same batch again is the same message to JetStream.
    assert encode_batch(COUNTY, changes)[0][1] == msg_id
    assert encode_batch(COUNTY, changes[:-1])[0][1] != msg_id


def test_batches_are_cut_by_count_and_by_size_in_order() -> None:
    changes = cams(25)
    by_count = encode_batch(COUNTY, changes, pack=10)
    assert [len(decode_message(batch_subject(COUNTY), b)) for b, _ in by_count] == [10, 10, 5]
    one = len(encode_batch(COUNTY, changes[:1])[0][0])
    by_size = encode_batch(COUNTY, changes, max_bytes=3 * one)
    assert all(len(b) <= 3 * one for b, _ in by_size) and len(by_size) > 8
    codes = [c.code for b, _ in by_size for c in decode_message(batch_subject(COUNTY), b)]
    assert codes == [c.code for c in changes]
    with pytest.raises(ValueError):
        encode_batch(CITY, changes)


def test_format_1_messages_are_still_read() -> None:
    [got] = decode_message(subject(COUNTY, CAM), encode(change(3)), seq=2)
    assert (got.code, got.version, got.entry, got.seq) == (CAM, 3, ENTRY, 2)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.replace(b'"version":2', b'"version":0', 1), "changes[1].version"),
        (lambda b: b.replace(b'"format":2', b'"format":7'), "format"),
        (
            lambda b: b.replace(b'"code":"3303280000132', b'"code":"0003280000132', 1),
            "changes[0].code",
        ),
        (lambda b: b.replace("西坑村口摄像机".encode(), b"", 1), "changes[0].entry.name"),
        (lambda b: b.replace(b'"changes":[', b'"changes":[7,', 1), "changes[0]"),
        (lambda b: b[: b.index(b'"changes"')] + b'"changes":[]}', "changes"),
        (lambda b: b[:-3], "body"),
    ],
)
def test_a_bad_batch_is_refused_naming_the_change_and_field(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    changes = [change(1, "33032800001320000001"), change(2, "33032800001320000002")]
    [(body, _)] = encode_batch(COUNTY, changes)
    with pytest.raises(InvalidInput) as e:
        decode_message(batch_subject(COUNTY), mutate(body))
    assert e.value.errors[0].field == field


def test_a_batch_on_another_nodes_subject_is_refused() -> None:
    [(body, _)] = encode_batch(COUNTY, cams(2))
    for subj in (batch_subject(CITY), subject(COUNTY, CAM)):
        with pytest.raises(InvalidInput) as e:
            decode_message(subj, body)
        assert e.value.errors[0].field == "subject"
