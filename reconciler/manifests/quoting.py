"""How values from a manifest appear in validation messages: short ones quoted, others described.

Validation output goes to CI logs and pull-request comments, so a message must never repeat
what a manifest holds beyond a few characters: a credential pasted into the wrong field, or a
file that was never meant to be a manifest, would otherwise be published with the error. Every
message of :mod:`reconciler.manifests.schema`, the loader (:mod:`~reconciler.manifests.builder`),
:mod:`~reconciler.manifests.declared`, :mod:`~reconciler.manifests.crossrefs` and
:mod:`~reconciler.manifests.generate` that shows a value goes through :func:`quote` or
:func:`describe`:

* a string of at most :data:`SHORT` printable characters is quoted (``'partial'``), a mapping
  key (a field name) of at most :data:`SHORT_KEY`;
* so is a near miss of a name the schema or the manifests already know (a typo of an enum
  value, a field name or a code: it reveals nothing that is not public already);
* anything else is described by its length (``a string of 43 characters``), and so is any
  text with a control character in it.

:func:`printable` makes a file name from disk safe for a one-line message.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

SHORT = 16  # characters of a value that a message may quote
SHORT_KEY = 32  # of a key: field names are longer than values such as 'partial'
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def suggest(word: Any, choices: Iterable[Any]) -> str:
    """'; did you mean X?' when a close match exists, else an empty string."""
    match = closest(word, choices)
    return f"; did you mean '{match}'?" if match else ""


def closest(word: Any, choices: Iterable[Any]) -> str | None:
    """The known name closest to ``word`` (case-insensitive), when one is close enough."""
    by_lower = {str(c).lower(): str(c) for c in choices}
    match = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def quotable(text: str, known: Iterable[Any] = (), limit: int = SHORT) -> bool:
    """Whether a message may show ``text`` itself."""
    if _CONTROL.search(text):
        return False
    return len(text) <= limit or closest(text, known) is not None


def quote(text: str, known: Iterable[Any] = (), noun: str = "value", limit: int = SHORT) -> str:
    """``'text'`` when it may be shown, else ``(a value of 43 characters)``."""
    if quotable(text, tuple(known), limit):
        return f"'{text}'"
    return f"({_sized(noun, text)})"


def quote_key(key: str, known: Iterable[Any] = ()) -> str:
    """A mapping key in a message: ``'plaform_name'``, or ``(a name of 80 characters)``."""
    return quote(key, known, noun="name", limit=SHORT_KEY)


def path_key(key: str) -> str:
    """A key inside a field path (``spec.KEY``): itself, or ``<a name of 80 characters>``."""
    return key if quotable(key, limit=SHORT_KEY) else f"<{_sized('name', key)}>"


def _sized(noun: str, text: str) -> str:
    article = "an" if noun[:1] in "aeiou" else "a"
    return f"{article} {noun} of {len(text)} characters"


def describe(value: Any, known: Iterable[Any] = ()) -> str:
    """A short description of a YAML value, for messages: its type, and its text when short."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        known = tuple(known)
        if quotable(value, known):
            return f"the string '{value}'"
        return f"a string of {len(value)} characters"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def printable(text: str) -> str:
    """``text`` with control characters (a newline, an escape) written as ``\\n``, ``\\x1b``.

    For names that come from the file system, such as a media file matched by a glob: they are
    what a message is about, so they are shown, but they must not break its single line.
    """
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: repr(m[0])[1:-1], text)
