"""keys: evidence-pack public keys by key id, and the key a recovery code was hashed under

Revision ID: 0012_keys
Revises: 0011_integrity
Create Date: 2026-12-09 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import companion.db

revision = "0012_keys"
down_revision = "0011_integrity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Public keys that signed evidence packs, so a pack verifies after its key is rotated out.
    op.create_table(
        "evidence_signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("first_used_at", companion.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_evidence_signing_keys_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_signing_keys")),
        sa.UniqueConstraint(
            "organisation_id", "key_id", name=op.f("uq_evidence_signing_keys_organisation_id")
        ),
    )
    # NULL: hashed under the session secret by an earlier version (every existing row).
    with op.batch_alter_table("recovery_codes") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recovery_codes") as batch:
        batch.drop_column("key_id")
    op.drop_table("evidence_signing_keys")
