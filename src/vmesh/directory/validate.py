"""Pure checks and normalisation of directory input: one entry's fields, parent rules, search terms.

No I/O. Every check appends ``FieldError``s (with the import row when there is one) to an
``ErrorList`` instead of stopping at the first, so an API call or a file import can report every
problem at once. ``vmesh.directory.store`` adds the checks that need the database (parent exists,
code free, division consistent with the parent via ``vmesh.identity.codes``).

Public: ``EntryFields``, ``check_fields``, ``fast_fields``, ``fast_cells``, ``check_parent_kind``,
``canonical_attrs``, ``name_tokens``, ``query_tokens``, ``code_prefix_range``, ``path_range``,
``STATUSES``, ``FIELDS``, ``REQUIRED_FIELDS``, ``KINDS``, ``TIERS``.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vmesh.errors import ErrorList, FieldError
from vmesh.identity.codes import KIND_TYPES, ORG_KINDS, TIER_ORDER, Kind, Tier

STATUSES = ("online", "offline", "unknown")
# Columns of an import/export file, in export order.
FIELDS = ("code", "parent_code", "kind", "tier", "name", "lat", "lon", "tags", "status", "attrs")
REQUIRED_FIELDS = ("code", "parent_code", "kind", "name")
NAME_MAX = 200
TAG_MAX = 64
TAGS_MAX = 32
ATTRS_MAX = 8192


@dataclass(slots=True)  # not frozen: a bulk import makes a million of these
class EntryFields:
    """One entry's validated, normalised fields (what the store writes)."""

    code: str | None
    parent_code: str | None
    kind: Kind
    tier: Tier | None
    name: str
    lat: float | None
    lon: float | None
    tags: tuple[str, ...]
    status: str
    attrs: str  # canonical JSON text of an object


def _blank(v: object) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "")


