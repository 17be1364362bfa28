"""Import every model so that the metadata (and Alembic) sees all tables."""

from .accounts.models import ApiToken, Invitation, LoginAttempt, StaffSession, User
from .audit.models import AuditEvent, AuditHead
from .courses.models import ClassSession, Course
from .db import Base
from .mail.models import OutboxMessage
from .orgs.models import Organisation

__all__ = [
    "ApiToken",
    "AuditEvent",
    "AuditHead",
    "Base",
    "ClassSession",
    "Course",
    "Invitation",
    "LoginAttempt",
    "Organisation",
    "OutboxMessage",
    "StaffSession",
    "User",
]
