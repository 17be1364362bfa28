"""Evidence: courses with classes in the past, families, Zoom's meeting events fed through
attendance, and recordings."""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
from typing import Any

from sqlalchemy.orm import Session

from companion.courses.models import ClassSession, Course
from companion.evidence import attendance
from companion.families.models import Family, FamilyContact

from .recordings import CLASS_MINUTES, class_start, zoom_course

HOST_ID = "HOSTzoomUSER1"
_seq = itertools.count(1)


def course_with_classes(
    session: Session, teacher: Any, *, starts: list[dt.datetime] | None = None, **kw: Any
) -> Course:
    starts = starts or [class_start(1), class_start(1) + dt.timedelta(days=7)]
    meeting_id = kw.pop("meeting_id", 80000000000 + next(_seq))
    return zoom_course(session, teacher, meeting_id=meeting_id, starts=starts, **kw)


def family(
    session: Session,
    course: Course,
    *,
    first: str = "Amira",
    last: str = "K",
    registrant_id: str | None = None,
    contacts: tuple[tuple[str, str], ...] = (("Rana Khan", "rana@example.net"),),
    status: str = "enrolled",
) -> Family:
    n = next(_seq)
    fam = Family(
        organisation_id=course.organisation_id,
        course_id=course.id,
        child_first_name=first,
        child_last_name=last,
        status=status,
        zoom_ref=secrets.token_hex(8),
        zoom_state="registered",
        zoom_registrant_id=registrant_id or f"reg-{n}-{secrets.token_hex(4)}",
    )
    session.add(fam)
    session.flush()
    for position, (name, email) in enumerate(contacts, start=1):
        session.add(FamilyContact(family_id=fam.id, position=position, name=name, email=email))
    session.flush()
    session.refresh(fam)
    return fam


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Meeting:
    """Zoom's events for one meeting instance of a course's meeting (or of an unknown one)."""

    def __init__(self, meeting_id: int, start: dt.datetime, *, host_id: str = HOST_ID):
        self.meeting_id = meeting_id
        self.start = start
        self.uuid = secrets.token_urlsafe(16) + "=="
        self.host_id = host_id

    def _object(self) -> dict[str, Any]:
        return {
            "id": str(self.meeting_id),
            "uuid": self.uuid,
            "host_id": self.host_id,
            "topic": "Art club",
            "type": 8,
            "start_time": iso(self.start),
            "timezone": "Europe/London",
            "duration": CLASS_MINUTES,
        }

    def started(self) -> dict[str, Any]:
        return self._doc("meeting.started", self._object(), self.start)

    def ended(self, at: dt.datetime) -> dict[str, Any]:
        obj = self._object()
        obj["end_time"] = iso(at)
        return self._doc("meeting.ended", obj, at)

    def participant(
        self, event: str, person: dict[str, Any], at: dt.datetime, **extra: Any
    ) -> dict[str, Any]:
        field = {
            "meeting.participant_joined": "join_time",
            "meeting.participant_left": "leave_time",
        }.get(event, "date_time")
        p = {
            "user_id": person["user_id"],
            "user_name": person["name"],
            "id": person.get("id", ""),
            "participant_uuid": person["uuid"],
            field: iso(at),
            "email": person.get("email", ""),
        }
        if person.get("registrant_id"):
            p["registrant_id"] = person["registrant_id"]
        p.update(extra)
        obj = self._object()
        obj["participant"] = p
        return self._doc(event, obj, at)

    def _doc(self, event: str, obj: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
        return {
            "event": event,
            "payload": {"account_id": "acct", "object": obj},
            "event_ts": int(at.timestamp() * 1000),
        }

    # --- people --------------------------------------------------------------------------

    def host(self, name: str = "Ms Teacher") -> dict[str, Any]:
        return {
            "name": name,
            "user_id": "16778240",
            "uuid": secrets.token_hex(8),
            "id": self.host_id,
        }

    @staticmethod
    def child(fam: Family | None = None, name: str | None = None, **kw: Any) -> dict[str, Any]:
        return {
            "name": name or (f"{fam.child_first_name} {fam.child_last_name}" if fam else "Guest"),
            "user_id": str(16778300 + next(_seq)),
            "uuid": secrets.token_hex(8),
            "registrant_id": fam.zoom_registrant_id if fam else None,
            **kw,
        }

    def attend(
        self, person: dict[str, Any], joined: dt.datetime, left: dt.datetime, *, wait: bool = True
    ) -> list[dict[str, Any]]:
        docs = []
        if wait:
            docs.append(
                self.participant(
                    "meeting.participant_joined_waiting_room",
                    person,
                    joined - dt.timedelta(seconds=30),
                )
            )
            docs.append(self.participant("meeting.participant_admitted", person, joined))
        docs.append(self.participant("meeting.participant_joined", person, joined))
        docs.append(self.participant("meeting.participant_left", person, left))
        return docs


def feed(
    session: Session,
    docs: list[dict[str, Any]],
    now: dt.datetime | None = None,
    *,
    as_given: bool = False,
) -> None:
    """Hand events to attendance in Zoom's time order (as Zoom sends them), or ``as_given``."""
    ordered = docs if as_given else sorted(docs, key=lambda d: d["event_ts"])
    for doc in ordered:
        attendance.record_event(session, doc, now=now or dt.datetime.now(dt.UTC))


def class_of(course: Course, index: int = 0) -> ClassSession:
    return sorted(course.classes, key=lambda c: c.starts_at)[index]


def family_cookie(session: Session, contact: FamilyContact, now: dt.datetime | None = None) -> str:
    """A family session for a parent, as the cookie value a browser would hold."""
    from companion.accounts.services import hash_token
    from companion.families.family_sessions import SESSION_IDLE
    from companion.families.models import FamilyLink, FamilySession

    now = now or dt.datetime.now(dt.UTC)
    link = FamilyLink(
        family_id=contact.family_id,
        contact_id=contact.id,
        token_hash=hash_token(secrets.token_urlsafe(32)),
        created_at=now,
    )
    session.add(link)
    session.flush()
    raw = secrets.token_urlsafe(32)
    session.add(
        FamilySession(
            link_id=link.id,
            family_id=contact.family_id,
            contact_id=contact.id,
            token_hash=hash_token(raw),
            created_at=now,
            last_seen_at=now,
            expires_at=now + SESSION_IDLE,
        )
    )
    session.flush()
    return raw


def recording(session: Session, cls: ClassSession, *, files: int = 2, **kw: Any) -> Any:
    """A stored recording of a class (rows only; no blob)."""
    import hashlib
    import uuid

    from companion.recordings.models import Recording, RecordingFile

    rec = Recording(
        organisation_id=cls.course.organisation_id,
        course_id=cls.course_id,
        class_session_id=cls.id,
        zoom_meeting_id=cls.course.zoom_meeting_id or 1,
        zoom_uuid=secrets.token_urlsafe(16),
        started_at=cls.starts_at,
        ended_at=cls.ends_at,
        duration_minutes=cls.duration_minutes,
        state="active",
        delete_after=cls.ends_at + dt.timedelta(days=30),
        **kw,
    )
    session.add(rec)
    session.flush()
    for i in range(files):
        body = f"file {i} of {rec.id}".encode()
        session.add(
            RecordingFile(
                id=uuid.uuid4(),
                recording_id=rec.id,
                zoom_file_id=secrets.token_hex(8),
                file_type=("MP4", "M4A")[i % 2],
                download_url="https://zoom.invalid/x",
                size=len(body) * 1000,
                sha256=hashlib.sha256(body).hexdigest(),
                state="zoom_deleted",
                created_at=cls.ends_at,
            )
        )
    session.flush()
    session.refresh(rec)
    return rec
