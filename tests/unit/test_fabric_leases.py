"""Lease table: reference counts per (stream, link), linger, hop-by-hop teardown, state table;
and a small network of lease tables showing a stream crosses each link once."""

from __future__ import annotations

from collections import Counter

import pytest

from vmesh.errors import Conflict
from vmesh.fabric.leases import Consumer, LeaseState, LeaseTable
from vmesh.fabric.route import next_hop

pytestmark = pytest.mark.unit

CAM = "33032800001310000001"


def test_first_consumer_opens_later_ones_share() -> None:
    t = LeaseTable("P", linger=30)
    assert t.acquire(CAM, Consumer.viewer("1"), "A", 0.0) is True
    assert t.get(CAM).state is LeaseState.opening
    assert t.acquire(CAM, Consumer.viewer("2"), "A", 0.0) is False
    assert t.opened(CAM) is False
    assert t.acquire(CAM, Consumer.viewer("3"), "A", 1.0) is False
    lease = t.get(CAM)
    assert lease.state is LeaseState.active
    assert lease.viewers == ["1", "2", "3"]
    assert lease.link == ("A", "P")


def test_last_viewer_lingers_then_is_due() -> None:
    t = LeaseTable("P", linger=30)
    t.acquire(CAM, Consumer.viewer("1"), "A", 0.0)
    t.opened(CAM)
    t.acquire(CAM, Consumer.viewer("2"), "A", 0.0)
    assert t.release(CAM, Consumer.viewer("1"), 5.0) is False
    assert t.get(CAM).state is LeaseState.active
    assert t.release(CAM, Consumer.viewer("2"), 10.0) is False
    assert t.get(CAM).state is LeaseState.lingering
    assert t.due(39.9) == []
    assert t.due(40.0) == [CAM]
    assert t.get(CAM).state is LeaseState.closing
    t.closed(CAM)
    assert t.get(CAM) is None


def test_a_viewer_back_within_the_linger_keeps_the_stream() -> None:
    t = LeaseTable("P", linger=30)
    t.acquire(CAM, Consumer.viewer("1"), "A", 0.0)
    t.opened(CAM)
    t.release(CAM, Consumer.viewer("1"), 10.0)
    assert t.acquire(CAM, Consumer.viewer("9"), "A", 20.0) is False  # no new upstream open
    assert t.get(CAM).state is LeaseState.active
    assert t.due(100.0) == []


def test_last_link_tears_down_at_once() -> None:
    t = LeaseTable("A", linger=30)
    t.acquire(CAM, Consumer.link("P"), "A1", 0.0)
    t.opened(CAM)
    assert t.release(CAM, Consumer.link("P"), 1.0) is True
    assert t.get(CAM).state is LeaseState.closing


def test_releasing_twice_or_unknown_is_harmless() -> None:
    t = LeaseTable("A", linger=30)
    assert t.release(CAM, Consumer.viewer("x"), 0.0) is False
    t.acquire(CAM, Consumer.viewer("1"), None, 0.0)
    t.opened(CAM)
    assert t.release(CAM, Consumer.viewer("nobody"), 0.0) is False
    assert t.get(CAM).consumers == {Consumer.viewer("1")}


def test_everyone_left_while_opening_closes_when_opened() -> None:
    t = LeaseTable("P", linger=30)
    t.acquire(CAM, Consumer.viewer("1"), "A", 0.0)
    assert t.release(CAM, Consumer.viewer("1"), 0.5) is False
    assert t.opened(CAM) is True
    assert t.get(CAM).state is LeaseState.closing


def test_failed_open_forgets_and_names_the_waiting_consumers() -> None:
    t = LeaseTable("P", linger=30)
    t.acquire(CAM, Consumer.viewer("1"), "A", 0.0)
    t.acquire(CAM, Consumer.viewer("2"), "A", 0.0)
    assert t.failed(CAM) == {Consumer.viewer("1"), Consumer.viewer("2")}
    assert t.get(CAM) is None


