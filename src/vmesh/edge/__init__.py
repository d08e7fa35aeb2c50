"""The WebRTC edge: Janus, run and driven by the node.

- ``config``: Janus's configuration rendered from typed settings (pure), written into the node's
  data folder with per-install secrets (0600).
- ``janus``: our own async client of the Janus HTTP API and admin API.
- ``streaming``: typed requests of the Streaming plugin (RTP mountpoints).
- ``service``: ``JanusEdge``, which renders the configuration, supervises the ``janus`` process
  (``vmesh.node.supervisor``), checks its health through ``info`` and stops it.

Browsers never talk to Janus's API: it listens on loopback only, and the node drives it.
"""
