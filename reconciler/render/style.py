"""Terminal colour for the text renderers, as plain ANSI SGR escape sequences.

Used by :mod:`reconciler.render.text`. It makes exactly the sequences ``click.style`` makes for
the few styles the renderers use (a foreground colour, then bold, then the text, then a reset),
so that coloured output stays byte-identical without the renderers importing click (only the
CLI imports click). Whether to colour at all is the caller's decision, passed down as
``color``; these functions never look at the terminal themselves: :func:`wants_color` makes
that decision from what the CLI gives it (``--color``, the environment, whether the stream is a
terminal), the same way for every command.
"""

from __future__ import annotations

from collections.abc import Mapping

# SGR foreground codes, by the names click uses for them
FOREGROUND: dict[str, int] = {
    "black": 30,
    "red": 31,
    "green": 32,
    "yellow": 33,
    "blue": 34,
    "magenta": 35,
    "cyan": 36,
    "white": 37,
    "reset": 39,
    "bright_black": 90,
    "bright_red": 91,
    "bright_green": 92,
    "bright_yellow": 93,
    "bright_blue": 94,
    "bright_magenta": 95,
    "bright_cyan": 96,
    "bright_white": 97,
}
RESET_ALL = "\033[0m"


def style(text: str, fg: str | None = None, bold: bool | None = None) -> str:
    """``text`` in colour ``fg`` and/or bold, followed by a reset of every attribute."""
    codes = []
    if fg is not None:
        codes.append(f"\033[{FOREGROUND[fg]}m")
    if bold is not None:
        codes.append(f"\033[{1 if bold else 22}m")
    return "".join(codes) + text + RESET_ALL


def paint(text: str, color: bool, fg: str | None = None, bold: bool | None = None) -> str:
    """``text`` styled when ``color`` is on (and a style is given), as it is otherwise."""
    if not color or (not fg and bold is None):
        return text
    return style(text, fg or None, bold)


COLOR_CHOICES = ("auto", "always", "never")  # the global --color option


def wants_color(choice: str, env: Mapping[str, str], isatty: bool) -> bool:
    """Whether to colour, from ``--color`` (``choice``), the environment and the terminal.

    ``always`` and ``never`` win over everything. ``auto`` follows the conventions: a
    non-empty ``NO_COLOR`` (no-color.org) means no colour, then a non-empty ``FORCE_COLOR``
    (force-color.org) means colour even into a pipe, and otherwise colour on a terminal only.
    """
    if choice == "always":
        return True
    if choice == "never":
        return False
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    return isatty
