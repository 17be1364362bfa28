"""TOTP two-factor sign-in (RFC 6238: 30-second steps, six digits, one step of clock drift either
way) with single-use recovery codes.

The safeguarding lead and the admin can see recordings, so they must use it; anyone else may.
Seeds are sealed with the data-sealing key (companion.sealing), never with the cookie-signing
SECRET_KEY, so rotating that secret leaves two-factor sign-in working; recovery codes are kept
only as an HMAC under a pepper derived from the same key (its id stored beside each), so a
database dump alone neither yields a seed nor lets anybody test guesses at a code. A code is
accepted at most once: the latest time step used per user is stored and no step at or before it
is accepted again.

Like every service, these flush and never commit. Failed codes are recorded as sign-in attempts
(the sign-in throttle counts them), so callers keep the changes when these raise.
"""

from __future__ import annotations

import datetime as dt
import hmac
import io
import re
import secrets

import pyotp
from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import sealing
from ..access import ADMIN, LEAD
from ..audit.services import record as audit
from ..errors import (
    CompanionError,
    Conflict,
    Forbidden,
    NotFound,
    Throttled,
    Unauthorized,
    ValidationError,
)
from . import services as accounts
from .models import LoginAttempt, StaffSession, User
from .twofactor_models import RecoveryCode, TotpUsedStep

# Roles that can see recordings must sign in with a second factor.
REQUIRED_ROLES = (LEAD, ADMIN)
STEP_SECONDS = 30
DIGITS = 6
# Accept the previous and the next step as well, for phones whose clock is a little off.
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
# 16 characters from 31 that cannot be mistaken for each other (no i, l, o, 0, 1): 79 bits,
# shown in groups of four.
RECOVERY_CODE_LENGTH = 16
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
# A password-checked browser waiting for its code is ended after this long.
PENDING_SIGN_IN_TTL = dt.timedelta(minutes=10)
DEFAULT_STEP_UP_AGE = dt.timedelta(minutes=5)
ISSUER = "companion"

# The views a lead or admin without two-factor may still open: enrolment itself and sign-out.
OPEN_BEFORE_ENROLMENT = frozenset({"twofactor.setup", "twofactor.status", "accounts.logout"})

_TOTP_RE = re.compile(r"^\d{6}$")


class SeedUnreadable(CompanionError):
    """The stored seed cannot be opened (its sealing key is lost); an admin must reset it."""

    code = "two_factor_unreadable"
    status = 409


class StepUpRequired(Forbidden):
    """The action needs a second factor entered within the last few minutes."""

    code = "step_up_required"


# --- keys and secrets ----------------------------------------------------------------------


def seal_seed(seed: str, sealer: sealing.Sealer | None = None) -> str:
    """Seal a seed under the current data-sealing key (the app's, unless ``sealer`` is given)."""
    return (sealer or sealing.sealer_for()).seal(sealing.Purpose.TOTP_SEED, seed)


def open_seed(token: str, sealer: sealing.Sealer | None = None) -> str:
    try:
        if sealer is not None:
            return sealer.unseal(sealing.Purpose.TOTP_SEED, token)
        return sealing.unseal(sealing.Purpose.TOTP_SEED, token)
    except sealing.Unreadable:
        raise SeedUnreadable(
            "Your two-factor secret cannot be read on this server. "
            "Ask an admin to reset your two-factor sign-in, then set it up again."
        ) from None


def normalise_recovery_code(raw: str) -> str:
    return re.sub(r"[\s-]", "", raw or "").lower()


def hash_recovery_code(raw: str) -> tuple[str, str]:
    """``(key_id, hash)`` of a recovery code under the current data-sealing key."""
    return sealing.sealer_for().keyed_hash(
        sealing.Purpose.RECOVERY_CODE, normalise_recovery_code(raw)
    )


def _recovery_code_matches(raw: str) -> ColumnElement[bool]:
    """Rows whose hash is ``raw``'s under the key they name (any configured one, or the legacy
    secret for codes made before keys were separated): codes keep working across a rotation."""
    hashes = sealing.sealer_for().keyed_hashes(
        sealing.Purpose.RECOVERY_CODE, normalise_recovery_code(raw)
    )
    return or_(
        *(
            and_(
                RecoveryCode.key_id.is_(None) if key_id is None else RecoveryCode.key_id == key_id,
                RecoveryCode.code_hash == digest,
            )
            for key_id, digest in hashes
        )
    )


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, RECOVERY_CODE_LENGTH, 4))


# --- state ---------------------------------------------------------------------------------


def is_enabled(user: User) -> bool:
    return user.totp_enabled_at is not None and bool(user.totp_secret_encrypted)


