"""What a YAML scalar means: the YAML 1.2 core schema, as editors and most YAML tools read it.

Called by :mod:`reconciler.manifests.builder` for every scalar of a manifest. PyYAML resolves
plain scalars by YAML 1.1, where ``yes``/``no``/``on``/``off`` are booleans, ``1:30`` is the
base-60 number 90, ``017`` is octal and ``1e3`` is text; an editor (yaml-language-server, YAML
1.2) shows the same file differently, and a manifest must mean what its author sees. So the
parser's events are resolved here instead, by the core schema of YAML 1.2.2 (section 10.3):

======================================  ======================================
plain scalar                            value
======================================  ======================================
``null Null NULL ~`` or nothing         null
``true True TRUE false False FALSE``    a boolean
``[-+]?[0-9]+``                         a decimal integer (``017`` is 17)
``0o[0-7]+``, ``0x[0-9a-fA-F]+``        an octal, a hexadecimal integer
``1.5 .5 1. 1e3 -2.5E-3``               a float
``.inf -.Inf .nan``                     infinity, NaN (the builder refuses them)
anything else                           a string (``yes``, ``on``, ``1:30``, dates)
======================================  ======================================

A quoted scalar is always a string. An explicit tag (``!!int '7'``) must fit its type's forms
in the same table: ``!!bool yes`` is an error, not true.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.manifests.quoting import SHORT

TAG = "tag:yaml.org,2002:"
# what the documents in the manifest cache were resolved by: an entry without it was written by
# a reconcile that read plain scalars by YAML 1.1, and is not used
RESOLUTION = "yaml-1.2-core"

# the words that are not strings; everything else that does not start like a number is one
_WORDS: dict[str, Any] = {
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
}
_NUMBER_START = frozenset("0123456789+-.")
_NUMBER = re.compile(
    r"(?P<int>[-+]?[0-9]+)"
    r"|0o(?P<oct>[0-7]+)"
    r"|0x(?P<hex>[0-9a-fA-F]+)"
    r"|(?P<float>[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)"
    r"|(?P<inf>[-+]?\.(?:inf|Inf|INF))"
    r"|(?P<nan>\.(?:nan|NaN|NAN))"
)
_BASES = {"int": 10, "oct": 8, "hex": 16}

# the plain scalars YAML 1.1 read as booleans or base-60 numbers: strings now, and a manifest
# field that wants a boolean or a number says how to write one (see schema.py)
YAML11_BOOLEANS: dict[str, bool] = {
    variant: meaning
    for word, meaning in (
        *(("yes", True), ("y", True), ("on", True)),
        *(("no", False), ("n", False), ("off", False)),
    )
    for variant in (word, word.title(), word.upper())
}
SEXAGESIMAL = re.compile(  # YAML 1.1's base-60 int and float
    r"[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*"
)


def plain(text: str) -> Any:
    """The value of an untagged plain scalar; ``text`` itself (the same object) for a string.

    Raises ``ValueError`` for a number Python will not convert (a decimal of thousands of
    digits).
    """
    word = _WORDS.get(text, text)
    if word is not text or text[:1] not in _NUMBER_START:
        return word
    match = _NUMBER.fullmatch(text)
    if match is None:
        return text
    return _number(match)


def _number(match: re.Match[str]) -> int | float:
    kind = match.lastgroup or ""
    digits = match[kind]
    if kind in _BASES:
        return int(digits, _BASES[kind])
    if kind == "float":
        return float(digits)
    return float(digits.lower().replace(".", ""))  # 'inf', '-inf', '+inf', 'nan'


def tagged(tag: str, text: str) -> Any:
    """The value of a scalar with an explicit core tag (``!!int``, ``!!float``, ``!!bool``,
    ``!!null``); ``ValueError`` when ``text`` is not one of that type's forms."""
    kind = tag[len(TAG) :]
    if kind in ("bool", "null"):
        value = _WORDS.get(text, text)
        if value is not text and (value is None) == (kind == "null"):
            return value
        raise ValueError(text)
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise ValueError(text)
    if kind == "int" and match.lastgroup in _BASES:
        return _number(match)
    if kind == "float" and match.lastgroup not in ("oct", "hex"):
        return float(_number(match))
    raise ValueError(text)


def yaml11_hint(types: list[Any], text: str) -> str:
    """For a schema error: how to write ``text``, a string where ``types`` (JSON Schema type
    names) are expected, when YAML 1.1 read it as a boolean or a number; or nothing."""
    if "boolean" in types and text in YAML11_BOOLEANS:
        return ": YAML 1.2 reads yes, no, on and off as text; write true or false"
    if ("integer" not in types and "number" not in types) or len(text) > SHORT:
        return ""  # a long value: its digits are not repeated in a message
    if SEXAGESIMAL.fullmatch(text):
        value = _base60(text)
        return (
            f": YAML 1.2 reads it as text, not as base 60 (YAML 1.1 made it {value}); "
            f"write the number in plain digits, such as {value}"
        )
    digits = text.replace("_", "")
    if digits != text and _is_number(digits):
        return f": YAML 1.2 reads it as text; write the number without underscores: {digits}"
    return ""


def _base60(text: str) -> str:
    """What YAML 1.1 made of ``1:30`` (90), to show which number the author meant."""
    sign = -1 if text.startswith("-") else 1
    value = 0.0
    for part in text.lstrip("+-").replace("_", "").split(":"):
        value = value * 60 + float(part)
    value *= sign
    return str(int(value)) if value.is_integer() else str(value)


def _is_number(text: str) -> bool:
    try:
        value = plain(text)
    except ValueError:
        return False
    return isinstance(value, int | float) and not isinstance(value, bool)
