"""Imports every capability's tables so that ``metadata`` (for Alembic) holds them all."""

from vmesh.audit.models import AuditRecord
from vmesh.auth.models import LoginSession, User
from vmesh.command.models import IncidentRow, LogRow
from vmesh.conference.models import Attendance, ConferenceChair, ConferenceRow, ConferenceVenue
from vmesh.directory.models import Entry, EntryTag
from vmesh.federation.models import (
    CatalogueDeletion,
    CatalogueEntry,
    CatalogueOrigin,
    CataloguePublished,
    FederationState,
    KnownNode,
)
from vmesh.gb28181.store import GbDeviceRow
from vmesh.grants.models import GrantOutbox, GrantRow
from vmesh.petition.models import Evidence as PetitionEvidence
from vmesh.petition.models import Petition, PetitionEvent, RecordParagraph
from vmesh.recording.models import HealthSample, RecordingPlan, Segment
from vmesh.servicedesk.models import Agent as ServiceAgent
from vmesh.servicedesk.models import Case as ServiceCase
from vmesh.servicedesk.models import CaseEvent as ServiceCaseEvent
from vmesh.servicedesk.models import Department as ServiceDepartment
from vmesh.servicedesk.models import Item as ServiceItem
from vmesh.servicedesk.models import Material as ServiceMaterial
from vmesh.storage.db import Base

metadata = Base.metadata

__all__ = [
    "Attendance",
    "AuditRecord",
    "CatalogueDeletion",
    "CatalogueEntry",
    "CatalogueOrigin",
    "CataloguePublished",
    "ConferenceChair",
    "ConferenceRow",
    "ConferenceVenue",
    "Entry",
    "EntryTag",
    "FederationState",
    "GbDeviceRow",
    "GrantOutbox",
    "GrantRow",
    "HealthSample",
    "IncidentRow",
    "KnownNode",
    "LogRow",
    "LoginSession",
    "Petition",
    "PetitionEvent",
    "PetitionEvidence",
    "RecordParagraph",
    "RecordingPlan",
    "Segment",
    "ServiceAgent",
    "ServiceCase",
    "ServiceCaseEvent",
    "ServiceDepartment",
    "ServiceItem",
    "ServiceMaterial",
    "User",
    "metadata",
]
