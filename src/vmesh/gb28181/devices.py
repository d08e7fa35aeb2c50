"""GB/T 28181 devices and channels in the directory: created, matched, described and kept current.

``DeviceDirectory`` is the registrar's only way into the directory:

- ``lookup(code)``: a device's entry (kind, attrs, parent) if it exists.
- ``ensure_device(code, parent_code)``: the entry of a registering device, created under the
  configured org unit when new (kind ``camera`` for IPC/camera types 132/131, ``nvr`` for
  111/118) through ``Directory.create`` — so the code is validated with ``identity/codes.py``
  and the creation is audited like any other, by the actor ``gb28181``.
- ``merge_attrs(code, patch)``: DeviceInfo/DeviceStatus answers stored in ``attrs`` (audited
  update).
- ``upsert_channels(device, items)``: Catalog items become camera endpoints with their own codes:
  under an NVR device; for an IPC device (a camera cannot hold cameras in the directory) the
  channel whose code is the device's own is the device entry itself, other channels sit beside
  it under the same org unit. Each channel's ``attrs`` carry ``source = gb28181``,
  ``gb_device`` and ``gb_channel``, which is what makes it playable.
- ``remove_channel(device, code)``: a channel the device's catalogue notify deleted (audited).
- ``set_presence(codes, online)``: status and ``last_seen`` as observations (no version bump, no
  audit row), like the media service's presence.

Public: ``DeviceDirectory``, ``device_kind``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from vmesh.audit.log import Actor, AuditLog
from vmesh.directory.models import Entry
from vmesh.directory.store import Directory
from vmesh.errors import InvalidInput, NotFound
from vmesh.gb28181.manscdp import CatalogItem
from vmesh.identity.codes import parse_code
from vmesh.storage.db import Database

log = logging.getLogger(__name__)

ACTOR = Actor("gb28181", "system")

DEVICE_KINDS = {"131": "camera", "132": "camera", "111": "nvr", "118": "nvr", "200": "platform"}
CHANNEL_TYPES = ("131", "132")


@functools.lru_cache(maxsize=16384)
def device_kind(code: str) -> str:
    """``camera`` or ``nvr`` for a device code; ``InvalidInput`` for anything else.

    Cached (refused codes are not): every REGISTER without credentials asks it again."""
    c = parse_code(code, "device_id")
    kind = DEVICE_KINDS.get(c.type)
    if kind is None:
        raise InvalidInput.one(
            "device_id",
            f"type {c.type} is not a camera (131/132), NVR/DVR (111/118) or platform (200)",
            code,
        )
    return kind


class DeviceDirectory:
    """See the module docstring."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.dir = Directory(db, audit)

    async def lookup(self, code: str) -> dict[str, Any] | None:
        async with self.db.sessions() as s:
            e = await s.scalar(select(Entry).where(Entry.code == code))
            if e is None:
                return None
            parent = None
            if e.parent_id is not None:
                parent = await s.scalar(select(Entry.code).where(Entry.id == e.parent_id))
            return {
                "code": e.code,
                "kind": e.kind,
                "name": e.name,
                "attrs": _attrs(e.attrs),
                "parent_code": parent,
            }

    async def ensure_device(
        self, code: str, parent_code: str, found: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The device's entry (``found``: what ``lookup`` just gave, not read again)."""
        if found is None:
            found = await self.lookup(code)
        if found is not None:
            return found
        kind = device_kind(code)
        if not parent_code:
            raise InvalidInput.one(
                "gb28181.parent_code", "is empty: unknown devices are not accepted", code
            )
        await self.dir.create(
            ACTOR,
            {
                "code": code,
                "name": f"GB {code}",
                "kind": kind,
                "parent_code": parent_code,
                "attrs": {"gb_role": "device"},
            },
        )
        log.info("gb device created in the directory code=%s kind=%s", code, kind)
        found = await self.lookup(code)
        assert found is not None
        return found

    async def merge_attrs(self, code: str, patch: dict[str, Any], name: str | None = None) -> None:
        e = await self.lookup(code)
        if e is None:
            raise NotFound(f"no directory entry with code {code}")
        attrs = {**e["attrs"], **{k: v for k, v in patch.items() if v is not None}}
        data: dict[str, Any] = {}
        if attrs != e["attrs"]:
            data["attrs"] = attrs
        if name and name != e["name"]:
            data["name"] = name
        if data:
            await self.dir.update(ACTOR, code, data)

    async def upsert_channels(
        self, device: dict[str, Any], items: Iterable[CatalogItem]
    ) -> list[str]:
        """Create or update the channel entries; returns the channel codes that were accepted."""
        accepted: list[str] = []
        for it in items:
            try:
                code = parse_code(it.device_id, "DeviceID").text
            except InvalidInput as e:
                log.info("gb catalog item skipped device=%s: %s", device["code"], e)
                continue
            if code[10:13] not in CHANNEL_TYPES and code != device["code"]:
                continue  # org units, alarm inputs...: not playable channels
            online = (it.status or "ON").upper() in ("ON", "ONLINE", "OK")
            attrs = {
                "source": "gb28181",
                "gb_device": device["code"],
                "gb_channel": code,
                "manufacturer": it.manufacturer,
                "model": it.model,
                "ptz_type": it.ptz_type,
                "civil_code": it.civil_code,
                "address": it.address,
            }
            try:
                if await self.lookup(code) is not None:
                    await self.merge_attrs(code, attrs, it.name)
                else:
                    parent = device["code"] if device["kind"] == "nvr" else device["parent_code"]
                    data: dict[str, Any] = {
                        "code": code,
                        "name": it.name or f"GB {code}",
                        "kind": "camera",
                        "parent_code": parent,
                        "attrs": {k: v for k, v in attrs.items() if v is not None},
                    }
                    if it.latitude is not None and it.longitude is not None:
                        data["lat"], data["lon"] = it.latitude, it.longitude
                    await self.dir.create(ACTOR, data)
                await self.set_presence([code], online)
                accepted.append(code)
            except InvalidInput as e:
                log.info("gb channel %s not accepted: %s", code, e)
        return accepted

    async def remove_channel(self, device_code: str, code: str) -> bool:
        """Delete a channel of ``device_code`` (a catalogue ``DEL``); False if it is not one."""
        e = await self.lookup(code)
        if e is None or code == device_code or e["attrs"].get("gb_device") != device_code:
            return False
        await self.dir.delete(ACTOR, code)
        return True

    async def channels_of(self, device_code: str) -> list[str]:
        pattern = f'%"gb_device":"{device_code}"%'
        async with self.db.sessions() as s:
            rows = await s.execute(select(Entry.code, Entry.attrs).where(Entry.attrs.like(pattern)))
            return [c for c, a in rows.all() if _attrs(a).get("gb_device") == device_code]

    async def set_presence(self, codes: list[str], online: bool) -> None:
        if not codes:
            return
        values: dict[str, Any] = {"status": "online" if online else "offline"}
        if online:
            values["last_seen"] = datetime.now(UTC)
        async with self.db.transaction() as s:
            await s.execute(update(Entry).where(Entry.code.in_(codes)).values(**values))


def _attrs(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        v = json.loads(raw or "{}")
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}
