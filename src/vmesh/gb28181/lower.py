"""Cascade down: another vendor's lower platform (a type 200 ID) registered to this node.

A lower platform registers like a device (digest, keepalive, ``GbService``); its directory entry
is a ``platform``. Its Catalog is a tree, not a channel list: business groups (215), virtual
organisations (216) nested by ``ParentID`` (and ``BusinessGroupID``), and channels under them.
``upsert_platform_catalog`` keeps that structure in the directory:

- each 215 item becomes a ``department`` and each 216 item a ``virtual_org``; org units cannot sit
  under a ``platform`` entry in the directory, so the platform's top groups go under the org unit
  that holds the platform (the node's ``[gb28181] parent_code``) and nested ones under their
  parent group. Their ``attrs`` say ``gb_device`` (the platform) and ``gb_role = group``. A group
  the directory refuses (e.g. a code of another division) is logged and its children go where it
  would have gone.
- channels (131/132) go under their group (``ParentID``, else ``BusinessGroupID``), or under the
  platform entry when they name no known group, with ``gb_device`` = the platform and
  ``gb_channel`` = their code — so they play like IPC channels: the INVITE goes to the platform's
  address with the channel in the Request-URI and ``Subject``.

Public: ``upsert_platform_catalog``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from vmesh.errors import VmeshError
from vmesh.gb28181.devices import ACTOR, DeviceDirectory
from vmesh.gb28181.manscdp import CatalogItem

log = logging.getLogger(__name__)

_GROUP_KINDS = {"215": "department", "216": "virtual_org"}


async def _groups(
    directory: DeviceDirectory, platform: dict[str, Any], items: list[CatalogItem]
) -> dict[str, str]:
    """Create/update the platform's groups; maps each group code to where its children go."""
    home = platform["parent_code"]
    groups = {it.device_id: it for it in items if it.device_id[10:13] in _GROUP_KINDS}
    placed: dict[str, str] = {}  # group code → the entry code its children go under
    pending = dict(groups)
    while pending:
        progress = False
        for code, it in list(pending.items()):
            parent_ref = it.parent_id if it.parent_id in groups else None
            if parent_ref is None and it.business_group_id in groups and code[10:13] == "216":
                parent_ref = it.business_group_id
            if parent_ref is not None and parent_ref not in placed:
                continue  # its parent first
            parent = placed[parent_ref] if parent_ref is not None else home
            del pending[code]
            progress = True
            placed[code] = await _group(directory, platform, it, parent)
        if not progress:  # a cycle of ParentIDs: the rest at the top
            for code, it in pending.items():
                placed[code] = await _group(directory, platform, it, home)
            break
    return placed


async def _group(
    directory: DeviceDirectory, platform: dict[str, Any], it: CatalogItem, parent: str
) -> str:
    code = it.device_id
    name = it.name or f"GB {code}"
    try:
        found = await directory.lookup(code)
        if found is None:
            await directory.dir.create(
                ACTOR,
                {
                    "code": code,
                    "name": name,
                    "kind": _GROUP_KINDS[code[10:13]],
                    "parent_code": parent,
                    "attrs": {"gb_device": platform["code"], "gb_role": "group"},
                },
            )
        elif found["name"] != name:
            await directory.merge_attrs(code, {}, name)
        return code
    except VmeshError as e:
        log.info("gb platform %s group %s not kept: %s", platform["code"], code, e)
        return parent


async def upsert_platform_catalog(
    directory: DeviceDirectory, platform: dict[str, Any], items: list[CatalogItem]
) -> list[str]:
    """Groups and channels of a lower platform's catalogue; returns the accepted channel codes."""
    placed = await _groups(directory, platform, items)
    by_parent: dict[str, list[CatalogItem]] = defaultdict(list)
    for it in items:
        if it.device_id in placed or it.device_id == platform["code"]:
            continue
        parent = placed.get(it.parent_id or "") or placed.get(it.business_group_id or "")
        by_parent[parent or platform["code"]].append(it)
    accepted: list[str] = []
    for parent, group in by_parent.items():
        # ``upsert_channels`` puts channels of a non-NVR device under its ``parent_code``.
        device = {**platform, "kind": "platform", "parent_code": parent}
        accepted += await directory.upsert_channels(device, group)
    log.info(
        "gb platform %s catalog groups=%d channels=%d", platform["code"], len(placed), len(accepted)
    )
    return accepted
