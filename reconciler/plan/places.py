"""Where platforms keep their objects, and which share a place: a local target inside
another's, or one bucket on one endpoint under a longer prefix.

Called by :func:`reconciler.plan.desired.load_desired` (the planner then counts a copy one
platform records as held at its key on the other: a copy never goes over another) and by
discovery (:mod:`reconciler.adopting`: another platform's copies are never importable).
Reads the model only; on local targets it resolves the folders' real paths.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from reconciler.model import Platform


def base_of(inner: Platform, outer: Platform) -> str | None:
    """Where ``inner``'s keys start among ``outer``'s keys ('' for the same place, 'sub/' for
    a folder or a prefix inside it); None when they share no place."""
    if inner.driver != outer.driver:
        return None
    if outer.driver == "local" and outer.target is not None and inner.target is not None:
        inside, around = os.path.realpath(inner.target), os.path.realpath(outer.target)
        if inside == around:
            return ""
        if inside.startswith(around + os.sep):
            return inside[len(around) + 1 :].replace(os.sep, "/") + "/"
        return None
    if outer.driver == "s3":
        where = ("bucket", "endpoint_url", "region")
        if any(inner.driver_config.get(k) != outer.driver_config.get(k) for k in where):
            return None
        around, inside = (
            str(outer.driver_config.get("prefix", "")),
            str(inner.driver_config.get("prefix", "")),
        )
        if inside.startswith(around):
            return inside[len(around) :]
    return None


def overlaps(platforms: Mapping[str, Platform]) -> dict[str, list[tuple[str, str]]]:
    """For each platform that shares its place with others: (the other, the base of this
    one's keys among the other's) for each of them."""
    out: dict[str, list[tuple[str, str]]] = {}
    for inner in platforms.values():
        for outer in platforms.values():
            if inner.code != outer.code:
                base = base_of(inner, outer)
                if base is not None:
                    out.setdefault(inner.code, []).append((outer.code, base))
    return out
