"""class evidence: Zoom meetings and attendance events, adult-present confirmations, class
warnings, evidence packs, the organisation's evidence settings

Revision ID: 0006_evidence
Revises: 0005_twofactor
Create Date: 2026-11-21 13:44:46.652548
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import companion.db

revision = "0006_evidence"
down_revision = "0005_twofactor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence_settings",
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("list_unconfirmed", sa.Boolean(), nullable=False),
        sa.Column("one_child_rule", sa.Boolean(), nullable=False),
        sa.Column("alone_grace_minutes", sa.Integer(), nullable=False),
        sa.Column("confirm_from_minutes", sa.Integer(), nullable=False),
        sa.Column("updated_at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "alone_grace_minutes between 0 and 120", name=op.f("ck_evidence_settings_grace_range")
        ),
        sa.CheckConstraint(
            "confirm_from_minutes between 5 and 1440",
            name=op.f("ck_evidence_settings_confirm_range"),
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_evidence_settings_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"], ["users.id"], name=op.f("fk_evidence_settings_updated_by_id_users")
        ),
        sa.PrimaryKeyConstraint("organisation_id", name=op.f("pk_evidence_settings")),
    )
    op.create_table(
        "evidence_meetings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("zoom_uuid", sa.String(length=128), nullable=False),
        sa.Column("zoom_meeting_id", sa.BigInteger(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=True),
        sa.Column("course_id", sa.Integer(), nullable=True),
        sa.Column("class_session_id", sa.Integer(), nullable=True),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("host_zoom_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", companion.db.UTCDateTime(), nullable=True),
        sa.Column("ended_at", companion.db.UTCDateTime(), nullable=True),
        sa.Column("first_event_at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("last_event_at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("unmatched", sa.Boolean(), nullable=False),
        sa.Column("created_at", companion.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["class_session_id"],
            ["class_sessions.id"],
            name=op.f("fk_evidence_meetings_class_session_id_class_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["courses.id"],
            name=op.f("fk_evidence_meetings_course_id_courses"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_evidence_meetings_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_meetings")),
        sa.UniqueConstraint("zoom_uuid", name=op.f("uq_evidence_meetings_zoom_uuid")),
    )
    with op.batch_alter_table("evidence_meetings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_evidence_meetings_class_session_id"), ["class_session_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_evidence_meetings_course_id"), ["course_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_evidence_meetings_organisation_id"), ["organisation_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_evidence_meetings_zoom_meeting_id"), ["zoom_meeting_id"], unique=False
        )

    op.create_table(
        "evidence_packs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("class_session_id", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["class_session_id"],
            ["class_sessions.id"],
            name=op.f("fk_evidence_packs_class_session_id_class_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_evidence_packs_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_evidence_packs_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_packs")),
    )
    with op.batch_alter_table("evidence_packs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_evidence_packs_class_session_id"), ["class_session_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_evidence_packs_organisation_id"), ["organisation_id"], unique=False
        )

    op.create_table(
        "adult_confirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("family_id", sa.Integer(), nullable=False),
        sa.Column("class_session_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("confirmed_at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["class_session_id"],
            ["class_sessions.id"],
            name=op.f("fk_adult_confirmations_class_session_id_class_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["family_contacts.id"],
            name=op.f("fk_adult_confirmations_contact_id_family_contacts"),
        ),
        sa.ForeignKeyConstraint(
            ["family_id"], ["families.id"], name=op.f("fk_adult_confirmations_family_id_families")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adult_confirmations")),
        sa.UniqueConstraint(
            "family_id", "class_session_id", name="uq_adult_confirmations_family_class"
        ),
    )
    with op.batch_alter_table("adult_confirmations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_adult_confirmations_class_session_id"),
            ["class_session_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_adult_confirmations_family_id"), ["family_id"], unique=False
        )

    op.create_table(
        "attendance_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("webhook_event_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("received_at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("family_id", sa.Integer(), nullable=True),
        sa.Column("registrant_id", sa.String(length=64), nullable=False),
        sa.Column("participant_uuid", sa.String(length=64), nullable=False),
        sa.Column("zoom_user_id", sa.String(length=64), nullable=False),
        sa.Column("zoom_participant_id", sa.String(length=128), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.CheckConstraint(
            "kind in ('meeting_started', 'waiting', 'admitted', 'joined', 'left', 'meeting_ended')",
            name=op.f("ck_attendance_events_kind_known"),
        ),
        sa.CheckConstraint(
            "role in ('family', 'guest', 'host', 'staff', '')",
            name=op.f("ck_attendance_events_role_known"),
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["families.id"],
            name=op.f("fk_attendance_events_family_id_families"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["evidence_meetings.id"],
            name=op.f("fk_attendance_events_meeting_id_evidence_meetings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attendance_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_attendance_events_dedupe_key")),
    )
    with op.batch_alter_table("attendance_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_attendance_events_family_id"), ["family_id"], unique=False
        )
        batch_op.create_index("ix_attendance_events_meeting_at", ["meeting_id", "at"], unique=False)

    op.create_table(
        "class_warnings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=True),
        sa.Column("course_id", sa.Integer(), nullable=True),
        sa.Column("class_session_id", sa.Integer(), nullable=True),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("period_start", companion.db.UTCDateTime(), nullable=False),
        sa.Column("period_end", companion.db.UTCDateTime(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("notified_at", companion.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "kind in ('one_child_alone', 'overran')", name=op.f("ck_class_warnings_kind_known")
        ),
        sa.CheckConstraint(
            "status in ('open', 'closed', 'retracted')", name=op.f("ck_class_warnings_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["class_session_id"],
            ["class_sessions.id"],
            name=op.f("fk_class_warnings_class_session_id_class_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["courses.id"],
            name=op.f("fk_class_warnings_course_id_courses"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["evidence_meetings.id"],
            name=op.f("fk_class_warnings_meeting_id_evidence_meetings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_class_warnings_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_class_warnings")),
    )
    with op.batch_alter_table("class_warnings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_class_warnings_class_session_id"), ["class_session_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_class_warnings_course_id"), ["course_id"], unique=False
        )
        batch_op.create_index(
            "ix_class_warnings_meeting_kind", ["meeting_id", "kind"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_class_warnings_organisation_id"), ["organisation_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("class_warnings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_class_warnings_organisation_id"))
        batch_op.drop_index("ix_class_warnings_meeting_kind")
        batch_op.drop_index(batch_op.f("ix_class_warnings_course_id"))
        batch_op.drop_index(batch_op.f("ix_class_warnings_class_session_id"))

    op.drop_table("class_warnings")
    with op.batch_alter_table("attendance_events", schema=None) as batch_op:
        batch_op.drop_index("ix_attendance_events_meeting_at")
        batch_op.drop_index(batch_op.f("ix_attendance_events_family_id"))

    op.drop_table("attendance_events")
    with op.batch_alter_table("adult_confirmations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_adult_confirmations_family_id"))
        batch_op.drop_index(batch_op.f("ix_adult_confirmations_class_session_id"))

    op.drop_table("adult_confirmations")
    with op.batch_alter_table("evidence_packs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evidence_packs_organisation_id"))
        batch_op.drop_index(batch_op.f("ix_evidence_packs_class_session_id"))

    op.drop_table("evidence_packs")
    with op.batch_alter_table("evidence_meetings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evidence_meetings_zoom_meeting_id"))
        batch_op.drop_index(batch_op.f("ix_evidence_meetings_organisation_id"))
        batch_op.drop_index(batch_op.f("ix_evidence_meetings_course_id"))
        batch_op.drop_index(batch_op.f("ix_evidence_meetings_class_session_id"))

    op.drop_table("evidence_meetings")
    op.drop_table("evidence_settings")