def _text(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def parse_coord(
    v: object, field: str, lo: float, hi: float, errors: ErrorList, row: int | None
) -> float | None:
    if _blank(v):
        return None
    if isinstance(v, bool):
        errors.add(FieldError(field, "must be a number", _text(v), row))
        return None
    try:
        f = float(v) if isinstance(v, int | float | str) else math.nan
    except ValueError:
        errors.add(FieldError(field, "must be a number", _text(v), row))
        return None
    if not math.isfinite(f) or not lo <= f <= hi:
        errors.add(FieldError(field, f"must be a number from {lo:g} to {hi:g}", _text(v), row))
        return None
    return f


def parse_tags(v: object, errors: ErrorList, row: int | None) -> tuple[str, ...]:
    """Tags come as a list (JSON) or space-separated text (CSV); stored sorted and unique."""
    if _blank(v):
        return ()
    if isinstance(v, str):
        items: list[object] = list(v.split())
    elif isinstance(v, list):
        items = list(v)
    else:
        errors.add(
            FieldError("tags", "must be a list of tags or space-separated text", _text(v), row)
        )
        return ()
    tags: set[str] = set()
    for t in items:
        if not isinstance(t, str) or not t.strip():
            errors.add(FieldError("tags", "each tag must be non-empty text", _text(t), row))
            continue
        t = t.strip()
        if any(c.isspace() for c in t) or not t.isprintable():
            errors.add(
                FieldError("tags", "a tag must not contain spaces or control characters", t, row)
            )
        elif len(t) > TAG_MAX:
            errors.add(FieldError("tags", f"a tag must be at most {TAG_MAX} characters", t, row))
        else:
            tags.add(t)
    if len(tags) > TAGS_MAX:
        errors.add(FieldError("tags", f"at most {TAGS_MAX} tags", str(len(tags)), row))
    return tuple(sorted(tags))


def canonical_attrs(v: object, errors: ErrorList, row: int | None) -> str:
    """A JSON object (or its text) as canonical JSON text, so exports compare byte for byte."""
    if _blank(v):
        return "{}"
    obj: object = v
    if isinstance(v, str):
        try:
            obj = json.loads(v)
        except json.JSONDecodeError as e:
            errors.add(FieldError("attrs", f"is not valid JSON ({e.msg})", v[:100], row))
            return "{}"
    if not isinstance(obj, dict):
        errors.add(FieldError("attrs", "must be a JSON object", _text(v)[:100], row))
        return "{}"
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if len(text) > ATTRS_MAX:
        errors.add(
            FieldError("attrs", f"must be at most {ATTRS_MAX} characters of JSON", None, row)
        )
        return "{}"
    return text


def parse_name(v: object, errors: ErrorList, row: int | None) -> str:
    if not isinstance(v, str) or not v.strip():
        errors.add(FieldError("name", "is required", None if v is None else _text(v), row))
        return ""
    name = " ".join(v.split())
    if len(name) > NAME_MAX:
        errors.add(
            FieldError("name", f"must be at most {NAME_MAX} characters", name[:40] + "…", row)
        )
    elif not name.isprintable():
        errors.add(FieldError("name", "must not contain control characters", name, row))
    return name


def parse_kind(v: object, errors: ErrorList, row: int | None) -> Kind | None:
    try:
        return Kind(str(v)) if isinstance(v, str) else Kind(_text(v))
    except ValueError:
        allowed = ", ".join(k.value for k in Kind)
        errors.add(FieldError("kind", f"unknown kind (allowed: {allowed})", _text(v), row))
        return None


def parse_tier(v: object, kind: Kind | None, errors: ErrorList, row: int | None) -> Tier | None:
    if _blank(v):
        if kind is Kind.region:
            allowed = ", ".join(t.value for t in TIER_ORDER)
            errors.add(FieldError("tier", f"is required for a region ({allowed})", None, row))
        return None
    try:
        tier = Tier(v if isinstance(v, str) else _text(v))
    except ValueError:
        allowed = ", ".join(t.value for t in TIER_ORDER)
        errors.add(FieldError("tier", f"unknown tier (allowed: {allowed})", _text(v), row))
        return None
    if kind is not None and kind is not Kind.region:
        errors.add(
            FieldError("tier", f"only regions have a tier, not a {kind.value}", tier.value, row)
        )
        return None
    return tier


def parse_status(v: object, errors: ErrorList, row: int | None) -> str:
    if _blank(v):
        return "unknown"
    if v not in STATUSES:
        errors.add(FieldError("status", f"must be one of {', '.join(STATUSES)}", _text(v), row))
        return "unknown"
    return str(v)


def parse_code_text(v: object, field: str, errors: ErrorList, row: int | None) -> str | None:
    """Shape only (text, trimmed); ``identity.codes.parse_code`` does the full check."""
    if _blank(v):
        return None
    if not isinstance(v, str):
        errors.add(FieldError(field, "must be a string of 20 digits", _text(v), row))
        return None
    return v.strip()


def check_fields(
    raw: Mapping[str, object], errors: ErrorList, row: int | None = None
) -> EntryFields | None:
    """Validate one entry's fields (missing keys take defaults); ``None`` if any was bad."""
    before = errors.total
    code = parse_code_text(raw.get("code"), "code", errors, row)
    parent_code = parse_code_text(raw.get("parent_code"), "parent_code", errors, row)
    kind = parse_kind(raw.get("kind"), errors, row)
    tier = parse_tier(raw.get("tier"), kind, errors, row)
    name = parse_name(raw.get("name"), errors, row)
    lat = parse_coord(raw.get("lat"), "lat", -90, 90, errors, row)
    lon = parse_coord(raw.get("lon"), "lon", -180, 180, errors, row)
    if (lat is None) != (lon is None) and errors.total == before:
        missing = "lon" if lon is None else "lat"
        errors.add(FieldError(missing, "lat and lon must be given together", None, row))
    tags = parse_tags(raw.get("tags"), errors, row)
    status = parse_status(raw.get("status"), errors, row)
    attrs = canonical_attrs(raw.get("attrs"), errors, row)
    if errors.total != before or kind is None:
        return None
    return EntryFields(code, parent_code, kind, tier, name, lat, lon, tags, status, attrs)


def check_parent_kind(kind: Kind, parent_kind: Kind | None) -> str | None:
    """Why a ``kind`` cannot sit under ``parent_kind`` (``None``: as a root); ``None`` if it can."""
    if parent_kind is None:
        return None if kind is Kind.region else f"a {kind.value} needs a parent"
    if kind is Kind.region:
        ok = parent_kind is Kind.region
    elif kind in ORG_KINDS:
        ok = parent_kind in ORG_KINDS
    elif kind is Kind.camera:
        ok = parent_kind in ORG_KINDS or parent_kind in (Kind.nvr, Kind.platform)
    else:
        ok = parent_kind in ORG_KINDS or parent_kind is Kind.platform
    return None if ok else f"a {kind.value} cannot be placed under a {parent_kind.value}"


def allowed_types(kind: Kind) -> tuple[str, ...]:
    return KIND_TYPES[kind]


def name_tokens(text: str) -> str:
    """The SQLite name index's text for a name: its characters and character pairs, as tokens.

    ``西湖区`` → ``西 湖 区 西湖 湖区``. Letters and digits only, lower case. One character is
    found as a one-character token, two as a two-character token, longer text as all of its
    pairs (then checked exactly), which is selective even when its characters are common. A
    trigram index cannot find one or two characters at all. Bulk imports call this a million
    times: the common case (all letters and digits) stays in C.
    """
    s = text.lower()
    if not s.isalnum():
        s = "".join(filter(str.isalnum, s))
    if len(s) < 2:
        return s
    return " ".join(s) + " " + " ".join(map(operator.add, s, s[1:]))


def query_tokens(q: str) -> str | None:
    """The FTS5 query for substring ``q``, or ``None`` when ``q`` has no letters or digits.

    The index keeps neither positions nor columns (``detail=none``): one- and two-character
    tokens differ by length, and more than two characters ask for all of their pairs; the
    exact substring test follows in SQL.
    """
    chars = "".join(filter(str.isalnum, q.lower()))
    if not chars:
        return None
    if len(chars) == 1:
        return f'"{chars}"'
    return " ".join(f'"{p}"' for p in dict.fromkeys(map(operator.add, chars, chars[1:])))


def _increment_digits(p: str) -> str | None:
    if set(p) == {"9"}:
        return None
    return str(int(p) + 1).rjust(len(p), "0")


def code_prefix_range(prefix: str) -> tuple[str, str | None]:
    """``[lo, hi)`` of the codes starting with the digits ``prefix`` (hi ``None``: no bound)."""
    return prefix, _increment_digits(prefix)


def path_range(path: str) -> tuple[str, str]:
    """``[lo, hi)`` of the paths inside the subtree at ``path`` (``'/1/7/'``); '0' follows '/'."""
    return path, path[:-1] + "0"


KINDS = {k.value: k for k in Kind}
_STATUS_SET = frozenset(STATUSES)
TIERS = {t.value: t for t in Tier}


def fast_fields(raw: Mapping[str, object]) -> EntryFields | None:
    """``EntryFields`` for a plain, valid row (text values, as CSV gives), or ``None``.

    Bulk imports try this first: it accepts the common case with a few dictionary lookups and
    never explains; a ``None`` sends the row through ``check_fields``, which names every problem
    (and also accepts valid rows this path is too simple for).
    """
    return fast_cells([raw.get(k) for k in FIELDS])


def fast_cells(cells: Sequence[object]) -> EntryFields | None:
    """``fast_fields`` of a row's values in ``FIELDS`` order (a CSV record with the export's
    header: no dictionary per row)."""
    code, parent, kind_s, tier_s, name, lat_s, lon_s, tags_s, status, attrs = cells
    try:  # a value of the wrong type (a JSON list or number) finds nothing and says None
        kind = KINDS.get(kind_s)  # type: ignore[call-overload]
        tier_s = tier_s or None
        tier = None if tier_s is None else TIERS.get(tier_s)  # type: ignore[call-overload]
        status = status or "unknown"
        if kind is None or status not in _STATUS_SET or (attrs or "{}") != "{}":
            return None
    except TypeError:  # unhashable
        return None
    if tier_s is not None:
        if tier is None or kind is not Kind.region:
            return None
    elif kind is Kind.region:
        return None
    if not isinstance(name, str) or not name or len(name) > NAME_MAX or not name.isprintable():
        return None
    if name[0] == " " or name[-1] == " " or "  " in name:
        return None
    lat_s, lon_s = lat_s or None, lon_s or None
    lat = lon = None
    if lat_s is not None or lon_s is not None:
        if not isinstance(lat_s, str) or not isinstance(lon_s, str):
            return None
        try:
            lat, lon = float(lat_s), float(lon_s)
        except ValueError:
            return None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # also false for NaN
            return None
    tags: tuple[str, ...] = ()
    if tags_s:
        if not isinstance(tags_s, str) or not tags_s.isprintable():
            return None
        parts = tags_s.split()
        if len(parts) > TAGS_MAX or max(map(len, parts), default=0) > TAG_MAX:
            return None
        tags = (parts[0],) if len(parts) == 1 else tuple(sorted(set(parts)))
    parent = parent or None
    # Codes as digits alone: blank or padded ones are check_fields' to trim or to name as missing.
    if not isinstance(code, str) or not code.isdigit():
        return None
    if parent is not None and not (isinstance(parent, str) and parent.isdigit()):
        return None
    return EntryFields(code, parent, kind, tier, name, lat, lon, tags, str(status), "{}")
