"""Staff accounts: passwords, sign-in with throttling, sessions, invites, roles, API tokens.

Every function takes a ``Session`` and plain values and flushes; none commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..access import ADMIN, ROLE_LABELS, ROLES, Role
from ..audit.services import record as audit
from ..errors import Conflict, Forbidden, NotFound, Throttled, Unauthorized, ValidationError
from .models import ApiToken, Invitation, LoginAttempt, StaffSession, User

# argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile). Deliberately slow.
_hasher = PasswordHasher()
# Checked so that a timing difference does not tell which emails have accounts. Made on first
# use, with the hasher in force then: a command that never signs anyone in does not pay for it.
_dummy_hash: str | None = None


def use_password_hasher(hasher: PasswordHasher) -> None:
    """Hash and check passwords with ``hasher`` from now on, in this process.

    For the test suite only, which signs people in thousands of times and would spend most of
    its time in argon2 (``argon2.profiles.CHEAPEST``). A stored hash carries its own parameters,
    so hashes made either way still verify; sign-in rehashes one whose parameters differ.
    """
    global _hasher, _dummy_hash
    _hasher = hasher
    _dummy_hash = None


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("not a real password, only used to spend the same time")
    return _dummy_hash


EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
TOKEN_PREFIX = "cmp_"  # noqa: S105 - a public marker, not a secret
MIN_PASSWORD = 12
MAX_PASSWORD = 256
COMMON_PASSWORDS = frozenset(
    {
        "password1234",
        "123456789012",
        "qwertyuiopas",
        "passwordpassword",
        "iloveyou1234",
        "letmeinletmein",
        "welcome12345",
        "administrator",
        "correcthorsebatterystaple",
        "abcdefghijkl",
        "111111111111",
        "changemechangeme",
    }
)


def hash_token(raw: str) -> str:
    """Tokens are 256-bit random values, so a fast hash is enough to keep them from the database."""
    return hashlib.sha256(raw.encode()).hexdigest()


def normalise_email(raw: str) -> str:
    email = (raw or "").strip().lower()
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise ValidationError(f"{raw.strip()!r} is not a valid email address.", field="email")
    return email


def check_role(role: str) -> Role:
    if role not in ROLES:
        known = ", ".join(ROLES)
        raise ValidationError(f"Unknown role {role!r}; choose one of {known}.", field="role")
    return Role(role)


def password_problems(password: str, *, email: str = "", name: str = "") -> list[str]:
    """What is wrong with a password, in words a person can act on; empty when it is fine."""
    problems = []
    if len(password) < MIN_PASSWORD:
        problems.append(f"it must be at least {MIN_PASSWORD} characters long")
    if len(password) > MAX_PASSWORD:
        problems.append(f"it must be at most {MAX_PASSWORD} characters long")
    lowered = password.lower()
    if len(set(password)) < 5:
        problems.append("it uses too few different characters")
    if lowered in COMMON_PASSWORDS or lowered.strip("0123456789!") in COMMON_PASSWORDS:
        problems.append("it is a commonly used password")
    local = email.split("@", 1)[0].lower()
    if len(local) >= 4 and local in lowered:
        problems.append("it contains your email address")
    for part in name.lower().split():
        if len(part) >= 4 and part in lowered:
            problems.append("it contains your name")
            break
    return problems


def check_password(password: str, *, email: str = "", name: str = "") -> None:
    problems = password_problems(password, email=email, name=name)
    if problems:
        raise ValidationError(
            "Choose a stronger password: " + "; ".join(problems) + ".", field="password"
        )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def get_user(session: Session, user_id: int, *, organisation_id: int | None = None) -> User:
    user = session.get(User, user_id)
    if user is None or (organisation_id is not None and user.organisation_id != organisation_id):
        raise NotFound("No such staff member.")
    return user


def find_user_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email.strip().lower())).first()


def create_user(
    session: Session,
    *,
    organisation_id: int,
    email: str,
    name: str,
    role: str,
    password: str | None = None,
    actor: User | None = None,
) -> User:
    """Create a staff member, with a password or (for invites) without one yet."""
    email = normalise_email(email)
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the person's name.", field="name")
    if len(name) > 200:
        raise ValidationError("The name is longer than 200 characters.", field="name")
    role = check_role(role)
    if find_user_by_email(session, email) is not None:
        raise Conflict(f"There is already a staff account for {email}.", field="email")
    if password is not None:
        check_password(password, email=email, name=name)
    user = User(
        organisation_id=organisation_id,
        email=email,
        name=name,
        role=role,
        password_hash=hash_password(password) if password is not None else None,
        active=True,
    )
    session.add(user)
    session.flush()
    audit(session, "staff.created", actor=actor, subject=("user", user.id), role=role, email=email)
    return user


# --- sign-in -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int
    window: dt.timedelta

    @property
    def max_per_ip(self) -> int:
        # Several people may share one school network, so an address gets more room than an email.
        return self.max_failures * 4


def _retry_after(
    failures: list[dt.datetime], limit: int, window: dt.timedelta, now: dt.datetime
) -> int:
    """Seconds until fewer than ``limit`` of these failures fall inside the window."""
    failures = sorted(failures)
    oldest_that_must_expire = failures[len(failures) - limit]
    return max(1, int((oldest_that_must_expire + window - now).total_seconds()) + 1)


def throttle_wait(
    session: Session, email: str, ip: str, policy: ThrottlePolicy, now: dt.datetime
) -> int:
    """Seconds this email or address must wait before trying again; 0 when it may try now."""
    since = now - policy.window
    waits = [0]
    for column, value, limit in (
        (LoginAttempt.email, email, policy.max_failures),
        (LoginAttempt.ip, ip, policy.max_per_ip),
    ):
        failures = list(
            session.scalars(
                select(LoginAttempt.at).where(
                    column == value,
                    LoginAttempt.at > since,
                    LoginAttempt.succeeded.is_(False),
                    # A refused attempt checked no password, so it does not prolong the wait;
                    # otherwise Retry-After would be wrong and a flood would lock a person out.
                    LoginAttempt.reason != "throttled",
                )
            )
        )
        if len(failures) >= limit:
            waits.append(_retry_after(failures, limit, policy.window, now))
    return max(waits)


def sign_in(
    session: Session,
    *,
    email: str,
    password: str,
    ip: str,
    now: dt.datetime,
    policy: ThrottlePolicy,
) -> User:
    """Check a password; record the attempt whatever the outcome. Raises on any failure.

    The caller must keep the changes even when this raises, so that failures are counted.
    """
    email = (email or "").strip().lower()[:254]
    wait = throttle_wait(session, email, ip, policy, now)
    if wait:
        session.add(LoginAttempt(email=email, ip=ip, at=now, succeeded=False, reason="throttled"))
        audit(session, "signin.throttled", actor_label=email, ip=ip)
        minutes = max(1, round(wait / 60))
        raise Throttled(
            f"Too many failed sign-ins. Try again in about {minutes} minute(s).",
            retry_after=wait,
        )
    user = find_user_by_email(session, email)
    ok = False
    reason = "unknown_email"
    if user is None or user.password_hash is None:
        _verify(_dummy(), password)
        reason = "unknown_email" if user is None else "no_password"
    else:
        ok = _verify(user.password_hash, password)
        reason = "ok" if ok else "wrong_password"
        if ok and not user.active:
            ok, reason = False, "deactivated"
    session.add(LoginAttempt(email=email, ip=ip, at=now, succeeded=ok, reason=reason))
    if not ok:
        audit(
            session,
            "signin.failed",
            actor_label=email,
            ip=ip,
            reason=reason,
            organisation_id=user.organisation_id if user else None,
        )
        session.flush()
        raise Unauthorized("That email and password do not match an active account.")
    assert user is not None
    if _hasher.check_needs_rehash(user.password_hash or ""):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    audit(session, "signin.ok", actor=user, ip=ip)
    session.flush()
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def start_session(
    session: Session, user: User, *, now: dt.datetime, ip: str = "", user_agent: str = ""
) -> str:
    """Open a new browser session and return the raw id for the cookie."""
    raw = secrets.token_urlsafe(32)
    session.add(
        StaffSession(
            user_id=user.id,
            token_hash=hash_token(raw),
            created_at=now,
            last_seen_at=now,
            ip=ip[:64],
            user_agent=user_agent[:300],
        )
    )
    session.flush()
    return raw


@dataclass(frozen=True)
class SessionPolicy:
    idle: dt.timedelta
    absolute: dt.timedelta
    # Writing last_seen_at on every request is wasteful; a minute's precision is plenty.
    touch_every: dt.timedelta = dt.timedelta(seconds=60)


def resolve_session(
    session: Session, raw: str, *, now: dt.datetime, policy: SessionPolicy
) -> StaffSession | None:
    """The live session for a cookie value, ending it if it has timed out."""
    # Every staff request needs the person too: one query with the session row, not a second
    # one when ``row.user`` is first read (joined by hand, as family_sessions.resolve_session
    # explains, so the row keeps no loader options).
    found = session.execute(
        select(StaffSession, User)
        .join(User, User.id == StaffSession.user_id)
        .where(StaffSession.token_hash == hash_token(raw))
    ).first()
    if found is None:
        return None
    row, user = found
    set_committed_value(row, "user", user)
    if row.ended_at is not None:
        return None
    reason = None
    if not row.user.active:
        reason = "deactivated"
    elif now - row.last_seen_at > policy.idle:
        reason = "idle"
    elif now - row.created_at > policy.absolute:
        reason = "absolute"
    if reason:
        row.ended_at = now
        row.end_reason = reason
        session.flush()
        return None
    if now - row.last_seen_at >= policy.touch_every:
        row.last_seen_at = now
    return row


def end_session(
    session: Session, raw: str, *, now: dt.datetime, reason: str = "signed_out"
) -> None:
    session.execute(
        update(StaffSession)
        .where(StaffSession.token_hash == hash_token(raw), StaffSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
    )


def end_all_sessions(session: Session, user_id: int, *, now: dt.datetime, reason: str) -> None:
    session.execute(
        update(StaffSession)
        .where(StaffSession.user_id == user_id, StaffSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
    )


# --- invites -------------------------------------------------------------------------------


def invite(
    session: Session,
    *,
    actor: User,
    email: str,
    name: str,
    role: str,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> tuple[User, str]:
    """Create an account without a password and a one-time link to set it; returns the raw token."""
    user = create_user(
        session,
        organisation_id=actor.organisation_id,
        email=email,
        name=name,
        role=role,
        actor=actor,
    )
    raw = issue_invitation(session, user, actor=actor, now=now, ttl=ttl)
    return user, raw


def issue_invitation(
    session: Session, user: User, *, actor: User, now: dt.datetime, ttl: dt.timedelta
) -> str:
    """A fresh invite link for ``user``; earlier unused links stop working."""
    # An invite link sets a password, so it must not become a way to take over an account.
    if not user.active:
        raise Conflict(f"{user.email} is deactivated; reactivate the account first.")
    if user.password_hash is not None:
        raise Conflict(f"{user.email} has already set a password; no invitation is needed.")
    session.execute(
        update(Invitation)
        .where(Invitation.user_id == user.id, Invitation.used_at.is_(None))
        .values(used_at=now)
    )
    raw = secrets.token_urlsafe(32)
    session.add(
        Invitation(
            user_id=user.id,
            token_hash=hash_token(raw),
            created_at=now,
            expires_at=now + ttl,
            created_by_id=actor.id,
        )
    )
    audit(session, "staff.invited", actor=actor, subject=("user", user.id))
    session.flush()
    return raw


def invitation_for(session: Session, raw: str, *, now: dt.datetime) -> Invitation:
    """The usable invitation behind a link, or a clear reason why it cannot be used."""
    inv = session.scalars(
        select(Invitation).where(Invitation.token_hash == hash_token(raw or ""))
    ).first()
    if inv is None:
        raise NotFound("This invite link is not valid. Ask an admin to send a new one.")
    if inv.used_at is not None:
        raise Conflict("This invite link has already been used. Ask an admin for a new one.")
    if inv.expires_at <= now:
        raise Conflict("This invite link has expired. Ask an admin to send a new one.")
    if not inv.user.active:
        raise Forbidden("This account has been deactivated.")
    return inv


def accept_invitation(session: Session, raw: str, password: str, *, now: dt.datetime) -> User:
    inv = invitation_for(session, raw, now=now)
    user = inv.user
    check_password(password, email=user.email, name=user.name)
    user.password_hash = hash_password(password)
    inv.used_at = now
    audit(session, "staff.password_set", actor=user, subject=("user", user.id))
    session.flush()
    return user


# --- roles and deactivation ----------------------------------------------------------------


def _admins_left(session: Session, organisation_id: int, excluding: int) -> int:
    return (
        session.scalar(
            select(func.count(User.id)).where(
                User.organisation_id == organisation_id,
                User.role == ADMIN,
                User.active.is_(True),
                User.id != excluding,
            )
        )
        or 0
    )


def change_role(session: Session, *, actor: User, user_id: int, role: str) -> User:
    role = check_role(role)
    user = get_user(session, user_id, organisation_id=actor.organisation_id)
    if user.role == role:
        return user
    if user.role == ADMIN and _admins_left(session, user.organisation_id, user.id) == 0:
        raise Conflict("This is the last active admin; make someone else admin first.")
    old = user.role
    user.role = role
    audit(session, "staff.role_changed", actor=actor, subject=("user", user.id), old=old, new=role)
    session.flush()
    return user


def deactivate(session: Session, *, actor: User, user_id: int, now: dt.datetime) -> User:
    """Stop an account at once: its sessions end and its API tokens are revoked."""
    user = get_user(session, user_id, organisation_id=actor.organisation_id)
    if user.id == actor.id:
        raise Conflict("You cannot deactivate your own account.")
    if not user.active:
        return user
    if user.role == ADMIN and _admins_left(session, user.organisation_id, user.id) == 0:
        raise Conflict("This is the last active admin; make someone else admin first.")
    user.active = False
    user.deactivated_at = now
    end_all_sessions(session, user.id, now=now, reason="deactivated")
    session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    audit(session, "staff.deactivated", actor=actor, subject=("user", user.id))
    session.flush()
    return user


def reactivate(session: Session, *, actor: User, user_id: int) -> User:
    user = get_user(session, user_id, organisation_id=actor.organisation_id)
    if user.active:
        return user
    user.active = True
    user.deactivated_at = None
    audit(session, "staff.reactivated", actor=actor, subject=("user", user.id))
    session.flush()
    return user


def list_staff(session: Session, organisation_id: int) -> list[User]:
    return list(
        session.scalars(
            select(User).where(User.organisation_id == organisation_id).order_by(User.name)
        )
    )


def role_label(role: str) -> str:
    return ROLE_LABELS[Role(role)] if role in ROLES else role


# --- API tokens ----------------------------------------------------------------------------


def create_token(session: Session, *, user: User, name: str, actor: User | None = None) -> str:
    """Create an API token for ``user``; the raw value is returned once and never stored."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the token a name, such as where it will be used.", field="name")
    if len(name) > 100:
        raise ValidationError("The token name is longer than 100 characters.", field="name")
    if not user.active:
        raise Conflict("A deactivated account cannot have API tokens.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_token(raw), prefix=raw[:10])
    session.add(token)
    session.flush()
    audit(
        session,
        "token.created",
        actor=actor or user,
        subject=("api_token", token.id),
        owner=user.id,
        name=name,
    )
    return raw


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc())
        )
    )


def revoke_token(session: Session, *, actor: User, token_id: int, now: dt.datetime) -> ApiToken:
    token = session.get(ApiToken, token_id)
    # Only the owner, or an admin of the same organisation, may revoke a token.
    if token is None or not (
        token.user_id == actor.id
        or (actor.role == ADMIN and token.user.organisation_id == actor.organisation_id)
    ):
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = now
        audit(session, "token.revoked", actor=actor, subject=("api_token", token.id))
        session.flush()
    return token


def user_for_token(session: Session, raw: str, *, now: dt.datetime) -> User | None:
    """The active user behind a bearer token, or None for an unknown or revoked one."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(raw))).first()
    if token is None or token.revoked_at is not None or not token.user.active:
        return None
    # Record use at most once a minute, so the audit trail shows use without a row per call.
    if token.last_used_at is None or now - token.last_used_at > dt.timedelta(minutes=1):
        token.last_used_at = now
        audit(session, "token.used", actor=token.user, subject=("api_token", token.id))
    return token.user
