"""Tables of the TOTP second factor: single-use recovery codes and the last time step used."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, created_at


class RecoveryCode(Base):
    """One single-use recovery code; only a peppered hash is stored, the code is shown once."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The unique constraint (user_id first) serves as the index for lookups by user.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    # The data-sealing key the hash was made under (companion.sealing); None for a code hashed
    # under the session secret by an earlier version (it needs COMPANION_LEGACY_SECRET_KEY).
    key_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[created_at]
    used_at: Mapped[dt.datetime | None]


class TotpUsedStep(Base):
    """A 30-second TOTP time step already accepted for a user, so the same code cannot be
    accepted again (RFC 6238 section 5.2). Only the latest row per user is kept; the unique
    constraint makes two concurrent requests with one code race to a single winner."""

    __tablename__ = "totp_used_steps"
    __table_args__ = (UniqueConstraint("user_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The unique constraint (user_id first) serves as the index for lookups by user.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[dt.datetime]
