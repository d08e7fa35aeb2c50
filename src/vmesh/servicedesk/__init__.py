"""Remote service desk (远程申办): a villager at the village's video room (the kiosk) is served
by video by an agent at the county or township centre.

Modules: ``catalogue`` (departments and items, the sample of 40 items), ``cases`` (the case state
machine, no I/O), ``queues`` (queue order, next case, positions, no I/O), ``idcard`` (ID card
checks, reader interface, simulated reader), ``service`` (cases in the database, materials,
live updates, faults), ``pdf`` (the result document), ``stats``, ``api`` (HTTP and WebSocket),
``models`` (tables of migration 0009). The console's kiosk and desk pages are
``web/static/js/views/kiosk.js`` and ``desk.js``. docs/servicedesk.md describes it for operators.
"""
