"""The one exception hierarchy of vmesh.

Every error that reaches a user names what was wrong: the field (or key, or row) and the reason.
``vmesh.api.problems`` maps these once to ``application/problem+json``; the CLI prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One reason an input was refused. ``row`` is set for file imports (1-based data row)."""

    field: str
    reason: str
    value: str | None = None
    row: int | None = None

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"field": self.field, "reason": self.reason}
        if self.value is not None:
            d["value"] = self.value
        if self.row is not None:
            d["row"] = self.row
        return d

    def __str__(self) -> str:
        where = f"row {self.row}: " if self.row is not None else ""
        val = f" (got {self.value!r})" if self.value is not None else ""
        return f"{where}{self.field}: {self.reason}{val}"


class VmeshError(Exception):
    """Base of all vmesh errors. ``status`` is the HTTP status it maps to."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors: list[FieldError] = list(errors or [])


class InvalidInput(VmeshError):
    """The input is malformed or violates a rule; ``errors`` lists each field and reason."""

    status = 422
    title = "Invalid input"

    @classmethod
    def one(cls, field: str, reason: str, value: object | None = None) -> InvalidInput:
        v = None if value is None else str(value)
        return cls(f"{field}: {reason}", errors=[FieldError(field, reason, v)])


class NotFound(VmeshError):
    status = 404
    title = "Not found"


class Conflict(VmeshError):
    status = 409
    title = "Conflict"


class Unauthorized(VmeshError):
    status = 401
    title = "Not authenticated"


class Forbidden(VmeshError):
    status = 403
    title = "Forbidden"


class Locked(VmeshError):
    status = 423
    title = "Account locked"


@dataclass
class ErrorList:
    """Collects field errors, e.g. across the rows of an import, and raises them together."""

    errors: list[FieldError] = field(default_factory=list)
    limit: int = 1000
    total: int = 0

    def add(self, err: FieldError) -> None:
        self.total += 1
        if len(self.errors) < self.limit:
            self.errors.append(err)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self, detail: str) -> None:
        if self.errors:
            more = (
                f" (first {len(self.errors)} of {self.total} shown)"
                if self.total > self.limit
                else ""
            )
            raise InvalidInput(f"{detail}: {self.total} error(s){more}", errors=self.errors)
