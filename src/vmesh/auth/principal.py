"""Who is calling: the authenticated user as every capability sees it.

``scope_path`` is the directory ``path`` of the user's scope org unit (``/1/7/``): an entry is in
scope when its path starts with it. ``department_code`` narrows further where a capability uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "operator", "viewer", "chair", "agent", "commander", "petition")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    roles: frozenset[str]
    scope_code: str
    scope_path: str
    department_code: str | None = None
    client_addr: str = ""

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def covers(self, path: str) -> bool:
        """True when the entry at ``path`` is inside this user's scope."""
        return path.startswith(self.scope_path)

    @property
    def roles_text(self) -> str:
        return " ".join(sorted(self.roles))
