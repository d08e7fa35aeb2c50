"""The service catalogue: departments and their items (required materials, agent group, serving
centre, target time, the item's case form), checked, imported all or nothing, and read.

The import format is the JSON of ``catalogue.json`` beside this module (the demo's sample: 40
high-frequency items of 9 departments)::

    {"version": 1,
     "departments": [{"code": "rsj", "name": "人力资源和社会保障局", "sort": 0}, ...],
     "items": [{"code": "rsj-pension-statement", "department": "rsj", "name": "养老保险缴费结算单",
                "materials": ["居民身份证"], "agent_group": "social", "centre": "county",
                "target_minutes": 10, "form": [{"name": "year", "label": "缴费年度",
                "required": true}], "sort": 0}, ...]}

``parse`` checks every field and raises one ``InvalidInput`` listing each bad one
(``items[3].target_minutes: must be an integer 1..480``). ``import_catalogue`` upserts the
departments and items in one transaction, audited as ``servicedesk.catalogue.import``.

Public: ``SAMPLE``, ``Catalogue``, ``ItemSpec``, ``DepartmentSpec``, ``parse``, ``load_sample``,
``import_catalogue``, ``list_catalogue``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vmesh.audit.log import Actor, AuditLog
from vmesh.auth.principal import Principal
from vmesh.errors import ErrorList, FieldError
from vmesh.servicedesk.models import Department, Item

SAMPLE = Path(__file__).with_name("catalogue.json")
CENTRES = ("county", "township")
_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class DepartmentSpec:
    code: str
    name: str
    sort: int = 0


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    required: bool = False


@dataclass(frozen=True)
class ItemSpec:
    code: str
    department: str
    name: str
    materials: tuple[str, ...]
    agent_group: str
    centre: str
    target_minutes: int
    form: tuple[FormField, ...] = ()
    sort: int = 0


@dataclass(frozen=True)
class Catalogue:
    departments: tuple[DepartmentSpec, ...]
    items: tuple[ItemSpec, ...] = field(default_factory=tuple)


def _text(errs: ErrorList, where: str, v: Any, limit: int) -> str:
    if not isinstance(v, str) or not v.strip() or len(v) > limit:
        errs.add(FieldError(where, f"must be a non-empty text of at most {limit} characters"))
        return ""
    return v.strip()


def _code(errs: ErrorList, where: str, v: Any) -> str:
    if not isinstance(v, str) or not _CODE.match(v):
        shown = None if v is None else str(v)
        errs.add(FieldError(where, "must be 1-32 lower-case letters, digits or -", shown))
        return ""
    return v


def _int(errs: ErrorList, where: str, v: Any, lo: int, hi: int, default: int | None) -> int:
    if v is None and default is not None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        errs.add(FieldError(where, f"must be an integer {lo}..{hi}", None if v is None else str(v)))
        return lo
    return v


def parse(doc: Any) -> Catalogue:
    """Check a catalogue document; ``InvalidInput`` lists every bad field."""
    errs = ErrorList()
    if not isinstance(doc, dict):
        errs.add(FieldError("catalogue", "must be a JSON object with departments and items"))
        errs.raise_if_any("catalogue refused")
    deps_raw, items_raw = doc.get("departments"), doc.get("items")
    if not isinstance(deps_raw, list):
        errs.add(FieldError("departments", "must be a list"))
        deps_raw = []
    if not isinstance(items_raw, list):
        errs.add(FieldError("items", "must be a list"))
        items_raw = []
    deps: list[DepartmentSpec] = []
    for n, d in enumerate(deps_raw):
        w = f"departments[{n}]"
        if not isinstance(d, dict):
            errs.add(FieldError(w, "must be an object"))
            continue
        deps.append(
            DepartmentSpec(
                _code(errs, f"{w}.code", d.get("code")),
                _text(errs, f"{w}.name", d.get("name"), 100),
                _int(errs, f"{w}.sort", d.get("sort"), 0, 10_000, 0),
            )
        )
    dep_codes = {d.code for d in deps}
    if len(dep_codes) != len(deps):
        errs.add(FieldError("departments", "codes must be unique"))
    items: list[ItemSpec] = []
    for n, it in enumerate(items_raw):
        w = f"items[{n}]"
        if not isinstance(it, dict):
            errs.add(FieldError(w, "must be an object"))
            continue
        dep = it.get("department")
        if dep not in dep_codes:
            errs.add(FieldError(f"{w}.department", "must be the code of a department above", dep))
        mats = it.get("materials")
        if not isinstance(mats, list) or not all(isinstance(m, str) and m.strip() for m in mats):
            errs.add(FieldError(f"{w}.materials", "must be a list of material names"))
            mats = []
        centre = it.get("centre")
        if centre not in CENTRES:
            errs.add(FieldError(f"{w}.centre", f"must be one of {', '.join(CENTRES)}", centre))
        form: list[FormField] = []
        form_raw = it.get("form", [])
        if not isinstance(form_raw, list):
            errs.add(FieldError(f"{w}.form", "must be a list of {name, label, required}"))
            form_raw = []
        for k, f in enumerate(form_raw):
            fw = f"{w}.form[{k}]"
            name = f.get("name") if isinstance(f, dict) else None
            if not isinstance(name, str) or not _FIELD.match(name):
                errs.add(FieldError(f"{fw}.name", "must be a lower-case identifier", name))
                continue
            form.append(
                FormField(
                    name, _text(errs, f"{fw}.label", f.get("label"), 100), bool(f.get("required"))
                )
            )
        items.append(
            ItemSpec(
                code=_code(errs, f"{w}.code", it.get("code")),
                department=str(dep),
                name=_text(errs, f"{w}.name", it.get("name"), 200),
                materials=tuple(m.strip() for m in mats),
                agent_group=_code(errs, f"{w}.agent_group", it.get("agent_group")),
                centre=str(centre),
                target_minutes=_int(
                    errs, f"{w}.target_minutes", it.get("target_minutes"), 1, 480, None
                ),
                form=tuple(form),
                sort=_int(errs, f"{w}.sort", it.get("sort"), 0, 10_000, 0),
            )
        )
    if len({i.code for i in items}) != len(items):
        errs.add(FieldError("items", "codes must be unique"))
    errs.raise_if_any("catalogue refused")
    return Catalogue(tuple(deps), tuple(items))


def load_sample() -> Catalogue:
    return parse(json.loads(SAMPLE.read_text(encoding="utf-8")))


async def import_catalogue(
    audit: AuditLog, who: Principal | Actor, catalogue: Catalogue
) -> dict[str, int]:
    """Upsert every department and item in one transaction; returns the counts."""
    async with audit.transaction() as s:
        for d in catalogue.departments:
            await s.merge(Department(code=d.code, name=d.name, sort=d.sort))
        await s.flush()
        for i in catalogue.items:
            await s.merge(
                Item(
                    code=i.code,
                    department_code=i.department,
                    name=i.name,
                    materials=json.dumps(list(i.materials), ensure_ascii=False),
                    form=json.dumps(
                        [
                            {"name": f.name, "label": f.label, "required": f.required}
                            for f in i.form
                        ],
                        ensure_ascii=False,
                    ),
                    agent_group=i.agent_group,
                    centre_tier=i.centre,
                    target_minutes=i.target_minutes,
                    sort=i.sort,
                )
            )
        counts = {"departments": len(catalogue.departments), "items": len(catalogue.items)}
        audit.record(s, who, "servicedesk.catalogue.import", "", "ok", counts)
    return counts


def item_json(i: Item) -> dict[str, Any]:
    return {
        "code": i.code,
        "department": i.department_code,
        "name": i.name,
        "materials": json.loads(i.materials),
        "form": json.loads(i.form),
        "agent_group": i.agent_group,
        "centre": i.centre_tier,
        "target_minutes": i.target_minutes,
    }


async def list_catalogue(s: AsyncSession) -> dict[str, Any]:
    deps = (await s.scalars(select(Department).order_by(Department.sort, Department.code))).all()
    items = (await s.scalars(select(Item).order_by(Item.sort, Item.code))).all()
    by_dep: dict[str, list[dict[str, Any]]] = {d.code: [] for d in deps}
    for i in items:
        by_dep.setdefault(i.department_code, []).append(item_json(i))
    return {
        "departments": [
            {"code": d.code, "name": d.name, "items": by_dep.get(d.code, [])} for d in deps
        ]
    }
