"""infrastructure: recording integrity failures and streaming

Revision ID: 0011_integrity
Revises: 0010_families_zoom_work
Create Date: 2026-12-02 08:10:00
"""

from __future__ import annotations

revision = "0011_integrity"
down_revision = "0010_families_zoom_work"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
