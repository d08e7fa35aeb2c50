"""What a running node holds: its configuration, database, audit log and metrics registry.

Passed explicitly (FastAPI's ``app.state.ctx``, CLI commands) instead of module globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from vmesh.audit.log import ANCHOR_FILE, AuditLog
from vmesh.config import NodeConfig
from vmesh.storage.db import Database
from vmesh.storage.migrate import upgrade

if TYPE_CHECKING:
    from vmesh.command.service import CommandService
    from vmesh.conference.service import ConferenceService
    from vmesh.fabric.service import FabricService
    from vmesh.federation.node import Federation
    from vmesh.gb28181.service import GbService
    from vmesh.grants.service import GrantService
    from vmesh.media.service import MediaService
    from vmesh.recording.service import RecordingService


@dataclass
class NodeContext:
    config: NodeConfig
    db: Database
    audit: AuditLog
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    # Live video (switch, Janus, channels) when [media] enabled; started by the node process.
    media: MediaService | None = None
    # nats-server, nodes and links, catalogue when [federation] enabled; started by the node.
    federation: Federation | None = None
    # GB/T 28181 registrar, device queries, live INVITE, PTZ when [gb28181] enabled.
    gb28181: GbService | None = None
    # Camera streams across node links when [fabric] enabled (needs federation and media).
    fabric: FabricService | None = None
    # Running conferences (vmesh.conference), made by its API on first use.
    conferences: ConferenceService | None = None
    # Recorders, segment index, retention, online-rate sampling when [recording] enabled.
    recording: RecordingService | None = None
    # Grants across departments and levels (vmesh.grants): always started by the node process.
    grants: GrantService | None = None
    # Incidents, command rooms, logs replicated up (vmesh.command): started by the node process.
    command: CommandService | None = None

    @classmethod
    async def open(cls, config: NodeConfig, *, migrate: bool = True) -> NodeContext:
        config.node.data_dir.mkdir(parents=True, exist_ok=True)
        url = config.database_url()
        if migrate:
            await upgrade(url)
        db = Database(url, sqlite_mmap_bytes=config.database.sqlite_mmap_mib * 2**20)
        return cls(config=config, db=db, audit=AuditLog(db, config.node.data_dir / ANCHOR_FILE))

    async def close(self) -> None:
        await self.db.close()
