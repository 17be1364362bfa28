"""What each email says: one plain-text template per kind of message, in ``templates/email/``.

A template is written as the message reads: its first line is ``Subject: ...``, then a blank
line, then the body. The services choose who is told and pass the facts; the words live in the
template, where they can be read and changed in one place. Plain text only: nothing is escaped
(there is no markup to inject into), and the subject is kept to one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from jinja2 import Environment

_ENV_KEY = "companion.mail.templates"


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


def _environment() -> Environment:
    env = current_app.extensions.get(_ENV_KEY)
    if env is None:
        # The app's loader, filters and globals, but for text: no HTML escaping, and the
        # template's own line breaks kept exactly (a block tag leaves no blank line behind).
        env = current_app.jinja_env.overlay(
            autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True
        )
        current_app.extensions[_ENV_KEY] = env
    return env


def template_name(kind: str) -> str:
    return f"email/{kind}.txt"


def render(kind: str, **context: Any) -> Message:
    """The subject and body of a message of this kind, with these facts."""
    text = _environment().get_template(template_name(kind)).render(**context)
    head, sep, body = text.partition("\n\n")
    if not sep or not head.startswith("Subject: "):
        raise ValueError(f"{template_name(kind)} must start with 'Subject: ...' and a blank line")
    subject = " ".join(head.removeprefix("Subject: ").split())
    return Message(subject, body)
