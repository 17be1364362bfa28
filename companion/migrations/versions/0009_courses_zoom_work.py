"""courses: Zoom work recorded before it is done

Revision ID: 0009_courses_zoom_work
Revises: 0008_work_engine
Create Date: 2026-12-02 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_courses_zoom_work"
down_revision = "0008_work_engine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("courses") as batch:
        batch.add_column(
            sa.Column("zoom_work", sa.String(length=16), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("zoom_work_seq", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("zoom_synced_seq", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("zoom_resend_series", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_check_constraint(
            op.f("ck_courses_zoom_work_known"), "zoom_work in ('', 'create', 'sync', 'delete')"
        )
        batch.create_index(
            op.f("ix_courses_zoom_work_next_attempt"), ["zoom_work", "zoom_next_attempt_at"]
        )
    # Courses left pending by the old retry job are the new queue's create work.
    op.execute("UPDATE courses SET zoom_work = 'create' WHERE zoom_state = 'pending'")


def downgrade() -> None:
    with op.batch_alter_table("courses") as batch:
        batch.drop_index(op.f("ix_courses_zoom_work_next_attempt"))
        batch.drop_constraint(op.f("ck_courses_zoom_work_known"), type_="check")
        batch.drop_column("zoom_resend_series")
        batch.drop_column("zoom_synced_seq")
        batch.drop_column("zoom_work_seq")
        batch.drop_column("zoom_work")
