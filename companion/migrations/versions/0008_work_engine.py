"""work engine: claims and attempts on the outbox, webhook events and recordings

Revision ID: 0008_work_engine
Revises: 0007_safeguarding
Create Date: 2026-12-02 08:10:00
"""

from __future__ import annotations

revision = "0008_work_engine"
down_revision = "0007_safeguarding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
