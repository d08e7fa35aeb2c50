"""Federation: the NATS bus that joins the nodes of the network into one tree.

Owns the network's own certificate authority (``ca``), the rendering of each node's nats-server
configuration (``natsconf``, pure), the supervised nats-server of a node (``service``), the node's
request/reply client over NATS (``bus``) and the ``vmesh ca`` commands (``cli``).

A node's nats-server listens for clients on loopback only, has a JetStream domain named after
the node's code, accepts leaf connections from its children over mutual TLS (certificates from
the network CA) and dials its parent (and optionally a second parent) as a leaf. See
docs/federation.md.
"""
