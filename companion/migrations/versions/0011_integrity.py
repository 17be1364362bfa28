"""infrastructure: recording integrity failures and streaming

Revision ID: 0011_integrity
Revises: 0010_families_zoom_work
Create Date: 2026-12-02 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import companion.db

revision = "0011_integrity"
down_revision = "0010_families_zoom_work"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # When a served copy first failed its integrity check (the file is then refused, and the
    # lead and admins are told once).
    with op.batch_alter_table("recording_files") as batch:
        batch.add_column(
            sa.Column("integrity_failed_at", companion.db.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("recording_files") as batch:
        batch.drop_column("integrity_failed_at")
