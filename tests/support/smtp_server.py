"""A local SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.http import free_port


class SmtpServer:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()  # aiosmtpd cannot report the port it got for port 0
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def url(self, to: str = "alerts@example.org") -> str:
        """An Apprise mailto:// URL delivering to this server without TLS."""
        return f"mailto://127.0.0.1:{self.port}?from=ringwatch@example.org&to={to}&mode=insecure"

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
