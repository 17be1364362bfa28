"""Staff pages for families: enrol (one at a time or CSV), withdraw, links, the admit list, and
the admin's e-safety agreement.

URL map:

    GET       /families/                                          courses and their families
    GET       /courses/<id>/families                              one course's families
    GET POST  /courses/<id>/families/new                          enrol a child
    GET POST  /courses/<id>/families/import                       enrol from a CSV file
    GET       /courses/<id>/families/import/template.csv          an empty file with the columns
    GET       /courses/<id>/families/<fid>                        one family (links, records)
    GET POST  /courses/<id>/families/<fid>/withdraw               withdraw (registrant cancelled)
    POST      /courses/<id>/families/<fid>/retry                  try Zoom again now
    GET POST  /courses/<id>/families/<fid>/contacts/<n>/edit      correct (or add) a parent/carer
    POST      /courses/<id>/families/<fid>/contacts/<cid>/resend  new link, old one dies
    POST      /courses/<id>/families/<fid>/contacts/<cid>/revoke  link dies, nothing new sent
    GET       /courses/<id>/classes/<class_id>/admit              who to admit, audio-only flagged
    GET POST  /admin/agreement/                                   the e-safety agreement (admin)
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import RequestEntityTooLarge

from .. import policy
from ..access import ADMIN, STAFF, TEACHER, allow, current_user
from ..accounts.forms import ActionForm
from ..accounts.models import User
from ..accounts.views import form_failed
from ..courses import access as course_access
from ..courses import presentation, timetable, verification
from ..courses.models import Course
from ..courses.timetable import local_time, upcoming_classes
from ..db import get_session, utcnow
from ..errors import CompanionError, NotFound
from . import (
    access,
    agreement,
    audio_only,
    csv_import,
    enrolment,
    errors,
    extensions,
    jobs,
    links,
    people,
    registrants,
)

# By name, not as a module: the admit list's view below is called admit.
from .admit import accepted_families, admit_page, get_class_for
from .forms import AgreementForm, ContactForm, EnrolForm, ImportForm
from .models import (
    ZOOM_STATE_LABELS,
    AgreementAcceptance,
    AgreementVersion,
    AudioOnlyEvent,
    RegistrantState,
)

bp = Blueprint("families", __name__)
agreement_bp = Blueprint("agreement", __name__, url_prefix="/admin/agreement")


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_exc: RequestEntityTooLarge) -> Any:
    flash(
        f"That file is far too large: a CSV of families is at most "
        f"{csv_import.MAX_BYTES // 1024} KB. Nothing was imported.",
        "error",
    )
    return redirect(request.path if request.path.endswith("/import") else url_for("web.home"))


def _globals() -> dict[str, Any]:
    return {
        "zoom_labels": ZOOM_STATE_LABELS,
        "display_name": people.display_name,
        "local_time": timetable.local_time,
    }


def _course(course_id: int) -> Course:
    return access.get_course(get_session(), current_user(), course_id)


@bp.get("/families/")
@allow(*STAFF)
def index() -> Any:
    session = get_session()
    user = current_user()
    now = utcnow()
    listed = course_access.list_courses(session, user)
    presentation.preload_for_lists(session, listed)
    counts = access.enrolled_counts(session, [c.id for c in listed])
    rows = []
    for course in listed:
        enrolled, waiting = counts.get(course.id, (0, 0))
        upcoming = upcoming_classes(course, now)
        rows.append(
            {
                "course": course,
                "families": enrolled,
                "waiting": waiting,
                "next_class": upcoming[0] if upcoming else None,
            }
        )
    return render_template("families/index.html", rows=rows, **_globals())


@bp.get("/courses/<int:course_id>/families")
@allow(*STAFF)
def course_families(course_id: int) -> Any:
    session = get_session()
    user = current_user()
    course = _course(course_id)
    now = utcnow()
    # Each kind of fact is read once for the whole course (families with their parents, links,
    # acceptances, audio-only requests), never once per family or per class.
    families = access.families_of(session, course.id, with_contacts=True)
    link_states = links.link_states(session, [c for f in families for c in f.contacts], now)
    accepted = accepted_families(session, course.organisation, families, now=now)
    class_list = timetable.class_sessions(course)
    audio_by_class = audio_only.audio_only_by_class(
        session, course, families, [cls for cls in class_list if cls.ends_at > now]
    )
    classes = []
    for cls in class_list:
        audio = audio_by_class.get(cls.id)
        classes.append(
            {
                "cls": cls,
                "start": local_time(course, cls.starts_at),
                "end": local_time(course, cls.ends_at),
                "expected": len(audio) if audio is not None else None,
                "audio_only": sum(audio.values()) if audio is not None else None,
            }
        )
    return render_template(
        "families/course.html",
        course=course,
        families=families,
        links=link_states,
        accepted=accepted,
        classes=classes,
        can_change=policy.may_change_course(user, course) and course.is_open,
        is_safe=verification.course_is_safe(course),
        **_globals(),
    )


def _enrol_form(course: Course) -> EnrolForm:
    form = EnrolForm()
    form.child_last_name.label.text = (
        "First letter of the child's surname"
        if course.organisation.child_name_style == "initial"
        else "Child's surname"
    )
    return form


@bp.route("/courses/<int:course_id>/families/new", methods=["GET", "POST"])
@allow(TEACHER, ADMIN)
def enrol(course_id: int) -> Any:
    session = get_session()
    course = _course(course_id)
    form = _enrol_form(course)
    status = 200
    if form.validate_on_submit():
        try:
            family = enrolment.enrol(
                session,
                actor=current_user(),
                course_id=course.id,
                child_first_name=form.child_first_name.data,
                child_last_name=form.child_last_name.data,
                contacts=[
                    people.ContactInput(form.contact1_name.data, form.contact1_email.data),
                    people.ContactInput(
                        form.contact2_name.data or "", form.contact2_email.data or ""
                    ),
                ],
                now=utcnow(),
            )
        except CompanionError as exc:
            form_failed(form, exc)
            status = 422 if exc.status < 500 else exc.status
        else:
            # Zoom is called once this is committed and answered: the teacher sees the family at
            # once, "pending in Zoom", and a reload shows it registered.
            jobs.after_request(family, actor_id=current_user().id)
            flash(
                f"{people.display_name(family)} is enrolled. companion is registering them in "
                "Zoom now; each parent's personal link is sent as soon as that is done and the "
                "course is safe."
            )
            return redirect(url_for("families.course_families", course_id=course.id))
    elif request.method == "POST":
        status = 422
    return render_template("families/enrol.html", form=form, course=course, **_globals()), status


@bp.route("/courses/<int:course_id>/families/import", methods=["GET", "POST"])
@allow(TEACHER, ADMIN)
def import_csv(course_id: int) -> Any:
    course = _course(course_id)
    form = ImportForm()
    problems: list[csv_import.Problem] = []
    status = 200
    if form.validate_on_submit():
        upload = form.file.data
        # Read one byte more than allowed, so a larger file is recognised without reading it all.
        data = upload.stream.read(csv_import.MAX_BYTES + 1)
        try:
            families = enrolment.import_families(
                get_session(), actor=current_user(), course_id=course.id, data=data, now=utcnow()
            )
        except errors.ImportRejected as exc:
            problems = exc.lines
            form.form_errors.append(exc.message)
            status = 422
        except CompanionError as exc:
            form_failed(form, exc)
            status = 422 if exc.status < 500 else exc.status
        else:
            flash(
                f"{len(families)} famil{'y' if len(families) == 1 else 'ies'} enrolled. companion "
                "is registering them in Zoom now; each parent's link is sent as soon as that is "
                "done and the course is safe."
            )
            return redirect(url_for("families.course_families", course_id=course.id))
    elif request.method == "POST":
        status = 422
    return render_template(
        "families/import.html",
        form=form,
        course=course,
        problems=problems,
        columns=csv_import.COLUMNS,
        required=csv_import.REQUIRED,
        max_rows=csv_import.MAX_ROWS,
        max_kb=csv_import.MAX_BYTES // 1024,
        **_globals(),
    ), status


@bp.get("/courses/<int:course_id>/families/import/template.csv")
@allow(*STAFF)
def import_template(course_id: int) -> Any:
    _course(course_id)
    body = ",".join(csv_import.COLUMNS) + "\r\n"
    return Response(
        body.encode("utf-8-sig"),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="families.csv"'},
    )


@bp.get("/courses/<int:course_id>/families/<int:family_id>")
@allow(*STAFF)
def family_detail(course_id: int, family_id: int) -> Any:
    session = get_session()
    user = current_user()
    family = access.get_family(session, user, course_id, family_id)
    course = family.course
    now = utcnow()
    contacts = {c.id: c for c in family.contacts}
    acceptances = list(
        session.execute(
            select(AgreementAcceptance, AgreementVersion)
            .join(AgreementVersion, AgreementVersion.id == AgreementAcceptance.agreement_id)
            .where(AgreementAcceptance.family_id == family.id)
            .order_by(AgreementAcceptance.accepted_at.desc())
        ).all()
    )
    events = list(
        session.scalars(
            select(AudioOnlyEvent)
            .where(AudioOnlyEvent.family_id == family.id)
            .order_by(AudioOnlyEvent.at.desc(), AudioOnlyEvent.id.desc())
            # The page names each request's class: all of them in one query.
            .options(selectinload(AudioOnlyEvent.cls))
        )
    )
    people = {
        u.id: u
        for u in session.scalars(
            select(User).where(User.id.in_([family.created_by_id, family.withdrawn_by_id]))
        )
    }
    return render_template(
        "families/detail.html",
        course=course,
        family=family,
        contacts=contacts,
        links=links.link_states(session, family.contacts, now),
        acceptances=acceptances,
        events=events,
        people=people,
        current_version=agreement.current(session, course.organisation, now=now),
        can_change=policy.may_change_course(user, course),
        can_manage_links=policy.may_manage_links(user, course),
        action_form=ActionForm(),
        **_globals(),
    )


@bp.route(
    "/courses/<int:course_id>/families/<int:family_id>/contacts/<int:position>/edit",
    methods=["GET", "POST"],
)
@allow(TEACHER, ADMIN)
def edit_contact(course_id: int, family_id: int, position: int) -> Any:
    session = get_session()
    family = access.get_family(session, current_user(), course_id, family_id)
    contact = next((c for c in family.contacts if c.position == position), None)
    if position not in (1, 2) or (contact is None and position == 1):
        raise NotFound("No such parent/carer in this family.")
    form = ContactForm(obj=contact if request.method == "GET" else None)
    status = 200
    if form.validate_on_submit():
        try:
            _contact, result = links.save_contact(
                session,
                actor=current_user(),
                course_id=course_id,
                family_id=family.id,
                position=position,
                name=form.name.data,
                email=form.email.data,
                now=utcnow(),
            )
        except CompanionError as exc:
            form_failed(form, exc)
            status = 422 if exc.status < 500 else exc.status
        else:
            flash(
                {
                    "unchanged": "Nothing changed.",
                    "saved": "Saved.",
                    "link sent": "Saved, and a personal link was sent to the new address; the "
                    "old link no longer works.",
                    "link queued": "Saved. The old link no longer works; a new one is sent to the "
                    "new address as soon as the course is safe and Zoom has registered the family.",
                }[result]
            )
            return _back(course_id, family.id)
    elif request.method == "POST":
        status = 422
    return render_template(
        "families/contact.html",
        form=form,
        course=family.course,
        family=family,
        contact=contact,
        position=position,
        **_globals(),
    ), status


def _back(course_id: int, family_id: int) -> Any:
    return redirect(url_for("families.family_detail", course_id=course_id, family_id=family_id))


def _action(course_id: int, family_id: int, run: Any) -> Any:
    """Run a one-button change; a domain error is flashed and the family page shown again."""
    if not ActionForm().validate_on_submit():
        flash("This form has expired. Reload the page and try again.", "error")
        return _back(course_id, family_id)
    try:
        message, kind = run()
    except CompanionError as exc:
        if exc.status in (403, 404):
            raise
        flash(exc.message, "error")
    else:
        flash(message, kind)
    return _back(course_id, family_id)


@bp.route("/courses/<int:course_id>/families/<int:family_id>/withdraw", methods=["GET", "POST"])
@allow(TEACHER, ADMIN)
def withdraw(course_id: int, family_id: int) -> Any:
    session = get_session()
    family = access.get_family(session, current_user(), course_id, family_id)
    if request.method == "GET":
        return render_template(
            "families/withdraw.html",
            course=family.course,
            family=family,
            action_form=ActionForm(),
            **_globals(),
        )

    def run() -> tuple[str, str]:
        withdrawn = registrants.withdraw(
            session, actor=current_user(), course_id=course_id, family_id=family_id, now=utcnow()
        )
        name = people.display_name(withdrawn)
        if withdrawn.zoom_state == RegistrantState.CANCELLED:
            return f"{name} is withdrawn; Zoom never had them.", "message"
        jobs.after_request(withdrawn, actor_id=current_user().id)
        return (
            f"{name} is withdrawn, and their family page no longer shows a join link. companion "
            "is cancelling their Zoom registration now; reload to see it confirmed.",
            "message",
        )

    return _action(course_id, family_id, run)


@bp.post("/courses/<int:course_id>/families/<int:family_id>/retry")
@allow(TEACHER, ADMIN)
def retry(course_id: int, family_id: int) -> Any:
    def run() -> tuple[str, str]:
        session = get_session()
        family = registrants.retry_zoom(
            session, actor=current_user(), course_id=course_id, family_id=family_id, now=utcnow()
        )
        jobs.after_request(family, actor_id=current_user().id)
        return "companion is trying Zoom again now; reload to see how it went.", "message"

    return _action(course_id, family_id, run)


@bp.post("/courses/<int:course_id>/families/<int:family_id>/contacts/<int:contact_id>/resend")
@allow(*STAFF)
def resend(course_id: int, family_id: int, contact_id: int) -> Any:
    def run() -> tuple[str, str]:
        result = links.resend_link(
            get_session(),
            actor=current_user(),
            course_id=course_id,
            family_id=family_id,
            contact_id=contact_id,
            now=utcnow(),
        )
        if result == "sent":
            return "A new link was sent; the old one no longer works.", "message"
        return (
            "The old link no longer works. The new one will be sent automatically as soon as the "
            "course is safe and Zoom has registered the family.",
            "warning",
        )

    return _action(course_id, family_id, run)


@bp.post("/courses/<int:course_id>/families/<int:family_id>/contacts/<int:contact_id>/revoke")
@allow(*STAFF)
def revoke(course_id: int, family_id: int, contact_id: int) -> Any:
    def run() -> tuple[str, str]:
        links.revoke_link(
            get_session(),
            actor=current_user(),
            course_id=course_id,
            family_id=family_id,
            contact_id=contact_id,
            now=utcnow(),
        )
        return (
            "The link no longer works, and every browser it opened is signed out. Use "
            "“Send a new link” to give this parent access again.",
            "message",
        )

    return _action(course_id, family_id, run)


@bp.get("/courses/<int:course_id>/classes/<int:class_id>/admit")
@allow(*STAFF)
def admit(course_id: int, class_id: int) -> Any:
    session = get_session()
    cls = get_class_for(session, current_user(), course_id, class_id)
    course = cls.course
    now = utcnow()
    page = admit_page(session, cls, now=now)
    return render_template(
        "families/admit.html",
        course=course,
        cls=cls,
        start=timetable.local_time(course, cls.starts_at),
        end=timetable.local_time(course, cls.ends_at),
        cutoff=timetable.local_time(course, audio_only.cutoff_of(course.organisation, cls)),
        rows=page.rows,
        columns=extensions.admit_columns(),
        events=page.events,
        names=page.names,
        contact_names=page.contact_names,
        now=now,
        **_globals(),
    )


# --- the e-safety agreement (admin) ------------------------------------------------------------


@agreement_bp.route("/", methods=["GET", "POST"])
@allow(ADMIN)
def edit_agreement() -> Any:
    session = get_session()
    user = current_user()
    org = user.organisation
    now = utcnow()
    version = agreement.current(session, org, now=now)
    form = AgreementForm()
    if request.method == "GET":
        form.body.data = version.body
    status = 200
    if form.validate_on_submit():
        try:
            new = agreement.publish(session, actor=user, body=form.body.data, now=now)
        except CompanionError as exc:
            form_failed(form, exc)
            status = 422 if exc.status < 500 else exc.status
        else:
            flash(
                f"Version {new.version} is published. Every parent is asked to accept it before "
                "their family page shows the join link again."
            )
            return redirect(url_for("agreement.edit_agreement"))
    elif request.method == "POST":
        status = 422
    lead_missing = [
        label
        for label, value in (
            ("name", org.safeguarding_contact_name),
            ("email or phone", org.safeguarding_contact_email or org.safeguarding_contact_phone),
        )
        if not (value or "").strip()
    ]
    stale = bool(
        org.safeguarding_contact_email
        and org.safeguarding_contact_email.lower() not in version.body.lower()
    )
    return render_template(
        "families/agreement.html",
        form=form,
        version=version,
        history=agreement.history(session, org.id),
        lead_missing=lead_missing,
        stale=stale,
        default_text=agreement.default_text(org),
    ), status
