"""SMTP delivery with TLS; the only code that opens a connection to a mail server.

Failures come in two kinds, because the worker treats them differently:

* :class:`SmtpUnavailable`: no message can go out right now (connection refused, TLS or
  certificate failure, wrong password, the server vanished). The worker stops the batch.
* :class:`SmtpRejected`: the server refused this one message (e.g. ``550`` for its recipient)
  but the connection is fine, so the worker carries on with the next message.
* :class:`SmtpUncertain`: the connection failed (timeout, reset) after the message itself was
  handed over (the ``DATA`` command had started), so the server may have accepted it. Sending it
  again could be a second email; the outbox marks it "may have been sent" instead (``jobs.py``).

Otherwise the message stays in the outbox and is retried later; nothing here drops one.
"""

from __future__ import annotations

import ipaddress
import logging
import smtplib
import ssl
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from typing import Any

log = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "tls", "none")


class SmtpError(Exception):
    """Delivery of a message failed; it stays pending and is retried."""


class SmtpUnavailable(SmtpError):
    """The server cannot be used at the moment; no message in this batch can be sent."""


class SmtpUncertain(SmtpError):
    """The server may or may not have accepted the message: never retried automatically."""


class SmtpRejected(SmtpError):
    """The server refused this message; others may still go through the same connection."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


class _NotesData:
    """Remembers that the DATA command started: from then on a lost connection may hide a
    message the server has accepted (the classic duplicate window of RFC 1047)."""

    data_started = False

    def data(self, msg: Any) -> Any:
        self.data_started = True
        return super().data(msg)  # type: ignore[misc]


class _Smtp(_NotesData, smtplib.SMTP):
    pass


class _SmtpSsl(_NotesData, smtplib.SMTP_SSL):
    pass


class SmtpSender(AbstractContextManager["SmtpSender"]):
    """One SMTP connection, opened on the first message and reused for a batch."""

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
        ca_file: str | None = None,
        local_hostname: str | None = None,
    ):
        if security not in SECURITY_MODES:
            raise ValueError(f"SMTP security must be one of {', '.join(SECURITY_MODES)}")
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        # The default context verifies the certificate and the host name; a private CA is
        # added through ca_file rather than by switching verification off.
        self.ssl_context = ssl_context or ssl.create_default_context(cafile=ca_file or None)
        self.local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSender:
        return self

    @property
    def connected(self) -> bool:
        return self._smtp is not None

    def _connect(self) -> smtplib.SMTP:
        if self.username and self.security == "none" and not _is_loopback(self.host):
            raise SmtpUnavailable(
                "refusing to send the SMTP password without TLS; set SMTP_SECURITY to "
                "starttls or tls"
            )
        smtp: smtplib.SMTP | None = None
        try:
            if self.security == "tls":
                smtp = _SmtpSsl(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self.ssl_context,
                )
            else:
                smtp = _Smtp(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
                if self.security == "starttls":
                    # Raises SMTPNotSupportedError when the server does not offer STARTTLS:
                    # never fall back to sending in the clear.
                    smtp.starttls(context=self.ssl_context)
            if self.username:
                smtp.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            self._abandon(smtp)
            raise SmtpUnavailable(
                f"SMTP login refused: {_reply(exc.smtp_code, exc.smtp_error)}"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
            self._abandon(smtp)
            raise SmtpUnavailable(
                f"cannot use SMTP server {self.host}:{self.port}: {type(exc).__name__}: {exc}"
            ) from exc
        return smtp

    @staticmethod
    def _abandon(smtp: smtplib.SMTP | None) -> None:
        if smtp is None:
            return
        with suppress(OSError):
            smtp.close()

    def send(self, message: EmailMessage, *, to_addrs: Sequence[str] | None = None) -> None:
        """Send one message to exactly one recipient, or raise an :class:`SmtpError`."""
        if to_addrs is None:
            fields = [v for h in ("To", "Cc", "Bcc") for v in message.get_all(h, [])]
            to_addrs = [addr for _name, addr in getaddresses(fields) if addr]
        if len(to_addrs) != 1:
            raise ValueError("every message goes to exactly one recipient")
        from_addr = parseaddr(str(message["From"]))[1] or None
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._send_once(message, from_addr, to_addrs)
        except smtplib.SMTPServerDisconnected as exc:
            if getattr(self._smtp, "data_started", False):
                self._drop()
                raise SmtpUncertain(
                    f"the connection was lost after the message was handed over: {exc}"
                ) from exc
            # Servers close idle connections between messages; one fresh connection is enough
            # to tell an idle timeout from a server that is really gone.
            self._abandon(self._smtp)
            self._smtp = None
            self._smtp = self._connect()
            try:
                self._send_once(message, from_addr, to_addrs)
            except smtplib.SMTPServerDisconnected as exc:
                started = getattr(self._smtp, "data_started", False)
                self._drop()
                if started:
                    raise SmtpUncertain(
                        f"the connection was lost after the message was handed over: {exc}"
                    ) from exc
                raise SmtpUnavailable(f"SMTP server closed the connection: {exc}") from exc

    def _send_once(self, message: EmailMessage, from_addr: str | None, to: Sequence[str]) -> None:
        assert self._smtp is not None
        self._smtp.data_started = False  # type: ignore[attr-defined]
        try:
            self._smtp.send_message(message, from_addr=from_addr, to_addrs=list(to))
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise SmtpRejected(f"recipient refused: {_reply(code, text)}", code) from exc
        except smtplib.SMTPSenderRefused as exc:
            raise SmtpRejected(
                f"sender refused: {_reply(exc.smtp_code, exc.smtp_error)}", exc.smtp_code
            ) from exc
        except smtplib.SMTPDataError as exc:
            raise SmtpRejected(
                f"message refused: {_reply(exc.smtp_code, exc.smtp_error)}", exc.smtp_code
            ) from exc
        except smtplib.SMTPServerDisconnected:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            # A timeout or a reset mid-conversation leaves the connection in an unknown state.
            started = getattr(self._smtp, "data_started", False)
            self._drop()
            if started:
                raise SmtpUncertain(
                    f"no answer after the message was handed over: {type(exc).__name__}: {exc}"
                ) from exc
            raise SmtpUnavailable(f"SMTP failed: {type(exc).__name__}: {exc}") from exc

    def _drop(self) -> None:
        self._abandon(self._smtp)
        self._smtp = None

    def __exit__(self, *exc: Any) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._abandon(self._smtp)
            self._smtp = None


def sender_from_config(config: Mapping[str, Any]) -> Callable[[], SmtpSender] | None:
    """A factory of senders for the configured server, or None when mail is held."""
    if not config.get("SMTP_HOST"):
        return None

    def make() -> SmtpSender:
        return SmtpSender(
            config["SMTP_HOST"],
            config["SMTP_PORT"],
            security=config["SMTP_SECURITY"],
            username=config.get("SMTP_USERNAME") or "",
            password=config.get("SMTP_PASSWORD") or "",
            ca_file=config.get("SMTP_CA_FILE") or None,
            timeout=float(config.get("SMTP_TIMEOUT") or 30),
        )

    return make
