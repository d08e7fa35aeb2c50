"""Routes through the node tree: viewer node → … → lowest common ancestor → … → camera node.

Pure functions over a ``parents`` mapping (node code → parent code, ``None`` at the root). A node
knows its own subtree and its parent, not the whole network, so the fabric decides hop by hop
with ``next_hop``: towards a node of its subtree it goes down to the child on the way, towards any
other node it goes up to its parent. ``route`` builds the whole path when the whole tree is known
(tests, the network map).

Public: ``Route``, ``route``, ``next_hop``, ``ancestors``, ``NoRoute``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from vmesh.errors import NotFound

Parents = Mapping[str, str | None]


class NoRoute(NotFound):
    """No path between two nodes (unknown node, or a node with no parent to go up to)."""

    title = "No route"


def ancestors(node: str, parents: Parents) -> list[str]:
    """``node`` and its ancestors up to the root, nearest first (``NoRoute`` if unknown)."""
    if node not in parents:
        raise NoRoute(f"node {node} is not known here")
    out = [node]
    seen = {node}
    p = parents[node]
    while p is not None:
        if p in seen:
            raise NoRoute(f"the node tree has a cycle at {p}")
        out.append(p)
        seen.add(p)
        p = parents.get(p)
    return out


@dataclass(frozen=True)
class Route:
    """``nodes`` from the viewer's node to the camera's node; ``lca`` is on it."""

    nodes: tuple[str, ...]
    lca: str

    @property
    def links(self) -> tuple[tuple[str, str], ...]:
        """The links media crosses, as (upstream, downstream): camera side first."""
        rev = self.nodes[::-1]
        return tuple(itertools.pairwise(rev))

    @property
    def hops(self) -> int:
        return len(self.nodes) - 1


def route(viewer_node: str, camera_node: str, parents: Parents) -> Route:
    """The path from ``viewer_node`` up to the lowest common ancestor, down to ``camera_node``."""
    up = ancestors(viewer_node, parents)
    down = ancestors(camera_node, parents)
    in_down = set(down)
    lca = next((n for n in up if n in in_down), None)
    if lca is None:
        raise NoRoute(f"nodes {viewer_node} and {camera_node} have no common ancestor")
    path = up[: up.index(lca) + 1] + list(reversed(down[: down.index(lca)]))
    return Route(tuple(path), lca)


def next_hop(here: str, target: str, parents: Parents, parent_of_here: str | None) -> str | None:
    """The neighbour of ``here`` on the way to ``target`` (``None``: ``target`` is ``here``).

    ``parents`` needs only ``here``'s subtree; ``parent_of_here`` is ``here``'s uplink.
    """
    if target == here:
        return None
    if target in parents:
        prev = target
        p = parents.get(target)
        seen = {target}
        while p is not None and p not in seen:
            if p == here:
                return prev
            seen.add(p)
            prev, p = p, parents.get(p)
    if parent_of_here is None:
        raise NoRoute(f"node {target} is not in the subtree of {here}, which has no parent")
    return parent_of_here
