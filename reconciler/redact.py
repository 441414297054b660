"""Secrets out of every message: the values of resolved credentials, and the one function that
removes them from text before it is recorded or printed.

Credentials are resolved at the last moment (:func:`reconciler.drivers.base.resolve_secret`,
encryption keys, OAuth2 access tokens, the AWS chain), and each value is registered here as it
is resolved, with the forms it takes when a platform or a library echoes it back: base64 (a
basic-auth header), URL encoding, Python's escaping (``'Bearer abc\\ndef'`` in an
``InvalidHeader`` error), JSON escaping, and each line of a value that holds a newline.
:func:`redact` replaces every registered form in a text with ``[REDACTED]``: a form of six
characters or more wherever it appears, a shorter one (three to five characters, a short
password) where it stands as a whole token, so that ordinary words are left alone; a value
shorter than that is not a credential that could be kept out of messages at all.

It runs where messages are made and where they leave the process: every driver failure
(:class:`reconciler.drivers.base.DriverError` redacts its own message), every event and job
row written to the state file, and every ``error:`` line the CLI prints.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MARK = "[REDACTED]"
MIN_LENGTH = 6  # a form at least this long is removed wherever it appears
SHORT_LENGTH = 3  # shorter forms (down to this) only as a whole token: not inside words

_lock = threading.Lock()
_forms: list[str] = []  # longest first
_short_forms: set[str] = set()
_short: re.Pattern[str] | None = None  # the short forms, each between non-word characters
# what redact() reads, without the lock: replaced whole (one assignment) after each change,
# never changed in place (a list being sorted looks empty to another thread meanwhile)
_snapshot: tuple[tuple[str, ...], re.Pattern[str] | None] = ((), None)


def register(value: str | bytes | None) -> None:
    """Remember a secret value (and the forms it is echoed in) for :func:`redact`."""
    if not value:
        return
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    forms = set(_forms_of(text))
    stripped = text.strip()
    if stripped != text:
        forms |= set(_forms_of(stripped))
    for line in text.splitlines():
        if len(line.strip()) >= MIN_LENGTH:
            forms |= set(_forms_of(line.strip()))
    short = {f for f in forms if SHORT_LENGTH <= len(f) < MIN_LENGTH}
    forms = {f for f in forms if len(f) >= MIN_LENGTH}
    global _short, _snapshot
    with _lock:
        new = forms.difference(_forms)
        if new:
            _forms.extend(new)
            _forms.sort(key=len, reverse=True)
        if short - _short_forms:
            _short_forms.update(short)
            words = sorted(_short_forms, key=len, reverse=True)
            _short = re.compile(
                "|".join(rf"(?<![A-Za-z0-9]){re.escape(f)}(?![A-Za-z0-9])" for f in words)
            )
        _snapshot = (tuple(_forms), _short)


def _forms_of(text: str) -> list[str]:
    raw = text.encode("utf-8")
    encoded = [base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
    return [
        text,
        *(e.decode("ascii") for e in encoded),
        *(e.decode("ascii").rstrip("=") for e in encoded),
        quote(text, safe=""),
        quote_plus(text, safe=""),
        text.encode("unicode_escape").decode("ascii"),
        repr(text)[1:-1],
        json.dumps(text)[1:-1],
    ]


def redact(text: str) -> str:
    """``text`` with every registered secret form replaced by ``[REDACTED]``."""
    if not text:
        return text
    forms, short = _snapshot  # no lock: every event of every job is redacted, on all threads
    for form in forms:
        if form in text:
            text = text.replace(form, MARK)
    return short.sub(MARK, text) if short is not None else text


def redact_value(value: Any) -> Any:
    """:func:`redact` through the strings of a JSON-like value (event details)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def registered() -> int:
    """How many forms are known (for tests and diagnostics; never the values)."""
    with _lock:
        return len(_forms)
