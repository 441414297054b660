"""The checks of Import and Moved documents (and an Asset's ``moved_from``), and their model.

Called by :mod:`reconciler.manifests.validate` once every asset is known, generated ones
included. What a manifest alone can tell is checked here, with the file and line of each
problem: an Import names a declared asset and platform, one object per (asset, platform) and
one asset per object; a move goes from a code no Asset or AssetSet declares any more to one
that is declared, and no old code moves twice. What only the recorded state can tell (the old
code holds nothing, or two codes of one asset both hold copies) is the planner's to say
(:mod:`reconciler.plan.moves`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from reconciler.manifests.assetsets import make_code
from reconciler.manifests.build import import_, moved
from reconciler.manifests.declared import Declared, Report, Reports
from reconciler.manifests.locate import Locator
from reconciler.manifests.problems import ERROR, Anchor, Path
from reconciler.manifests.quoting import suggest
from reconciler.model import Asset, AssetSet, Import, Move, Platform

SHOWN = 5  # problems reported per document; an AssetSet's moved_from makes many moves
_Candidate = tuple[Move, Declared, tuple[str, ...], tuple[str, ...]]


@dataclass
class AdoptionChecks:
    """The Import and Moved checks of one validation run."""

    reports: Reports
    locator: Locator
    assets: Mapping[str, Asset]
    platforms: Mapping[str, Platform]
    asset_items: Mapping[str, Declared]  # the Asset documents by code (for moved_from)
    asset_sets: Mapping[str, AssetSet] = field(default_factory=dict)

    def imports(self, items: Iterable[Declared]) -> dict[tuple[str, str], Import]:
        """The valid Imports by (asset, platform); every problem reported."""
        found: dict[tuple[str, str], tuple[Import, Declared]] = {}
        ids: dict[tuple[str, str], Declared] = {}
        for item in items:
            if not item.valid:
                continue
            declared = import_(item)
            report = self.reports.on(item)
            ok = self._known(declared.asset, self.assets, "asset", report, ("spec", "asset"))
            ok &= self._known(
                declared.platform, self.platforms, "platform", report, ("spec", "platform")
            )
            pair = (declared.asset, declared.platform)
            if pair in found:
                where = self._where(found[pair][1], ("spec", "asset"))
                report(
                    ("spec", "asset"),
                    "duplicate-import",
                    f"{declared.asset} on {declared.platform} is already imported at {where}",
                )
                ok = False
            same = (declared.platform, declared.remote_id)
            if same in ids:
                where = self._where(ids[same], ("spec", "id"))
                report(
                    ("spec", "id"),
                    "duplicate-import",
                    f"the object {declared.remote_id!r} on {declared.platform} is already "
                    f"imported at {where}; one object is one asset's copy",
                )
                ok = False
            if ok:
                found[pair] = (declared, item)
                ids[same] = item
        return {pair: declared for pair, (declared, _) in found.items()}

    def moves(
        self, items: Iterable[Declared], set_items: Mapping[str, Declared] | None = None
    ) -> dict[str, Move]:
        """The valid moves by their old code, from Moved documents and from the Assets' and
        AssetSets' ``moved_from`` (``set_items``: the AssetSet documents by code); every
        problem reported, at most :data:`SHOWN` per document."""
        found: dict[str, _Candidate] = {}
        candidates: list[_Candidate] = []
        for item in items:
            if item.valid:
                candidates.append((moved(item), item, ("spec", "from"), ("spec", "to")))
        for code, asset in self.assets.items():
            declared = self.asset_items.get(code)
            if declared is None or not asset.moved_from:
                continue
            for old in asset.moved_from:
                move = Move(code, old, code, asset.origin)
                path = ("spec", "moved_from")
                candidates.append((move, declared, path, path))
        candidates += self._set_moves(set_items)
        refused: dict[int, int] = {}  # per document: moves refused (an AssetSet's are many)
        for candidate in candidates:
            move, item, old_path, _ = candidate
            report = self._limited(item, refused)
            if not self._move_ok(move, report, old_path):
                continue
            if move.old in found:
                first, first_item, first_path, _ = found[move.old]
                where = self._where(first_item, first_path)
                report(
                    old_path,
                    "duplicate-move",
                    f"{move.old} already moves to {first.new} at {where}; a code moves once",
                )
                continue
            found[move.old] = candidate
        return self._chained(found, refused)

    def _chained(self, found: dict[str, _Candidate], refused: dict[int, int]) -> dict[str, Move]:
        """Each move to the asset its chain ends at (A to A2, kept after it was applied, and
        A2 to A3 later: A moves to A3 too); a chain that ends at no asset, or runs in a
        circle, is an error."""
        out: dict[str, Move] = {}
        for old, (move, item, _, new_path) in found.items():
            seen, new = {old}, move.new
            while new not in self.assets and new in found and new not in seen:
                seen.add(new)
                new = found[new][0].new
            if new in self.assets:
                out[old] = replace(move, new=new)
                continue
            report = self._limited(item, refused)
            if new in seen:
                report(new_path, "move", f"the moves from {move.old} run in a circle: {new} "
                       "moves back; a code can only move to a declared asset")  # fmt: skip
            else:
                self._known(new, self.assets, "asset", report, new_path)
        return out

    def _set_moves(self, set_items: Mapping[str, Declared] | None) -> list[_Candidate]:
        """Each generated asset's move from the code its set's earlier template gives."""
        out: list[_Candidate] = []
        earlier: dict[str, AssetSet] = {}
        for code, item in (set_items or {}).items():
            aset = self.asset_sets.get(code)
            if aset is not None and aset.moved_from and item.valid:
                earlier[code] = replace(aset, code_template=aset.moved_from)
        if not earlier:
            return out
        path = ("spec", "moved_from")
        for asset in self.assets.values():
            old_set = earlier.get(asset.asset_set or "")
            if old_set is None:
                continue
            old = make_code(old_set, asset.file)
            if old != asset.code:
                item = (set_items or {})[old_set.code]
                out.append((Move(old_set.code, old, asset.code, asset.origin), item, path, path))
        return out

    def _limited(self, item: Declared, refused: dict[int, int]) -> Report:
        """The document's Report, quiet after :data:`SHOWN` problems (then one more line
        saying how many were left out, when the checks end)."""
        report = self.reports.on(item)

        def limited(
            path: Path, error: str, message: str, anchor: Anchor = "value", severity: str = ERROR
        ) -> None:
            seen = refused.get(id(item), 0)
            refused[id(item)] = seen + 1
            if seen < SHOWN:
                report(path, error, message, anchor, severity)
            elif seen == SHOWN:
                report(path, error, "... and more moves of this document are refused likewise")

        return limited

    def _move_ok(self, move: Move, report: Report, old_path: tuple[str, ...]) -> bool:
        if move.old == move.new:
            report(old_path, "move", f"{move.old} moves to itself; remove the move")
            return False
        if move.old in self.assets:
            where = self._asset_where(move.old)
            report(
                old_path,
                "move",
                f"{move.old} is still declared{where}: the old code of a move must not be an "
                "asset any more (rename the asset, or remove the move)",
            )
            return False
        return True

    def _known(
        self,
        code: str,
        known: Mapping[str, object],
        what: str,
        report: Report,
        path: tuple[str, ...],
    ) -> bool:
        if code in known:
            return True
        report(path, "reference", f"unknown {what} '{code}'{suggest(code, known)}")
        return False

    def _asset_where(self, code: str) -> str:
        item = self.asset_items.get(code)
        if item is not None:
            return f" at {self._where(item, ('metadata', 'code'))}"
        origin = self.assets[code].origin
        return f" (generated by the AssetSet at {origin})" if origin else ""

    def _where(self, item: Declared, path: tuple[str, ...]) -> str:
        return self.locator.where(item.origin.file, item.origin.doc_index, path)
