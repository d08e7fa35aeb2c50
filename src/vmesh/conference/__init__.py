"""Tiered video conferences: a main venue and sub-venues at any node, with chair control.

``core`` (pure: the floor's state machine, events in, routing plan out), ``models``/``store``
(conferences, venues, chairs, attendance in the database), ``service`` (running conferences:
applies plans to the switch, venue and chair sessions), ``api`` (HTTP and the WebSocket).
"""
