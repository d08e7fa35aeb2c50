"""Ingest: cameras into the media switch, as supervised ffmpeg children sending RTP.

Owns: synthetic cameras (``synthetic``: test picture with name, clock, colour patch and tone, live
or from a pre-encoded clip), RTSP pulls (``rtsp``: probe, ``-c copy`` to RTP, failure reasons,
reconnect with back-off), the common run loop with state and status callbacks (``runner``,
``status``) and the pure ffmpeg command-line and output helpers (``ffmpeg``).

May call: ``vmesh.node.supervisor`` (child processes), ``vmesh.errors``. It does not touch the
switch or the directory: the media service gives each source an ``RtpTarget`` (the switch input's
ports) and turns status callbacks into switch inputs and directory online/last_seen.

Public: ``SyntheticCamera``, ``SyntheticSpec``, ``ClipCache``, ``RtspCamera``, ``RtspSettings``,
``RtpTarget``, ``IngestState``, ``IngestStatus``, ``FailureKind``, ``Failure``, ``patch_colour``,
``patch_rect``, ``tone_frequency``.
"""
