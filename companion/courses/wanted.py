"""What Zoom must be told about a course, recorded with the change that needs it.

A service only sets ``Course.zoom_work`` (with :func:`want`); after the commit :mod:`.zoomwork`
tells Zoom with no transaction open and records the answer in a transaction of its own, so a slow
Zoom never holds the database.
"""

from __future__ import annotations

from .models import Course, ZoomWork


def want(course: Course, work: ZoomWork, *, changed: bool = True, series: bool = False) -> None:
    """Record what Zoom must be told about the course; the work engine tells it after the commit.

    Deleting wins over everything; until the meeting exists every change is part of creating it
    (the create sends the course as it is then). ``changed`` says the course's desired state
    changed, so a step that prepared an older version leaves the work for another run.
    """
    if ZoomWork.DELETE in (course.zoom_work, work):
        course.zoom_work = ZoomWork.DELETE
    elif course.zoom_meeting_id is None:
        course.zoom_work = ZoomWork.CREATE
    else:
        course.zoom_work = ZoomWork.SYNC
    if series:
        course.zoom_resend_series = True
    if changed:
        course.zoom_work_seq = (course.zoom_work_seq or 0) + 1
    # Due now; a claim held by a run in flight still keeps everyone else out.
    course.zoom_next_attempt_at = None


def want_deleted(course: Course) -> None:
    """The meeting must go. A course no attempt ever claimed has nothing in Zoom to delete; any
    other may have a meeting (an attempt that seemed to fail may have made it after all)."""
    if course.zoom_meeting_id is None and not course.zoom_attempts:
        course.zoom_work = ZoomWork.NONE
        course.zoom_next_attempt_at = None
        return
    want(course, ZoomWork.DELETE)
