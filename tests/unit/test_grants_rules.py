"""The pure rules of grants (``vmesh.grants.rules``): every state and event of the state machine,
the effective state over time, why a grant cannot be used, which cameras a selection covers, who
a grantee includes, the validation of applications and decisions, and who may decide a grant of
another node's cameras (``above``, ``decider_refusal``)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from vmesh.auth.principal import Principal
from vmesh.errors import Conflict, InvalidInput
from vmesh.grants.rules import (
    EVENTS,
    CameraFacts,
    Period,
    Selection,
    Status,
    above,
    decider_refusal,
    effective,
    ended_reason,
    grantee_includes,
    parse_application,
    parse_decision,
    parse_revocation,
    transition,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
PROV, WC, TOWN, OTHER = (
    "33000000002166000001",
    "33032800002166000001",
    "33032810002166000001",
    "33048300002166000001",
)
CAM = "33032810001320000003"


def cam(
    tags: tuple[str, ...] = (), ancestors: tuple[str, ...] = (PROV, WC, TOWN), kind: str = "camera"
) -> CameraFacts:
    return CameraFacts(CAM, "河道", kind, frozenset(tags), ancestors, "33032800002006000001")


def user(
    scope: str = "33010000002156000001", path: str = "/1/2/3/", dept: str | None = None
) -> Principal:
    return Principal(1, "u", frozenset({"viewer"}), scope, path, dept)


# --- state machine ---------------------------------------------------------------------------

ALLOWED = {
    (Status.applied, "approve"): Status.approved,
    (Status.applied, "reject"): Status.rejected,
    (Status.approved, "revoke"): Status.revoked,
    (Status.approved, "expire"): Status.expired,
}


@pytest.mark.parametrize(("status", "event"), list(itertools.product(Status, EVENTS)))
def test_every_state_and_event(status: Status, event: str) -> None:
    if (status, event) in ALLOWED:
        assert transition("G1", status, event) is ALLOWED[(status, event)]
    else:
        with pytest.raises(Conflict) as e:
            transition("G1", status, event)
        assert f"grant G1 is {status}" in e.value.detail


def test_unknown_event_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as e:
        transition("G1", "applied", "withdraw")
    assert e.value.errors[0].field == "decision"


@pytest.mark.parametrize(
    ("status", "start", "end", "want"),
    [
        ("applied", None, None, "applied"),
        ("rejected", None, None, "rejected"),
        ("revoked", NOW - H, NOW + H, "revoked"),
        ("expired", NOW - 2 * H, NOW - H, "expired"),
        ("approved", NOW + H, NOW + 2 * H, "pending"),
        ("approved", NOW, NOW + H, "active"),  # from is inclusive
        ("approved", NOW - H, NOW + H, "active"),
        ("approved", NOW - H, NOW, "expired"),  # until is exclusive
    ],
)
def test_effective_state(
    status: str, start: datetime | None, end: datetime | None, want: str
) -> None:
    assert effective(status, start, end, NOW) == want


def _why(status: str, start: datetime | None = None, end: datetime | None = None) -> str | None:
    return ended_reason(
        "G1", status, valid_from=start, valid_until=end, revoked_at=NOW - H,
        revoked_by="wc-op", revoke_reason="汛期结束", decision_reason="不符合", now=NOW,
    )  # fmt: skip


def test_reasons_name_the_grant_and_what_happened() -> None:
    assert _why("approved", NOW - H, NOW + H) is None
    assert _why("revoked", NOW - H, NOW + H) == (
        "grant G1 revoked at 2026-07-01T11:00:00+00:00 by wc-op: 汛期结束"
    )
    assert _why("approved", NOW - 2 * H, NOW - H) == "grant G1 expired at 2026-07-01T11:00:00+00:00"
    assert _why("approved", NOW + H, NOW + 2 * H) == "grant G1 starts at 2026-07-01T13:00:00+00:00"
    assert _why("rejected") == "grant G1 was rejected: 不符合"
    assert _why("applied") == "grant G1 is not decided yet"


# --- matching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sel", "facts", "covered"),
    [
        (Selection(org=WC), cam(), True),  # below the org, any depth
        (Selection(org=TOWN), cam(), True),
        (Selection(org=PROV), cam(), True),
        (Selection(org=OTHER), cam(), False),
        (Selection(org=WC), cam(ancestors=(PROV, OTHER)), False),  # moved out of the subtree
        (Selection(org=CAM), cam(), False),  # the org is the camera itself: not a subtree of it
        (Selection(org=WC, tags=("river",)), cam(("river", "flood")), True),
        (Selection(org=WC, tags=("river", "road")), cam(("road",)), True),  # any of the tags
        (Selection(org=WC, tags=("river",)), cam(("road",)), False),
        (Selection(org=WC, tags=("river",)), cam(()), False),  # untagged since
        (Selection(codes=(CAM,)), cam(ancestors=(OTHER,)), True),  # a list ignores the tree
        (Selection(codes=("33032800001320000001",)), cam(), False),
        (Selection(org=WC), cam(kind="nvr"), False),  # only cameras
        (Selection(codes=(CAM,)), cam(kind="region"), False),
    ],
)
def test_selection_matches(sel: Selection, facts: CameraFacts, covered: bool) -> None:
    assert sel.matches(facts) is covered


def test_facts_round_trip_over_the_wire() -> None:
    f = cam(("a", "b"))
    assert CameraFacts.from_dict(f.as_dict()) == f


@pytest.mark.parametrize(
    ("kind", "code", "path", "who", "included"),
    [
        ("unit", "33010000002156000001", "/1/2/3/", user(), True),  # the unit itself
        ("unit", "33010000002166000001", "/1/2/", user(), True),  # a unit above the user
        ("unit", "33010000002166000001", None, user(), False),  # unknown here: not by path
        ("unit", "33010200002166000001", "/1/9/", user(), False),  # a sibling unit
        ("department", "33010000002156000001", None, user(dept="33010000002156000001"), True),
        ("department", "33010000002156000001", None, user(dept="33010000002156000002"), False),
        ("department", "33010000002156000001", None, user(dept=None), False),
    ],
)
def test_grantee_includes(
    kind: str, code: str, path: str | None, who: Principal, included: bool
) -> None:
    assert grantee_includes(kind, code, path, who) is included


# --- input -----------------------------------------------------------------------------------


def _app(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "org": WC, "purpose": "防汛", "from": (NOW - H).isoformat(), "until": (NOW + H).isoformat(),
    }  # fmt: skip
    body.update(over)
    return body


def test_a_valid_application() -> None:
    a = parse_application(_app(tags="river road river"), user(), NOW)
    assert (a.grantee_kind, a.grantee_code) == ("unit", "33010000002156000001")
    assert a.selection == Selection(org=WC, tags=("river", "road"))
    assert a.period == Period(NOW - H, NOW + H)
    a = parse_application(
        _app(org=None, codes=[CAM, CAM], grantee="department", **{"from": "2026-07-01T11:00:00"}),
        user(dept="33010000002156000009"),
        NOW,
    )
    assert a.selection == Selection(codes=(CAM,)) and a.grantee_code == "33010000002156000009"
    assert a.period.start == NOW - H  # no offset: UTC


def test_every_wrong_field_is_named_at_once() -> None:
    with pytest.raises(InvalidInput) as e:
        parse_application(
            {"grantee": "department", "org": "x", "purpose": "", "from": "soon"}, user(), NOW
        )
    fields = {fe.field for fe in e.value.errors}
    assert fields == {"grantee", "org", "purpose", "from", "until"}


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"org": WC, "codes": [CAM]}, "cameras"),
        ({"org": None, "codes": [CAM], "tags": ["x"]}, "tags"),
        ({"org": None, "codes": ["123"]}, "codes"),
        ({"org": None, "codes": {"a": 1}}, "codes"),
        ({"tags": ["two words"]}, "tags"),
        ({"purpose": 5}, "purpose"),
        ({"purpose": "x" * 501}, "purpose"),
        ({"until": (NOW - 2 * H).isoformat()}, "until"),  # before from
        ({"from": (NOW - 3 * H).isoformat(), "until": (NOW - 2 * H).isoformat()}, "until"),  # past
        ({"until": (NOW + timedelta(days=400)).isoformat()}, "until"),
    ],
)
def test_bad_applications(over: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_application(_app(**over), user(), NOW)
    assert field in {fe.field for fe in e.value.errors}


def test_decisions() -> None:
    req = Period(NOW - H, NOW + 5 * H)
    d = parse_decision({"decision": "approve"}, req)
    assert d.period == req
    d = parse_decision({"decision": "approve", "until": (NOW + H).isoformat()}, req)
    assert d.period == Period(NOW - H, NOW + H)  # narrowed
    d = parse_decision({"decision": "reject", "reason": "不符合规定"}, req)
    assert (d.event, d.reason, d.period) == ("reject", "不符合规定", None)
    for body, field in [
        ({"decision": "approve", "until": (NOW + 6 * H).isoformat()}, "until"),
        ({"decision": "approve", "from": (NOW - 2 * H).isoformat()}, "from"),
        (
            {
                "decision": "approve",
                "from": (NOW + 2 * H).isoformat(),
                "until": (NOW + H).isoformat(),
            },
            "until",
        ),
        ({"decision": "reject"}, "reason"),
        ({"decision": "reject", "reason": "  "}, "reason"),
        ({}, "decision"),
    ]:
        with pytest.raises(InvalidInput) as e:
            parse_decision(body, req)
        assert field in {fe.field for fe in e.value.errors}, body
    assert parse_revocation({"reason": " 汛期结束 "}) == "汛期结束"
    with pytest.raises(InvalidInput):
        parse_revocation({})


# Node codes: the province, two cities, Wencheng county (under Wenzhou) and a township of it.
N_PROV, N_WZ, N_HZ, N_WC, N_TOWN = (
    "33000000002006000001",
    "33030000002006000001",
    "33010000002006000001",
    "33032800002006000001",
    "33032810002006000001",
)


def test_a_node_is_above_the_nodes_its_division_strictly_holds() -> None:
    assert above(N_PROV, N_WC) and above(N_WZ, N_WC) and above(N_PROV, N_WZ)
    assert above(N_WC, N_TOWN) and above(N_PROV, N_TOWN)
    assert not above(N_HZ, N_WC)  # another city
    assert not above(N_WC, N_WC) and not above(N_WC, N_WZ) and not above(N_WC, N_PROV)
    assert not above(N_WC, "33032800002006000002")  # a second node of the same county


def _refusal(decider: str, scope: str, roots: tuple[str, ...] = (CAM,)) -> str | None:
    return decider_refusal(
        decider_node=decider, decider_user="alice", decider_scope=scope, owner_node=N_WC,
        roots=roots,
    )  # fmt: skip


def test_an_ancestor_whose_scope_covers_the_cameras_may_decide() -> None:
    assert _refusal(N_PROV, PROV) is None
    assert _refusal(N_WZ, "33030000002166000001", (CAM, WC)) is None
    assert _refusal(N_PROV, "33030000002156000001") is None  # a Wenzhou department's scope
    # The owner's own decisions are checked against its directory, not here.
    assert _refusal(N_WC, "") is None


def test_a_node_not_above_the_owner_is_refused_naming_both() -> None:
    why = _refusal(N_HZ, "33010000002166000001")
    assert why is not None and f"node {N_HZ} is not above node {N_WC}" in why
    why = _refusal(N_TOWN, TOWN)  # below the owner, not above it
    assert why is not None and "is not above" in why


def test_a_decider_whose_scope_does_not_cover_every_root_is_refused_naming_them() -> None:
    hz_scope = "33010000002166000001"
    why = _refusal(N_PROV, hz_scope, (CAM, OTHER))
    assert why is not None
    assert f"alice's scope {hz_scope} at node {N_PROV} does not cover {CAM}, {OTHER}" in why
    why = _refusal(N_PROV, "33030000002166000001", (CAM, OTHER))
    assert why is not None and why.endswith(f"does not cover {OTHER}")
    why = _refusal(N_PROV, "")
    assert why is not None and "scope (none)" in why


def test_a_direct_grant_names_its_grantee_code() -> None:
    p = Principal(1, "prov-op", frozenset({"operator"}), PROV, "/1/")
    body = {
        "grantee": "unit", "grantee_code": "33010000002166000001", "codes": [CAM],
        "purpose": "联合执法", "from": NOW.isoformat(), "until": (NOW + H).isoformat(),
    }  # fmt: skip
    app = parse_application(body, p, NOW, direct=True)
    assert (app.grantee_kind, app.grantee_code) == ("unit", "33010000002166000001")
    for bad, field in (({"grantee_code": "hz"}, "grantee_code"), ({"grantee": "x"}, "grantee")):
        with pytest.raises(InvalidInput) as e:
            parse_application(body | bad, p, NOW, direct=True)
        assert {fe.field for fe in e.value.errors} == {field}
