"""Courses: weekly classes run as one Zoom meeting each, with the safety settings enforced.

companion creates the Zoom meeting behind each course, proves it is safe, keeps it so, and closes
it. The services take a Session and plain values (plus the acting user and ``now``), flush, and
never commit; each module is one subject:

* :mod:`.access`: who may see and change a course.
* :mod:`.provisioning`: creating a course, and trying again.
* :mod:`.changes`: moving or cancelling a class, changing the course, cancelling it, a new
  passcode.
* :mod:`.verification`: what the meeting must be, reading it back and verifying it, the alarms,
  "Re-check now" and the drift check's request.
* :mod:`.lifecycle`: starting a class, the jobs' queries, closing a finished course.
* :mod:`.timetable` (the series and classes), :mod:`.passcodes`, :mod:`.wanted` (what Zoom must
  be told), :mod:`.events` (the signals other packages hear) and :mod:`.presentation` (what the
  pages show) are shared by them; :mod:`.schedule` and :mod:`.safety` are pure rules.

Rules the rest of companion relies on:

* Nothing reaches Zoom until the whole input is valid (see :mod:`.schedule`).
* After every create or change the meeting is read back and compared with what companion asked
  for (:mod:`.safety`); a course whose meeting differs is "not safe", the setting is named, the
  teacher and the safeguarding lead(s) are mailed, and
  :func:`.verification.course_is_safe` says no.
* No service calls Zoom. A change is saved with what Zoom must be told (``zoom_work``, see
  :func:`.wanted.want`); after the commit :mod:`.zoomwork` tells Zoom with no transaction open and
  records the answer in a transaction of its own, so a slow Zoom never holds the database.
* Zoom being down, slow or rate limiting never loses a course: it is kept "pending in Zoom" and
  created later, first looking for a meeting an earlier attempt may already have made (by the
  reference written into the agenda), so no course is created twice.
* The passcode is stored encrypted and never logged; the host's start link is fetched when the
  teacher presses "Start class" and is never stored or logged.
"""
