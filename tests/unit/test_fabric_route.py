"""Routes through the lowest common ancestor and hop-by-hop next hops."""

from __future__ import annotations

import pytest

from vmesh.fabric.route import NoRoute, next_hop, route

pytestmark = pytest.mark.unit

# province P; cities A, B; counties A1, A2 under A, B1 under B
TREE = {"P": None, "A": "P", "B": "P", "A1": "A", "A2": "A", "B1": "B"}


def test_route_goes_up_to_the_common_ancestor_and_down() -> None:
    r = route("A2", "B1", TREE)
    assert r.nodes == ("A2", "A", "P", "B", "B1")
    assert r.lca == "P"
    assert r.hops == 4
    # media flows camera side first: B1 -> B -> P -> A -> A2
    assert r.links == (("B1", "B"), ("B", "P"), ("P", "A"), ("A", "A2"))


def test_route_between_siblings_turns_at_their_parent() -> None:
    assert route("A1", "A2", TREE).nodes == ("A1", "A", "A2")
    assert route("A1", "A2", TREE).lca == "A"


def test_route_to_an_ancestor_or_descendant_or_self() -> None:
    assert route("P", "A1", TREE).nodes == ("P", "A", "A1")
    assert route("A1", "P", TREE).nodes == ("A1", "A", "P")
    assert route("A1", "A1", TREE).nodes == ("A1",)
    assert route("A1", "A1", TREE).hops == 0


def test_unknown_node_is_named() -> None:
    with pytest.raises(NoRoute, match="node X9 is not known"):
        route("A1", "X9", TREE)


def test_next_hop_follows_the_route_at_every_node() -> None:
    r = route("A2", "B1", TREE)
    for here, nxt in zip(r.nodes, r.nodes[1:], strict=False):
        assert next_hop(here, "B1", TREE, TREE[here]) == nxt
    assert next_hop("B1", "B1", TREE, "B") is None


def test_next_hop_with_only_the_subtree_known_goes_up() -> None:
    # the city A knows its own subtree only; a camera at B1 is up through its parent
    subtree = {"A": None, "A1": "A", "A2": "A"}
    assert next_hop("A", "B1", subtree, "P") == "P"
    assert next_hop("A", "A2", subtree, "P") == "A2"
    with pytest.raises(NoRoute, match="no parent"):
        next_hop("A", "B1", subtree, None)
