"""recordings_zoom_purge: Zoom's copy of a recorded class is deleted for good and checked gone

Adds to ``recordings`` the work-engine columns of the Zoom purge (the whole meeting instance
deleted with action=delete once every kept file is verified, then checked absent, trash
included), when that was done, and when and why Zoom refused (for the lead's notice and the
security review). Recordings already trashed in Zoom by the earlier per-file delete are taken
by the purge too: it recovers them from Zoom's trash and deletes them for good.

Revision ID: 0013_recordings_zoom_purge
Revises: 0012_keys
Create Date: 2026-12-02 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import companion.db

revision = "0013_recordings_zoom_purge"
down_revision = "0012_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(
            sa.Column("zoom_purge_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("zoom_purge_due", companion.db.UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("zoom_purge_claimed_until", companion.db.UTCDateTime(), nullable=True)
        )
        batch.add_column(sa.Column("zoom_purged_at", companion.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("zoom_refused_at", companion.db.UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("zoom_held_reason", sa.String(length=500), nullable=False, server_default="")
        )
        batch.create_index("ix_recordings_zoom_purged_at", ["zoom_purged_at"])


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_index("ix_recordings_zoom_purged_at")
        for name in (
            "zoom_held_reason",
            "zoom_refused_at",
            "zoom_purged_at",
            "zoom_purge_claimed_until",
            "zoom_purge_due",
            "zoom_purge_attempts",
        ):
            batch.drop_column(name)
