"""vmesh: one video network for a province.

Packages by capability (see DESIGN.md): ``identity`` (GB/T 28181 codes), ``directory`` (org
units and endpoints), ``auth`` (users, roles, scope), ``audit`` (hash-chained log), ``storage``
(database engine and migrations), ``api`` (FastAPI app), ``web`` (console), ``node`` (the node
process), ``demo``.
"""

__version__ = "0.1.0"
