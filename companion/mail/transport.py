"""SMTP delivery with TLS; the only code that opens a connection to a mail server."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from contextlib import AbstractContextManager
from email.message import EmailMessage
from typing import Any


class SmtpSender(AbstractContextManager["SmtpSender"]):
    """One SMTP connection reused for a batch of messages."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        timeout: float = 30,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSender:
        return self

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self.ssl_context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                smtp.starttls(context=self.ssl_context)
        if self.username:
            smtp.login(self.username, self.password)
        return smtp

    def send(self, message: EmailMessage) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.send_message(message)
        except smtplib.SMTPServerDisconnected:
            # The server may close an idle connection between messages; reconnect once.
            self._smtp = self._connect()
            self._smtp.send_message(message)

    def __exit__(self, *exc: Any) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except smtplib.SMTPException:
                pass
            except OSError:
                pass
            self._smtp = None


def sender_from_config(config: dict[str, Any]) -> Callable[[], SmtpSender] | None:
    if not config.get("SMTP_HOST"):
        return None
    return lambda: SmtpSender(
        config["SMTP_HOST"],
        config["SMTP_PORT"],
        security=config["SMTP_SECURITY"],
        username=config["SMTP_USERNAME"] or "",
        password=config["SMTP_PASSWORD"] or "",
    )
