"""Import every model so that the metadata (and Alembic) sees all tables."""

from .accounts.models import ApiToken, Invitation, LoginAttempt, StaffSession, User
from .audit.models import AuditEvent, AuditHead
from .courses.models import ClassSession, Course
from .db import Base
from .families.models import (
    AgreementAcceptance,
    AgreementVersion,
    AudioOnlyEvent,
    ClassSummary,
    Family,
    FamilyContact,
    FamilyLink,
    FamilySession,
)
from .mail.models import OutboxMessage
from .orgs.models import Organisation

__all__ = [
    "AgreementAcceptance",
    "AgreementVersion",
    "ApiToken",
    "AudioOnlyEvent",
    "AuditEvent",
    "AuditHead",
    "Base",
    "ClassSession",
    "ClassSummary",
    "Course",
    "Family",
    "FamilyContact",
    "FamilyLink",
    "FamilySession",
    "Invitation",
    "LoginAttempt",
    "Organisation",
    "OutboxMessage",
    "StaffSession",
    "User",
]
