"""Queues of the service desk, with no I/O: the order within a queue, which case an agent takes
next, a waiting villager's position and expected wait.

- There is one queue per item. A case waits in the queue of its item (``queued`` or
  ``transferred``).
- Within a queue: cases put back at the head (their agent's page died, or put on hold) first,
  then first come first served by ticket time (``enqueued_at``; a called-back case keeps its
  original ticket), then by id.
- An agent serves the queues of the items whose agent group is among the agent's groups; each
  group has a priority (1 is served first). ``next_case`` takes the head of the highest-priority
  non-empty queue; among queues of equal priority, the case that has waited longest.
- Expected wait: ``position × target minutes ÷ agents serving the queue`` (at least one).

Public: ``Waiting``, ``AgentQueues``, ``order``, ``next_case``, ``positions``, ``expected_wait``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Waiting:
    """A waiting case as the queue sees it."""

    id: int
    item_code: str
    enqueued_at: datetime
    at_head: bool = False


@dataclass(frozen=True)
class AgentQueues:
    """Which groups an agent serves, with their priority (1 first)."""

    username: str
    groups: Mapping[str, int]

    def priority_of(self, group: str) -> int | None:
        return self.groups.get(group)


def _key(w: Waiting) -> tuple[bool, datetime, int]:
    return (not w.at_head, w.enqueued_at, w.id)


def order(cases: Iterable[Waiting]) -> list[Waiting]:
    """``cases`` of one queue, in the order they will be served."""
    return sorted(cases, key=_key)


def next_case(
    agent: AgentQueues, waiting: Iterable[Waiting], item_groups: Mapping[str, str]
) -> Waiting | None:
    """The case ``agent`` takes next, or None when none of the agent's queues has one."""
    best: tuple[int, tuple[bool, datetime, int]] | None = None
    chosen: Waiting | None = None
    for w in waiting:
        group = item_groups.get(w.item_code)
        prio = None if group is None else agent.priority_of(group)
        if prio is None:
            continue
        key = (prio, _key(w))
        if best is None or key < best:
            best, chosen = key, w
    return chosen


def positions(waiting: Iterable[Waiting]) -> dict[int, int]:
    """Case id → 1-based position in its own item's queue."""
    by_item: dict[str, list[Waiting]] = {}
    for w in waiting:
        by_item.setdefault(w.item_code, []).append(w)
    out: dict[int, int] = {}
    for cases in by_item.values():
        for n, w in enumerate(order(cases), start=1):
            out[w.id] = n
    return out


def expected_wait(position: int, target_minutes: int, agents: int) -> float:
    """Expected wait in minutes for the case at ``position`` (1 = next)."""
    return round(position * target_minutes / max(agents, 1), 1)


def agents_per_item(
    agents: Iterable[AgentQueues], item_groups: Mapping[str, str]
) -> dict[str, int]:
    """Item code → how many agents serve its queue."""
    counts: dict[str, int] = {}
    agents = list(agents)
    for item, group in item_groups.items():
        counts[item] = sum(1 for a in agents if a.priority_of(group) is not None)
    return counts