def is_required(user: User) -> bool:
    return user.role in REQUIRED_ROLES


def must_enrol(user: User) -> bool:
    """A lead or admin without two-factor may do nothing but set it up."""
    return is_required(user) and not is_enabled(user)


def needs_second_factor(row: StaffSession) -> bool:
    """This browser has passed the password step only and must still enter a code."""
    return is_enabled(row.user) and row.second_factor_at is None


def has_recent_second_factor(
    row: StaffSession | None, *, now: dt.datetime, max_age: dt.timedelta = DEFAULT_STEP_UP_AGE
) -> bool:
    return (
        row is not None
        and row.ended_at is None
        and is_enabled(row.user)
        and row.second_factor_at is not None
        and now - row.second_factor_at <= max_age
    )


def check_recent_second_factor(
    row: StaffSession | None, *, now: dt.datetime, max_age: dt.timedelta = DEFAULT_STEP_UP_AGE
) -> None:
    """For services: refuse unless this browser entered a code within ``max_age``.

    API tokens have no browser session, so they never pass: such actions are browser-only.
    """
    if not has_recent_second_factor(row, now=now, max_age=max_age):
        minutes = max(1, int(max_age.total_seconds() // 60))
        raise StepUpRequired(
            f"This needs a code from your authenticator app entered within the last "
            f"{minutes} minute(s), in the browser. Confirm with a fresh code and try again."
        )


def remaining_recovery_codes(session: Session, user: User) -> int:
    return (
        session.scalar(
            select(func.count(RecoveryCode.id)).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        )
        or 0
    )


# --- enrolment -----------------------------------------------------------------------------


def begin_enrolment(session: Session, user: User) -> str:
    """The seed waiting to be confirmed (a new one the first time); returns it in clear for the
    QR code. It only counts once a code from it has been entered (``confirm_enrolment``)."""
    if is_enabled(user):
        raise Conflict("Two-factor sign-in is already on for your account.")
    if user.totp_secret_encrypted:
        try:
            return open_seed(user.totp_secret_encrypted)
        except SeedUnreadable:
            pass  # a pending seed under a key now lost: start again with a new one
    seed = pyotp.random_base32(length=32)  # 160 bits, as RFC 4226 recommends
    user.totp_secret_encrypted = seal_seed(seed)
    session.flush()
    return seed


def provisioning_uri(user: User, seed: str) -> str:
    """The otpauth:// URI authenticator apps read from the QR code."""
    issuer = f"{ISSUER} ({user.organisation.name})" if user.organisation else ISSUER
    return pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=user.email, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The QR code as an inline SVG document, drawn here: nothing is sent to another service."""
    import segno

    out = io.BytesIO()
    segno.make(uri, error="m").save(
        out, kind="svg", scale=5, border=4, xmldecl=False, svgns=True, nl=False, svgclass="qr"
    )
    return out.getvalue().decode("utf-8")


def confirm_enrolment(
    session: Session,
    user: User,
    code: str,
    *,
    now: dt.datetime,
    staff_session: StaffSession | None = None,
) -> list[str]:
    """Turn two-factor on once a code from the pending seed is right; returns the recovery
    codes, in clear for this once. The browser that confirmed counts as having just used it."""
    if is_enabled(user):
        raise Conflict("Two-factor sign-in is already on for your account.")
    if not user.totp_secret_encrypted:
        raise Conflict("Start the set-up again: there is no secret waiting to be confirmed.")
    seed = open_seed(user.totp_secret_encrypted)
    problem = _check_totp(session, user, seed, code, now=now)
    if problem:
        raise ValidationError(problem, field="code")
    user.totp_enabled_at = now
    codes = _replace_recovery_codes(session, user, now=now)
    if staff_session is not None:
        staff_session.second_factor_at = now
    # Other browsers signed in with the password alone do not carry over.
    _end_other_sessions(session, user, keep=staff_session, now=now, reason="two_factor_enrolled")
    audit(session, "twofactor.enrolled", actor=user, subject=("user", user.id))
    session.flush()
    return codes


def regenerate_recovery_codes(session: Session, user: User, *, now: dt.datetime) -> list[str]:
    """New recovery codes; every earlier one stops working."""
    if not is_enabled(user):
        raise Conflict("Turn on two-factor sign-in first.")
    codes = _replace_recovery_codes(session, user, now=now)
    audit(session, "twofactor.recovery_regenerated", actor=user, subject=("user", user.id))
    session.flush()
    return codes


def _replace_recovery_codes(session: Session, user: User, *, now: dt.datetime) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes: list[str] = []
    while len(codes) < RECOVERY_CODE_COUNT:
        code = _new_recovery_code()
        if code not in codes:
            codes.append(code)
    for c in codes:
        key_id, code_hash = hash_recovery_code(c)
        session.add(
            RecoveryCode(user_id=user.id, code_hash=code_hash, key_id=key_id, created_at=now)
        )
    session.flush()
    return codes


def _clear(session: Session, user: User) -> None:
    user.totp_secret_encrypted = None
    user.totp_enabled_at = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.execute(delete(TotpUsedStep).where(TotpUsedStep.user_id == user.id))


def _end_other_sessions(
    session: Session, user: User, *, keep: StaffSession | None, now: dt.datetime, reason: str
) -> None:
    query = update(StaffSession).where(
        StaffSession.user_id == user.id, StaffSession.ended_at.is_(None)
    )
    if keep is not None:
        query = query.where(StaffSession.id != keep.id)
    session.execute(query.values(ended_at=now, end_reason=reason))


def disable(
    session: Session, user: User, *, now: dt.datetime, staff_session: StaffSession | None = None
) -> None:
    """Turn one's own two-factor off. A lead or admin is sent straight back to set-up, so for
    them this is how to move to a new phone. Every other browser of theirs is signed out: one
    waiting at the code step must not become signed in by the code step disappearing."""
    if not is_enabled(user) and not user.totp_secret_encrypted:
        return
    _clear(session, user)
    _end_other_sessions(session, user, keep=staff_session, now=now, reason="two_factor_disabled")
    audit(session, "twofactor.disabled", actor=user, subject=("user", user.id))
    session.flush()


def reset(session: Session, *, actor: User, user_id: int, now: dt.datetime) -> User:
    """An admin clears someone's two-factor (a lost phone): their sessions end, and a lead or
    admin must set it up again at their next sign-in."""
    if actor.role != ADMIN:
        raise Forbidden("Only an admin can reset someone's two-factor sign-in.")
    person = accounts.get_user(session, user_id, organisation_id=actor.organisation_id)
    if person.id == actor.id:
        raise Conflict(
            "Use your own two-factor page to set up a new authenticator; "
            "another admin can reset yours."
        )
    if not is_enabled(person) and not person.totp_secret_encrypted:
        raise Conflict(f"{person.name} has not set up two-factor sign-in.")
    _clear(session, person)
    accounts.end_all_sessions(session, person.id, now=now, reason="two_factor_reset")
    audit(
        session,
        "twofactor.reset",
        actor=actor,
        subject=("user", person.id),
        role=person.role,
        required=is_required(person),
    )
    session.flush()
    return person


def reset_from_command_line(session: Session, email: str, *, now: dt.datetime) -> User:
    """``companion user reset-two-factor``: for whoever runs the server, when the only admin has
    lost both their phone and their recovery codes (there is no other admin to reset them)."""
    person = accounts.find_user_by_email(session, email)
    if person is None:
        raise NotFound(f"No staff account for {email}.")
    if not is_enabled(person) and not person.totp_secret_encrypted:
        raise Conflict(f"{person.email} has not set up two-factor sign-in.")
    _clear(session, person)
    accounts.end_all_sessions(session, person.id, now=now, reason="two_factor_reset")
    audit(
        session,
        "twofactor.reset",
        actor_label="command line",
        organisation_id=person.organisation_id,
        subject=("user", person.id),
        role=person.role,
        required=is_required(person),
        via="command line",
    )
    session.flush()
    return person


# --- checking codes ------------------------------------------------------------------------


def current_step(now: dt.datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def code_at(seed: str, step: int) -> str:
    return pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def _last_step(session: Session, user: User) -> int | None:
    return session.scalar(
        select(func.max(TotpUsedStep.step)).where(TotpUsedStep.user_id == user.id)
    )


def _check_totp(
    session: Session, user: User, seed: str, code: str, *, now: dt.datetime
) -> str | None:
    """None when ``code`` is right and unused (and now marked used); else what was wrong."""
    code = re.sub(r"\s", "", code or "")
    if not _TOTP_RE.match(code):
        return "Enter the 6-digit code shown in your authenticator app."
    now_step = current_step(now)
    matched = [
        step
        for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1)
        if hmac.compare_digest(code_at(seed, step), code)
    ]
    if not matched:
        return "That code is not right. Check your app shows companion and enter the current code."
    last = _last_step(session, user)
    fresh = [step for step in matched if last is None or step > last]
    if not fresh:
        return _REPLAYED
    step = max(fresh)
    try:
        with session.begin_nested():
            session.add(TotpUsedStep(user_id=user.id, step=step, used_at=now))
    except IntegrityError:
        return _REPLAYED  # another request used this very code a moment ago
    session.execute(
        delete(TotpUsedStep).where(TotpUsedStep.user_id == user.id, TotpUsedStep.step < step)
    )
    return None


_REPLAYED = (
    "That code has already been used. Wait for the next code in your app (a new one appears "
    "every 30 seconds) and enter that."
)


def _refuse(
    session: Session, user: User, *, ip: str, now: dt.datetime, reason: str, message: str
) -> Unauthorized:
    session.add(LoginAttempt(email=user.email, ip=ip, at=now, succeeded=False, reason=reason))
    audit(session, "twofactor.failed", actor=user, subject=("user", user.id), ip=ip, reason=reason)
    session.flush()
    return Unauthorized(message, field="code")


def _throttle(
    session: Session, user: User, *, ip: str, now: dt.datetime, policy: accounts.ThrottlePolicy
) -> None:
    wait = accounts.throttle_wait(session, user.email, ip, policy, now)
    if wait:
        session.add(
            LoginAttempt(email=user.email, ip=ip, at=now, succeeded=False, reason="throttled")
        )
        audit(session, "signin.throttled", actor=user, ip=ip, step="second_factor")
        session.flush()
        minutes = max(1, round(wait / 60))
        raise Throttled(
            f"Too many wrong codes or passwords. Try again in about {minutes} minute(s).",
            retry_after=wait,
        )


def verify_sign_in(
    session: Session,
    user: User,
    code: str,
    *,
    ip: str,
    now: dt.datetime,
    policy: accounts.ThrottlePolicy,
) -> str:
    """The second sign-in step: a current TOTP code or an unused recovery code.

    Returns "totp" or "recovery". Every failure is recorded and counted by the sign-in throttle;
    the caller must keep the changes even when this raises.
    """
    if not is_enabled(user) or not user.active:
        raise Unauthorized("Sign in again.")
    _throttle(session, user, ip=ip, now=now, policy=policy)
    seed = open_seed(user.totp_secret_encrypted or "")
    cleaned = re.sub(r"\s", "", code or "")
    if _TOTP_RE.match(cleaned):
        method = "totp"
        problem = _check_totp(session, user, seed, cleaned, now=now)
        if problem:
            reason = "replayed_code" if problem is _REPLAYED else "wrong_code"
            raise _refuse(session, user, ip=ip, now=now, reason=reason, message=problem)
    else:
        method = "recovery"
        row = session.scalars(
            select(RecoveryCode).where(
                RecoveryCode.user_id == user.id,
                _recovery_code_matches(cleaned),
            )
        ).first()
        if row is None:
            raise _refuse(
                session,
                user,
                ip=ip,
                now=now,
                reason="wrong_code",
                message="That is neither a current code from your app nor one of your "
                "recovery codes.",
            )
        if row.used_at is not None:
            raise _refuse(
                session,
                user,
                ip=ip,
                now=now,
                reason="used_recovery_code",
                message="That recovery code has already been used; each works once. "
                "Use another one, or the code from your app.",
            )
        row.used_at = now
    session.add(LoginAttempt(email=user.email, ip=ip, at=now, succeeded=True, reason=method))
    audit(
        session, "twofactor.verified", actor=user, subject=("user", user.id), ip=ip, method=method
    )
    if method == "recovery":
        audit(
            session,
            "twofactor.recovery_used",
            actor=user,
            subject=("user", user.id),
            ip=ip,
            remaining=remaining_recovery_codes(session, user),
        )
    session.flush()
    return method


def step_up(
    session: Session,
    user: User,
    staff_session: StaffSession,
    code: str,
    *,
    ip: str,
    now: dt.datetime,
    policy: accounts.ThrottlePolicy,
) -> None:
    """A fresh code from the app, for an action that needs one within the last few minutes.
    Recovery codes are not taken here: they are for a lost phone, not for everyday actions."""
    if not is_enabled(user):
        raise Conflict("Set up two-factor sign-in first.")
    if staff_session.user_id != user.id:
        raise Unauthorized("Sign in again.")
    _throttle(session, user, ip=ip, now=now, policy=policy)
    seed = open_seed(user.totp_secret_encrypted or "")
    problem = _check_totp(session, user, seed, code, now=now)
    if problem:
        reason = "replayed_code" if problem is _REPLAYED else "wrong_code"
        raise _refuse(session, user, ip=ip, now=now, reason=reason, message=problem)
    staff_session.second_factor_at = now
    session.add(LoginAttempt(email=user.email, ip=ip, at=now, succeeded=True, reason="step_up"))
    audit(session, "twofactor.step_up", actor=user, subject=("user", user.id), ip=ip)
    session.flush()
