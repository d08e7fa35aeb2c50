"""The fabric: camera streams carried between nodes' switches, hop by hop along the node tree.

``route`` (pure: the path through the lowest common ancestor, the next hop from any node),
``leases`` (pure: per (stream, link) reference counts, linger, explicit state table),
``service`` (the per-node agent: ``vmesh.<node>.rpc.fabric`` open/close, switch wiring over UDP).
"""
