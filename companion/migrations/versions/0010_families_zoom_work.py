"""families: registrant work recorded before it is done

Revision ID: 0010_families_zoom_work
Revises: 0009_courses_zoom_work
Create Date: 2026-12-02 08:10:00
"""

from __future__ import annotations

revision = "0010_families_zoom_work"
down_revision = "0009_courses_zoom_work"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
