"""work engine: claims and attempts on the outbox, webhook events and recordings

The outbox gets a claim (``claimed_until``) like every other work item, and two states for a
message handed to the mail server: ``sending`` (committed right before the SMTP conversation) and
``uncertain`` (a ``sending`` whose answer was never recorded: it may have been sent, and only the
admin sends it again). Webhook events no longer use ``processing``: the claim says who holds an
event, so any left in it by an older version are given back as ``pending``.

Revision ID: 0008_work_engine
Revises: 0007_safeguarding
Create Date: 2026-12-02 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import companion.db

revision = "0008_work_engine"
down_revision = "0007_safeguarding"
branch_labels = None
depends_on = None

OLD_STATUSES = "status in ('pending', 'sent', 'held')"
NEW_STATUSES = "status in ('pending', 'sending', 'sent', 'held', 'uncertain')"


def upgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_until", companion.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("sending_at", companion.db.UTCDateTime(), nullable=True))
        batch_op.drop_constraint(op.f("ck_outbox_messages_status_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_outbox_messages_status_known"), NEW_STATUSES)
    op.execute("UPDATE webhook_events SET status = 'pending' WHERE status = 'processing'")


def downgrade() -> None:
    # A message that may have been sent cannot go back to pending without risking a second
    # email; the older version has no such state, so it is kept as held (read in the outbox).
    op.execute(
        "UPDATE outbox_messages SET status = 'held' WHERE status IN ('sending', 'uncertain')"
    )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_outbox_messages_status_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_outbox_messages_status_known"), OLD_STATUSES)
        batch_op.drop_column("sending_at")
        batch_op.drop_column("claimed_until")
