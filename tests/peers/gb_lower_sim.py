"""A simulated lower GB/T 28181 platform (another vendor's, type 200 ID) for cascade tests.

It is ``GbDeviceSim`` (tests/peers/gb_device_sim.py: digest REGISTER, keepalive, DeviceInfo and
DeviceStatus answers, live INVITE answered with real PS over RTP of an ffmpeg-encoded clip) with a
platform's catalogue and a platform's quirks:

- the Catalog answer is a tree: business groups (215), virtual organisations (216) nested by
  ``ParentID`` with their ``BusinessGroupID``, and channels under them (``groups`` and
  ``channels`` given as ``(code, name, parent)``);
- names are GB2312 bytes (``encode_manscdp(..., "GB2312")`` as the device simulator does);
- pages carry 1 to 8 items each, sizes drawn at random (seeded), groups first;
- ``invited`` lists the channel of each INVITE (the Request-URI user), which is how a platform
  knows which of its channels to send.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from peers.gb_device_sim import GbDeviceSim
from vmesh.gb28181.manscdp import CatalogItem, CatalogQuery, CatalogResponse
from vmesh.gb28181.message import SipRequest
from vmesh.gb28181.transaction import Address, ServerTransaction


@dataclass
class GbLowerSim(GbDeviceSim):
    # (code, name, parent code): 215/216 groups, then 131/132 channels.
    groups: list[tuple[str, str, str]] = field(default_factory=list)
    tree: list[tuple[str, str, str]] = field(default_factory=list)
    seed: int = 28181
    page_sizes: list[int] = field(default_factory=list)
    invited: list[str] = field(default_factory=list)

    def _items(self) -> list[CatalogItem]:
        group_of = {code: parent for code, _, parent in self.groups}

        def business_group(parent: str) -> str | None:
            while parent in group_of:
                if parent[10:13] == "215":
                    return parent
                parent = group_of[parent]
            return None

        items = []
        for code, name, parent in self.groups:
            items.append(
                CatalogItem(
                    code,
                    name=name,
                    civil_code=code[:6],
                    parent_id=parent,
                    business_group_id=business_group(parent) if code[10:13] == "216" else None,
                )
            )
        for code, name, parent in self.tree:
            items.append(
                CatalogItem(
                    code,
                    name=name,
                    manufacturer="Vendor-X",
                    model="LP-9000",
                    civil_code=code[:6],
                    parent_id=parent,
                    business_group_id=business_group(parent),
                    parental=0,
                    status="ON",
                    ptz_type=3,
                )
            )
        return items

    async def _answer(self, msg: object) -> None:
        if not isinstance(msg, CatalogQuery):
            await super()._answer(msg)
            return
        self.catalog_queries += 1
        items = self._items()
        rng = random.Random(self.seed)
        i = 0
        while i < len(items):
            n = rng.randint(1, 8)
            self.page_sizes.append(len(items[i : i + n]))
            await self._send(CatalogResponse(self.device_id, msg.sn, len(items), items[i : i + n]))
            i += n

    def _on_request(self, req: SipRequest, source: Address, txn: ServerTransaction | None) -> None:
        if req.method == "INVITE" and txn is not None:
            self.invited.append(req.uri.user or "")
        super()._on_request(req, source, txn)
