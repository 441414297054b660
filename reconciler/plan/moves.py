"""Moves against the recorded state: under which code the state holds each moved asset.

Called by :mod:`reconciler.plan.planner` with the manifests' moves (Moved documents and the
Assets' ``moved_from``, checked by :mod:`reconciler.manifests.adoption`) and the codes the
state records. A move applies while its old code is recorded and its new one is not: the
desired asset is then joined to the old code's copies, so they are kept, not uploaded again
and not orphaned (apply renames the recorded asset, :mod:`reconciler.apply.objects`). Once
applied a move does nothing; a move whose old code holds nothing and whose new code is not
recorded either is a warning; a new code that holds copies of its own while an old one does
too is an error, since two histories cannot become one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.model import Move
from reconciler.plan.actions import PlanError


@dataclass
class Renames:
    """The moves that apply now (by new code: the recorded code), and the warnings."""

    recorded: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def codes(moves: Mapping[str, Move]) -> list[str]:
    """Every code the moves name, old and new: the ones to look up in the state."""
    return sorted({m.old for m in moves.values()} | {m.new for m in moves.values()})


def resolve(moves: Mapping[str, Move], recorded: set[str]) -> Renames:
    """Which moves apply against a state that records ``recorded`` (of :func:`codes`)."""
    by_new: dict[str, list[Move]] = {}
    for move in moves.values():
        by_new.setdefault(move.new, []).append(move)
    out = Renames()
    idle: dict[tuple[str, str], list[Move]] = {}  # moves with nothing to move, by document
    for new, olds in sorted(by_new.items()):
        held = [m for m in olds if m.old in recorded]
        if held and new in recorded:
            raise PlanError(
                f"{_named(held[0])}: cannot move {held[0].old} to {new}: {new} already has "
                f"copies of its own in the state, and {held[0].old} has copies too"
            )
        if len(held) > 1:
            raise PlanError(
                f"{_named(held[1])}: {held[0].old} and {held[1].old} both have copies in the "
                f"state and both move to {new}; keep one of the moves"
            )
        if held:
            out.recorded[new] = held[0].old
        elif new not in recorded:
            for m in olds:
                idle.setdefault((m.code, str(m.origin)), []).append(m)
    for same in idle.values():
        first = same[0]
        if len(same) == 1:
            out.notes.append(
                f"{_named(first)}: nothing is recorded under {first.old}; the move has nothing "
                "to move"
            )
        else:  # an AssetSet's moved_from: one note for all its files
            out.notes.append(
                f"{_named(first)} and {len(same) - 1} more moves of {first.code}: nothing is "
                "recorded under their old codes; they have nothing to move"
            )
    return out


def _named(move: Move) -> str:
    where = f" at {move.origin}" if move.origin else ""
    return f"the move of {move.old} to {move.new}{where}"


def unrecorded_imports(
    imports: Sequence[tuple[str, str, str]], placed: set[tuple[str, str]]
) -> list[str]:
    """Warnings for the Imports (code, asset, platform) whose asset no rule sends to its
    platform: nothing would use the object."""
    return [
        f"Import {code}: no sync rule sends {asset} to {platform}; the import is ignored"
        for code, asset, platform in imports
        if (asset, platform) not in placed
    ]
