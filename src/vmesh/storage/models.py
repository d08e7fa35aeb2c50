"""Imports every capability's tables so that ``metadata`` (for Alembic) holds them all."""

from vmesh.audit.models import AuditRecord
from vmesh.auth.models import LoginSession, User
from vmesh.directory.models import Entry, EntryTag
from vmesh.federation.models import (
    CatalogueDeletion,
    CatalogueEntry,
    CatalogueOrigin,
    CataloguePublished,
    FederationState,
    KnownNode,
)
from vmesh.storage.db import Base

metadata = Base.metadata

__all__ = [
    "AuditRecord",
    "CatalogueDeletion",
    "CatalogueEntry",
    "CatalogueOrigin",
    "CataloguePublished",
    "Entry",
    "EntryTag",
    "FederationState",
    "KnownNode",
    "LoginSession",
    "User",
    "metadata",
]
