"""Secrets never travel further than the request that needs them.

Every text a provider sends back passes through one `Redactor` before anything reads it (the
`HttpCaller` answers with a redacted copy of each response, body and headers), so a provider that
echoes the API key in an error, a failed job or a balance cannot copy it into a job record, a tool
result or a log line. The configured secrets are every provider key and every bearer token; each is
removed as written, JSON-escaped and percent-encoded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "[redacted]"
MIN_SECRET = 6
"""Shorter values are not treated as secrets: removing them would garble ordinary text."""


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET:
                forms |= {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}
        # Longest first, so that a secret inside another is not cut in two.
        self._forms = sorted(forms, key=len, reverse=True)
        self._bytes = [(f.encode(), REDACTED.encode()) for f in self._forms]

    def __bool__(self) -> bool:
        return bool(self._forms)

    def text(self, value: str) -> str:
        for form in self._forms:
            if form in value:
                value = value.replace(form, REDACTED)
        return value

    def bytes(self, value: bytes) -> bytes:
        for form, replacement in self._bytes:
            if form in value:
                value = value.replace(form, replacement)
        return value


class RedactingFilter(logging.Filter):
    """Removes every secret from log records, whatever logged them (attached to the log handlers)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactor:
            message = record.getMessage()
            clean = self.redactor.text(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True
