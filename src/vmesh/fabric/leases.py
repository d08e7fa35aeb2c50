"""Leases: which streams a node carries, for whom, and when to let them go. Sans-IO, no clock.

A node holds one **lease** per stream it carries in from a neighbour (or from its own camera):
the lease is on the link (upstream neighbour → this node), so a stream crosses each link at most
once. Its **consumers** are local viewers (``Consumer.viewer``: a channel showing the camera) and
downstream links (``Consumer.link``: a neighbour that holds a lease of its own on the link from
here). The first consumer opens the lease; the last one leaving starts the teardown:

- a lease lingers until ``linger`` seconds after its last *viewer* left (a quick re-watch or a
  polling cycle coming back finds the stream still flowing); ``due(now)`` lists the ones whose time
  is up;
- if no viewer left here within ``linger``, the last *link* leaving tears it down at once (that
  neighbour already lingered), so teardown runs hop by hop towards the camera without adding a
  linger per hop.

States and the events that move them (anything else raises ``Conflict`` naming both)::

    (new)     --acquire-->        opening   (caller opens the upstream hop)
    opening   --opened-->         active    (or closing if every consumer left meanwhile)
    opening   --failed-->         (gone)    (caller tells its consumers)
    opening   --acquire-->        opening
    active    --acquire-->        active
    active    --release last, a viewer left < linger ago--> lingering
    active    --release last, otherwise-->                   closing (caller tears down now)
    lingering --acquire-->        active
    lingering --expire (due)-->   closing
    closing   --closed-->         (gone)

Public: ``LeaseTable``, ``Lease``, ``LeaseState``, ``Consumer``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from vmesh.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)


class LeaseState(StrEnum):
    opening = "opening"
    active = "active"
    lingering = "lingering"
    closing = "closing"


@dataclass(frozen=True, order=True)
class Consumer:
    """Who uses a stream at a node: a local ``viewer`` (by id) or a downstream ``link`` (node)."""

    kind: str
    id: str

    @classmethod
    def viewer(cls, id: str) -> Consumer:
        return cls("viewer", id)

    @classmethod
    def link(cls, node: str) -> Consumer:
        return cls("link", node)

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass
class Lease:
    """A stream carried into this node over the link ``upstream`` → ``node`` (``upstream`` is
    ``None`` when the camera is this node's own)."""

    stream: str
    node: str
    upstream: str | None
    state: LeaseState = LeaseState.opening
    consumers: set[Consumer] = field(default_factory=set)
    linger_until: float | None = None
    opened_at: float = 0.0

    @property
    def link(self) -> tuple[str | None, str]:
        return (self.upstream, self.node)

    @property
    def links_down(self) -> list[str]:
        return sorted(c.id for c in self.consumers if c.kind == "link")

    @property
    def viewers(self) -> list[str]:
        return sorted(c.id for c in self.consumers if c.kind == "viewer")


_TRANSITIONS: dict[tuple[LeaseState, str], LeaseState | None] = {
    (LeaseState.opening, "opened"): LeaseState.active,
    (LeaseState.opening, "opened_unused"): LeaseState.closing,
    (LeaseState.opening, "failed"): None,
    (LeaseState.opening, "acquire"): LeaseState.opening,
    (LeaseState.active, "acquire"): LeaseState.active,
    (LeaseState.active, "release_viewer"): LeaseState.lingering,
    (LeaseState.active, "release_link"): LeaseState.closing,
    (LeaseState.lingering, "acquire"): LeaseState.active,
    (LeaseState.lingering, "expire"): LeaseState.closing,
    (LeaseState.closing, "closed"): None,
}


class LeaseTable:
    """The leases of one node; see the module docstring."""

    def __init__(self, node: str, linger: float = 30.0) -> None:
        if linger < 0:
            raise InvalidInput.one("linger", "must not be negative", linger)
        self.node = node
        self.linger = linger
        self._leases: dict[str, Lease] = {}

    def get(self, stream: str) -> Lease | None:
        return self._leases.get(stream)

    def rerouted(self, stream: str, upstream: str) -> None:
        """The stream now comes over the link from ``upstream`` (a re-route: dual homing); its
        consumers and state stay."""
        self._lease(stream).upstream = upstream

    def leases(self) -> list[Lease]:
        return [self._leases[s] for s in sorted(self._leases)]

    def _move(self, lease: Lease, event: str) -> LeaseState | None:
        try:
            new = _TRANSITIONS[(lease.state, event)]
        except KeyError:
            raise Conflict(
                f"lease of stream {lease.stream} at node {self.node} is {lease.state}: "
                f"cannot {event.replace('_', ' ')}"
            ) from None
        log.debug(
            "lease node=%s stream=%s %s -> %s on %s",
            self.node,
            lease.stream,
            lease.state,
            new,
            event,
        )
        if new is None:
            del self._leases[lease.stream]
        else:
            lease.state = new
        return new

    def _lease(self, stream: str) -> Lease:
        try:
            return self._leases[stream]
        except KeyError:
            raise NotFound(f"node {self.node} holds no lease of stream {stream}") from None

    def acquire(self, stream: str, consumer: Consumer, upstream: str | None, now: float) -> bool:
        """Add ``consumer`` to the stream's lease (made if new). True when the caller must open
        the upstream hop now (the lease is new); a consumer already there changes nothing."""
        lease = self._leases.get(stream)
        if lease is None:
            lease = Lease(stream, self.node, upstream, opened_at=now)
            lease.consumers.add(consumer)
            self._leases[stream] = lease
            log.info("lease node=%s stream=%s opening for %s", self.node, stream, consumer)
            return True
        self._move(lease, "acquire")
        lease.consumers.add(consumer)
        return False

    def opened(self, stream: str) -> bool:
        """The upstream hop flows. True when every consumer left while it opened: the lease is
        ``closing`` and the caller tears it down now."""
        lease = self._lease(stream)
        return self._move(lease, "opened" if lease.consumers else "opened_unused") is (
            LeaseState.closing
        )

    def failed(self, stream: str) -> set[Consumer]:
        """Opening failed: the lease is gone; returns the consumers that were waiting for it."""
        lease = self._lease(stream)
        self._move(lease, "failed")
        return set(lease.consumers)

    def release(self, stream: str, consumer: Consumer, now: float) -> bool:
        """Remove ``consumer``. True when the caller must tear the stream down now (the last
        downstream link left, or the last viewer left and ``linger`` is 0)."""
        lease = self._leases.get(stream)
        if lease is None or consumer not in lease.consumers:
            return False  # already gone: releasing twice is harmless
        if lease.state is LeaseState.opening:
            lease.consumers.discard(consumer)
            return False  # whoever opens it finds no consumer and releases it then
        lease.consumers.discard(consumer)
        if consumer.kind == "viewer":
            lease.linger_until = now + self.linger
        if lease.consumers:
            return False
        if lease.linger_until is not None and now < lease.linger_until:
            self._move(lease, "release_viewer")
            return False
        self._move(lease, "release_link" if consumer.kind == "link" else "release_viewer")
        if lease.state is LeaseState.lingering:  # linger 0: no wait
            self._move(lease, "expire")
        return True

    def due(self, now: float) -> list[str]:
        """Lingering leases whose time is up, now ``closing``: the caller tears them down."""
        out = []
        for lease in list(self._leases.values()):
            if (
                lease.state is LeaseState.lingering
                and lease.linger_until is not None
                and now >= lease.linger_until
            ):
                self._move(lease, "expire")
                out.append(lease.stream)
        return sorted(out)

    def closed(self, stream: str) -> None:
        """Teardown done: forget the lease."""
        lease = self._leases.get(stream)
        if lease is not None:
            self._move(lease, "closed")
