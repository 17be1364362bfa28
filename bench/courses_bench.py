"""Create many courses and run the drift check over all of them against the Zoom sandbox.

    .venv/bin/python bench/courses_bench.py [--courses 50] [--classes 12] [--drifted 5]
                                            [--unreachable 5] [--json]

Everything runs in this process: a throwaway SQLite database, the sandbox app on a loopback
port (werkzeug, in a thread), and companion's real Zoom client talking HTTP to it, so the
figures include the client's token fetch, JSON, HTTP and its rate-limit budget (Zoom's Pro-plan
rates, the default). Phases:

1. create: ``--courses`` courses of ``--classes`` weekly classes each through the courses
   service (create, read back, verify); the first ``--unreachable`` creates meet a 503 from
   "Zoom" and stay pending in Zoom;
2. retry: the ``retry_pending`` job creates those (each attempt first lists the host's meetings
   to find one an earlier attempt may have made);
3. drift check, clean: the ``drift_check`` job over every course, nothing drifted;
4. drift check, drifted: ``--drifted`` meetings are changed in "Zoom's portal" first (waiting
   room off, join before host on), so the job puts them back.

For each phase it prints the Zoom API requests per operation (from ``ZoomClient.calls``), the
requests per course and the wall time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import random
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from companion import create_app, migrate
from companion.accounts.models import User
from companion.courses import jobs, provisioning, verification
from companion.courses import schedule as sched
from companion.courses.models import Course
from companion.db import job_session, utcnow
from companion.keysets import fresh_settings
from companion.orgs.models import Organisation
from companion.recordings.keys import generate_kek_line
from companion.zoom import EXTENSION_KEY, client_from_config
from companion.zoom.sandbox import create_sandbox_app


def serve(app: Any) -> tuple[Any, str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def phase(name: str, client: Any, run: Any, courses: int) -> dict[str, Any]:
    before = Counter(client.calls)
    started = time.perf_counter()
    result = run()
    wall = time.perf_counter() - started
    calls = Counter(client.calls)
    calls.subtract(before)
    calls = +calls  # drop zeros
    total = sum(calls.values())
    return {
        "phase": name,
        "courses": courses,
        "calls": dict(sorted(calls.items())),
        "total_calls": total,
        "calls_per_course": round(total / courses, 2) if courses else 0,
        "wall_seconds": round(wall, 3),
        "result": result,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--courses", type=int, default=50)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--drifted", type=int, default=5)
    parser.add_argument("--unreachable", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    if not 0 <= args.unreachable <= args.courses or not 0 <= args.drifted <= args.courses:
        parser.error("--unreachable and --drifted must be between 0 and --courses")
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per sandbox request
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="courses-bench-") as tmp:
        folder = Path(tmp)
        sandbox_app = None
        server, sandbox_url = serve(lambda environ, start: sandbox_app(environ, start))
        sandbox_app = create_sandbox_app(
            str(folder / "sandbox.sqlite3"),
            webhook_url=None,
            webhook_secret=secrets.token_urlsafe(32),
            public_url=sandbox_url,
        )
        sandbox = sandbox_app.extensions["zoom_sandbox"]

        db_url = f"sqlite:///{folder / 'companion.db'}"
        migrate.upgrade(db_url)
        app = create_app(
            {
                "SECRET_KEY": secrets.token_urlsafe(48),
                # Recordings' key-encryption key (create_app refuses to start without one).
                "KEK": generate_kek_line("kek-bench"),
                # And the data-sealing and pack-signing keys (README, "Keys").
                **fresh_settings(),
                "DATABASE_URL": db_url,
                "SANDBOX_URL": sandbox_url,
                "LOG_LEVEL": "error",
            },
            instance_path=folder,
            environ={},
        )
        client = client_from_config(app.config)
        app.extensions[EXTENSION_KEY] = client

        with app.app_context():
            with job_session(app) as session:
                org = Organisation(name="Bench Music School", timezone="Europe/London")
                session.add(org)
                session.flush()
                teacher = User(
                    organisation_id=org.id,
                    email="teacher@example.org",
                    name="Bench Teacher",
                    role="teacher",
                )
                lead = User(
                    organisation_id=org.id,
                    email="lead@example.org",
                    name="Bench Lead",
                    role="safeguarding_lead",
                )
                session.add_all([teacher, lead])
            teacher_id = teacher.id

            if args.unreachable:
                sandbox.add_fault(
                    {
                        "path": "/v2/users/*/meetings",
                        "method": "POST",
                        "status": 503,
                        "count": args.unreachable,
                    }
                )
            today = utcnow().date()
            zones = ["Europe/London", "Europe/Paris", "America/New_York", "Australia/Sydney"]

            def create_all() -> dict[str, int]:
                states: Counter[str] = Counter()
                for n in range(args.courses):
                    first = today + dt.timedelta(days=7 + rng.randrange(60))
                    days = {sched.WEEKDAYS[first.weekday()]}
                    if rng.random() < 0.4:
                        days.add(rng.choice(sched.WEEKDAYS))
                    series = sched.Series(
                        first_date=first,
                        weekdays=tuple(days),
                        start_time=dt.time(rng.randrange(15, 19), rng.choice((0, 15, 30, 45))),
                        duration_minutes=rng.choice((30, 45, 60)),
                        timezone=rng.choice(zones),
                        class_count=args.classes,
                    )
                    with job_session(app) as session:
                        actor = session.get(User, teacher_id)
                        outcome = provisioning.create_course(
                            session,
                            actor=actor,
                            title=f"Bench course {n + 1}",
                            series=series,
                            now=utcnow(),
                        )
                        states[outcome.course.zoom_state] += 1
                return dict(states)

            results = [phase("create", client, create_all, args.courses)]
            # Pending courses are due a minute after their attempt; the job runs "later".
            later = utcnow() + dt.timedelta(minutes=5)
            results.append(
                phase(
                    "retry pending",
                    client,
                    lambda: jobs.retry_pending(app, now=later),
                    args.unreachable,
                )
            )
            results.append(
                phase("drift check (clean)", client, lambda: jobs.drift_check(app), args.courses)
            )
            with job_session(app) as session:
                ids = [c.zoom_meeting_id for c in session.query(Course).order_by(Course.id)]
            for meeting_id in rng.sample(ids, args.drifted):
                sandbox.tamper_settings(
                    meeting_id, {"waiting_room": False, "join_before_host": True}
                )
            results.append(
                phase(
                    f"drift check ({args.drifted} drifted)",
                    client,
                    lambda: jobs.drift_check(app),
                    args.courses,
                )
            )
            with job_session(app) as session:
                courses = session.query(Course).all()
                summary = {
                    "courses": len(courses),
                    "safe": sum(verification.course_is_safe(c) for c in courses),
                    "meetings_in_sandbox": len(list(client.iter_meetings("me"))),
                    "classes": sum(len(c.classes) for c in courses),
                }
        server.shutdown()
        client.close()
        sandbox.close()

    if args.json:
        print(json.dumps({"phases": results, "summary": summary}, indent=2))
        return 0
    print(f"{args.courses} courses x {args.classes} classes against the Zoom sandbox")
    print(f"{'phase':<28} {'courses':>7} {'calls':>6} {'per course':>10} {'wall s':>8}  calls")
    for r in results:
        detail = ", ".join(f"{k}={v}" for k, v in r["calls"].items())
        print(
            f"{r['phase']:<28} {r['courses']:>7} {r['total_calls']:>6} "
            f"{r['calls_per_course']:>10} {r['wall_seconds']:>8.2f}  {detail}"
        )
        print(f"{'':<28} result: {r['result']}")
    print(
        f"end state: {summary['safe']}/{summary['courses']} courses safe, "
        f"{summary['meetings_in_sandbox']} meetings in the sandbox, {summary['classes']} classes"
    )
    ok = summary["safe"] == summary["courses"] == summary["meetings_in_sandbox"] == args.courses
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
