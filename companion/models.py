"""Import every model so that the metadata (and Alembic) sees all tables."""

from .accounts.models import ApiToken, Invitation, LoginAttempt, StaffSession, User
from .accounts.twofactor_models import RecoveryCode, TotpUsedStep
from .audit.models import AuditEvent, AuditHead
from .courses.models import ClassSession, Course
from .db import Base
from .evidence.models import (
    AdultConfirmation,
    AttendanceEvent,
    ClassWarning,
    EvidencePack,
    EvidenceSettings,
    EvidenceSigningKey,
    ZoomMeeting,
)
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
from .recordings.models import (
    Concern,
    Hold,
    KekCheck,
    Recording,
    RecordingFile,
    RecordingGrant,
)
from .safeguarding.models import ConcernNote, ConcernOutcome, Disclosure, FamilyNotice
from .security_review.models import SecurityReview
from .webhooks.models import WebhookEvent

__all__ = [
    "AdultConfirmation",
    "AgreementAcceptance",
    "AgreementVersion",
    "ApiToken",
    "AttendanceEvent",
    "AudioOnlyEvent",
    "AuditEvent",
    "AuditHead",
    "Base",
    "ClassSession",
    "ClassSummary",
    "ClassWarning",
    "Concern",
    "ConcernNote",
    "ConcernOutcome",
    "Disclosure",
    "Course",
    "EvidencePack",
    "EvidenceSigningKey",
    "EvidenceSettings",
    "Family",
    "FamilyContact",
    "FamilyNotice",
    "FamilyLink",
    "FamilySession",
    "Hold",
    "Invitation",
    "KekCheck",
    "LoginAttempt",
    "Organisation",
    "OutboxMessage",
    "Recording",
    "RecordingFile",
    "RecordingGrant",
    "RecoveryCode",
    "SecurityReview",
    "StaffSession",
    "TotpUsedStep",
    "User",
    "WebhookEvent",
    "ZoomMeeting",
]
