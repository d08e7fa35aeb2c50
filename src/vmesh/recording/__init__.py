"""Recording, playback, snapshots and camera health (issue 7 items 2–4; docs/recording.md).

Modules: ``plans`` (what and when), ``recorder`` (switch output → ffmpeg segments), ``index``
(segments on disk ↔ rows, reconcile after a crash), ``retention`` (age, disk pressure),
``timeline`` (spans and gaps), ``playback`` (a range as one MP4), ``snapshot`` (JPEG from the GOP
cache), ``health`` (classes, online rate), ``access`` (the one authorisation point),
``service`` (the node's recording task), ``api`` (HTTP).
"""
