"""SQL statements and time per request of the pages whose cost must not grow with the course.

    .venv/bin/python bench/pages_bench.py [--families 40] [--classes 30] [--requests 50]
                                          [--database-url URL] [--json]

Builds one course (in Zoom and safe, ``--classes`` weekly classes, ``--families`` families of
every kind: see ``tests/test_query_counts.py:build_course``) in a throwaway SQLite database (or
the empty PostgreSQL database ``--database-url`` names), signs the teacher in, opens a parent's
family session, and asks for each page through the app's WSGI interface as a browser would
(no HTTP server: the figures are companion's own work, the database included). Each request has
its own database session, as in production. For each page it prints the SQL statements one
request runs (counted on the engine) and the median wall and CPU time per request.

Run it from the repository root; it measures the code of the tree it is in.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, text  # noqa: E402

from companion import create_app, migrate, sealing  # noqa: E402
from companion.accounts.models import User  # noqa: E402
from companion.accounts.services import hash_password  # noqa: E402
from companion.db import get_engine, job_session, make_engine, utcnow  # noqa: E402
from companion.keysets import fresh_settings  # noqa: E402
from companion.orgs.models import Organisation  # noqa: E402
from companion.recordings.keys import generate_kek_line  # noqa: E402
from tests.test_query_counts import FAMILY_COOKIE, build_course  # noqa: E402

# The teacher of the throwaway database signs in with this.
PASSWORD = secrets.token_urlsafe(16)


def _csrf(html: str) -> str:
    import re

    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert found, "no CSRF token on the sign-in page"
    return found.group(1)


def measure(client: Any, engine: Any, path: str, requests: int) -> dict[str, Any]:
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    for _ in range(3):  # warm: templates compiled, caches filled
        assert client.get(path).status_code == 200, path
    event.listen(engine, "before_cursor_execute", before)
    try:
        assert client.get(path).status_code == 200, path
    finally:
        event.remove(engine, "before_cursor_execute", before)
    walls, cpus = [], []
    for _ in range(requests):
        wall, cpu = time.perf_counter(), time.process_time()
        response = client.get(path)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        assert response.status_code == 200, path
    return {
        "statements": len(statements),
        "median_ms": round(statistics.median(walls) * 1000, 2),
        "median_cpu_ms": round(statistics.median(cpus) * 1000, 2),
    }


def profile(client: Any, path: str, requests: int) -> None:
    """Where the time of ``requests`` requests goes (to stderr, so --json stays parseable)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        client.get(path)
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", type=int, default=40)
    parser.add_argument("--classes", type=int, default=30)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument(
        "--profile", metavar="PAGE", help='also profile one page, e.g. "family page"'
    )
    args = parser.parse_args(argv)
    if args.families < 1 or not 3 <= args.classes <= 60:
        parser.error("--families must be at least 1 and --classes from 3 to 60")
    logging.basicConfig(level=logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="pages-bench-") as tmp:
        folder = Path(tmp)
        db_url = args.database_url or f"sqlite:///{folder / 'companion.db'}"
        if args.database_url:
            engine = make_engine(db_url)
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            engine.dispose()
        migrate.upgrade(db_url)
        app = create_app(
            {
                "SECRET_KEY": secrets.token_urlsafe(48),
                "KEK": generate_kek_line("kek-bench"),
                **fresh_settings(),
                "DATABASE_URL": db_url,
                "LOG_LEVEL": "error",
            },
            instance_path=folder,
            environ={},
        )
        with app.app_context(), job_session(app) as session:
            org = Organisation(name="Bench Music School", timezone="Europe/London")
            session.add(org)
            session.flush()
            teacher = User(
                organisation_id=org.id,
                email="teacher@example.org",
                name="Bench Teacher",
                role="teacher",
                password_hash=hash_password(PASSWORD),
                active=True,
            )
            session.add(teacher)
            session.flush()
            built = build_course(
                session,
                org,
                teacher,
                families=args.families,
                classes=args.classes,
                now=utcnow(),
                sealer=sealing.sealer_for(app),
            )
        engine = get_engine(app)
        staff = app.test_client()
        token = _csrf(staff.get("/login").get_data(as_text=True))
        signed_in = staff.post(
            "/login",
            data={"email": "teacher@example.org", "password": PASSWORD, "csrf_token": token},
        )
        assert signed_in.status_code == 302, signed_in.status_code
        parent = app.test_client()
        parent.set_cookie(FAMILY_COOKIE, built.family_cookie, path="/f/")

        results = {}
        asked = [(staff, built.staff_pages()), (parent, built.family_pages())]
        for client, pages in asked:
            for name, path in pages.items():
                results[name] = measure(client, engine, path, args.requests)
                if name == args.profile:
                    profile(client, path, args.requests)
        engine.dispose()

    report = {
        "database": "postgresql" if args.database_url else "sqlite",
        "families": args.families,
        "classes": args.classes,
        "requests": args.requests,
        "pages": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{report['database']}: one course of {args.families} families and {args.classes} "
        f"classes, {args.requests} requests per page"
    )
    print(f"{'page':<16}{'statements':>11}{'median ms':>11}{'median CPU ms':>15}")
    for name, found in results.items():
        print(
            f"{name:<16}{found['statements']:>11}{found['median_ms']:>11.2f}"
            f"{found['median_cpu_ms']:>15.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
