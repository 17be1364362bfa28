"""One policy: the navigation offers each role exactly the pages it may open, and the object
rules the services enforce are the ones the pages ask before offering a button."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask

from companion import policy
from companion.access import ADMIN, LEAD, TEACHER

from . import factories
from .conftest import Browser


@pytest.mark.parametrize("role", [TEACHER, LEAD, ADMIN])
def test_every_page_the_menu_offers_opens_and_no_other_is_offered(
    app: Flask, db_session: Any, browser: Browser, role: str
) -> None:
    org = factories.organisation(db_session)
    person = factories.user(db_session, org, role=role)
    browser.login(person.email)
    home = browser.client.get("/").get_data(as_text=True)
    nav = re.search(r"<nav[^>]*>(.*?)</nav>", home, re.S)
    assert nav, "the page has no navigation"
    offered = re.findall(r'href="([^"]+)"', nav.group(1))
    with app.test_request_context():
        url = {i.endpoint: app.url_for(i.endpoint) for i in policy.NAV}
    expected = [url[i.endpoint] for i in policy.NAV if policy.may_visit(person, i.endpoint)]
    assert [h for h in offered if h in url.values()] == expected
    for href in expected:
        assert browser.client.get(href).status_code == 200, href
    # What the menu leaves out is refused to this role.
    for item in policy.NAV:
        if not policy.may_visit(person, item.endpoint):
            assert browser.client.get(url[item.endpoint]).status_code in (403, 404), item


def person(role: str, org: int = 1, uid: int = 10) -> Any:
    return SimpleNamespace(role=role, organisation_id=org, id=uid)


def course(teacher_id: int = 10, org: int = 1) -> Any:
    return SimpleNamespace(teacher_id=teacher_id, organisation_id=org)


@pytest.mark.parametrize(
    ("who", "change", "rotate", "links"),
    [
        (person(TEACHER), True, True, True),  # the course's own teacher
        (person(TEACHER, uid=11), False, False, False),  # another teacher
        (person(ADMIN, uid=2), True, True, True),
        (person(ADMIN, org=2, uid=2), False, False, False),  # another organisation's admin
        (person(LEAD, uid=3), False, True, True),  # the lead re-keys, never reschedules
        (person(LEAD, org=2, uid=3), False, False, False),
    ],
)
def test_the_course_rules(who: Any, change: bool, rotate: bool, links: bool) -> None:
    assert policy.may_change_course(who, course()) is change
    assert policy.may_rotate_passcode(who, course()) is rotate
    assert policy.may_manage_links(who, course()) is links
