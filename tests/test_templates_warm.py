"""`companion serve` compiles every template before its threads start (see warm_templates)."""

from __future__ import annotations

from companion.web import warm_templates


def test_every_template_compiles_up_front(app):
    count = warm_templates(app)
    names = app.jinja_env.list_templates(extensions=["html"])
    assert count >= len(names) > 20
    # Compiled once: a second lookup is served from Jinja's cache, not compiled again.
    first = app.jinja_env.get_template("base.html")
    assert app.jinja_env.get_template("base.html") is first