def test_a_closing_lease_refuses_new_consumers_by_name() -> None:
    t = LeaseTable("A", linger=0)
    t.acquire(CAM, Consumer.viewer("1"), None, 0.0)
    t.opened(CAM)
    assert t.release(CAM, Consumer.viewer("1"), 0.0) is True  # linger 0: straight to closing
    with pytest.raises(Conflict, match="is closing: cannot acquire"):
        t.acquire(CAM, Consumer.viewer("2"), None, 0.0)


class Net:
    """Lease tables of a whole tree, driven the way the fabric service drives them."""

    def __init__(self, parents: dict[str, str | None], camera_node: str, linger: float) -> None:
        self.parents = parents
        self.camera_node = camera_node
        self.tables = {n: LeaseTable(n, linger) for n in parents}
        self.opens: Counter[tuple[str, str]] = Counter()  # (upstream, downstream) link opens
        self.closes: Counter[tuple[str, str]] = Counter()

    def _hop(self, node: str) -> str | None:
        return next_hop(node, self.camera_node, self.parents, self.parents[node])

    def acquire(self, node: str, consumer: Consumer, now: float) -> None:
        up = self._hop(node)
        if self.tables[node].acquire(CAM, consumer, up, now):
            if up is not None:
                self.opens[(up, node)] += 1
                self.acquire(up, Consumer.link(node), now)
            self.tables[node].opened(CAM)

    def release(self, node: str, consumer: Consumer, now: float) -> None:
        if self.tables[node].release(CAM, consumer, now):
            self._teardown(node, now)

    def _teardown(self, node: str, now: float) -> None:
        lease = self.tables[node].get(CAM)
        self.tables[node].closed(CAM)
        if lease.upstream is not None:
            self.closes[(lease.upstream, node)] += 1
            self.release(lease.upstream, Consumer.link(node), now)

    def tick(self, now: float) -> None:
        for node, t in self.tables.items():
            for _ in t.due(now):
                self._teardown(node, now)


def test_a_stream_crosses_each_link_once_and_tears_down_hop_by_hop() -> None:
    tree = {"P": None, "C": "P", "K": "C"}  # province, city, county (camera at K)
    net = Net(tree, "K", linger=30)
    for i in range(3):
        net.acquire("P", Consumer.viewer(f"p{i}"), 0.0)
    for i in range(2):
        net.acquire("C", Consumer.viewer(f"c{i}"), 0.0)
    assert net.opens == {("K", "C"): 1, ("C", "P"): 1}
    assert net.tables["C"].get(CAM).consumers == {
        Consumer.link("P"),
        Consumer.viewer("c0"),
        Consumer.viewer("c1"),
    }
    assert net.tables["K"].get(CAM).consumers == {Consumer.link("C")}

    for i in range(3):
        net.release("P", Consumer.viewer(f"p{i}"), 10.0)
    for i in range(2):
        net.release("C", Consumer.viewer(f"c{i}"), 12.0)
    net.tick(39.0)  # nobody's linger is over yet: every hop still carries the stream
    assert all(t.get(CAM) is not None for t in net.tables.values())
    net.tick(40.0)  # P's linger ends: P->C closes; C still lingers for its own viewers
    assert net.tables["P"].get(CAM) is None
    assert net.tables["C"].get(CAM).state is LeaseState.lingering
    assert net.closes == {("C", "P"): 1}
    net.tick(42.0)  # C's linger ends: C closes, and K at once (its last link left)
    assert all(t.get(CAM) is None for t in net.tables.values())
    assert net.closes == {("C", "P"): 1, ("K", "C"): 1}


def test_viewers_in_two_branches_share_the_links_above_their_fork() -> None:
    tree = {"P": None, "A": "P", "B": "P", "A1": "A", "B1": "B"}
    net = Net(tree, "B1", linger=30)
    net.acquire("A1", Consumer.viewer("x"), 0.0)
    net.acquire("A1", Consumer.viewer("y"), 0.0)
    net.acquire("P", Consumer.viewer("z"), 0.0)
    net.acquire("B", Consumer.viewer("w"), 0.0)
    assert net.opens == {("B1", "B"): 1, ("B", "P"): 1, ("P", "A"): 1, ("A", "A1"): 1}
