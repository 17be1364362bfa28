"""two-factor sign-in (recovery codes, used TOTP steps) and security reviews

Revision ID: 0005_twofactor
Revises: 0004_recordings
Create Date: 2026-11-21 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import companion.db

revision = "0005_twofactor"
down_revision = "0004_recordings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("used_at", companion.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_recovery_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
        sa.UniqueConstraint("user_id", "code_hash", name=op.f("uq_recovery_codes_user_id")),
    )
    op.create_table(
        "security_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("reviewed_at", companion.db.UTCDateTime(), nullable=False),
        sa.Column("reviewed_by_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_security_reviews_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by_id"], ["users.id"], name=op.f("fk_security_reviews_reviewed_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_reviews")),
    )
    with op.batch_alter_table("security_reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_security_reviews_organisation_id"), ["organisation_id"], unique=False
        )
    op.create_table(
        "totp_used_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("used_at", companion.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_totp_used_steps_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_totp_used_steps")),
        sa.UniqueConstraint("user_id", "step", name=op.f("uq_totp_used_steps_user_id")),
    )


def downgrade() -> None:
    op.drop_table("totp_used_steps")
    with op.batch_alter_table("security_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_security_reviews_organisation_id"))
    op.drop_table("security_reviews")
    op.drop_table("recovery_codes")
