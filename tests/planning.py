"""A small world for planning tests: manifests and media in a temporary folder, a real state
(a DuckDB file, or the ``state_at`` fixture's state of either backend), and a stand-in for a
successful apply that records what the plan said it would do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reconciler.apply.objects import record_objects
from reconciler.apply.run import ApplyOptions, ApplyResult, apply_plan, recover
from reconciler.manifests.validate import validate_tree
from reconciler.model import ManifestSet
from reconciler.plan.actions import Action, Plan, remote_key
from reconciler.plan.desired import fingerprint
from reconciler.plan.planner import PlanOptions, make_plan
from reconciler.store.db import Store, location, open_state, utcnow
from reconciler.store.placements import PlacementRecord, record_placements


class World:
    def __init__(self, root: Path, state: str | None = None) -> None:
        self.root = root
        self.manifests_dir = root / "manifests"
        self.media = root / "media"
        self.manifests_dir.mkdir(parents=True, exist_ok=True)
        self.media.mkdir(parents=True, exist_ok=True)
        # ``--state`` as given: a DuckDB file's path (the default) or a postgresql:// URL
        self.state = state or str(root / "state" / "reconciler.duckdb")
        self.store = open_state(location(self.state), lock_timeout=5)
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}

    # -- declaring ---------------------------------------------------------------------------
    def _doc(self, kind: str, code: str, spec: dict[str, Any]) -> None:
        self.docs[(kind, code)] = {
            "apiVersion": "mediasync/v1",
            "kind": kind,
            "metadata": {"code": code},
            "spec": spec,
        }

    def platform(self, code: str, **spec: Any) -> World:
        base = {
            "platform_name": code.title(),
            "platform_type": "cdn",
            "driver": "local",
            "target": f"../out/{code.lower()}",
        }
        merged = {k: v for k, v in {**base, **spec}.items() if v is not None}
        self._doc("Platform", code, merged)
        return self

    def asset(self, code: str, content: bytes = b"", file: str | None = None, **spec: Any) -> World:
        file = file or f"{code.lower()}.mp4"
        path = self.media / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content or code.encode())
        base = {"title": code, "asset_type": "video", "category": "marketing", "file": file}
        self._doc("Asset", code, {**base, **spec})
        return self

    def rule(self, code: str, platform: str, **spec: Any) -> World:
        base = {
            "platform": platform,
            "source_category": "all",
            "asset_types": "all",
            "sync_mode": "full",
        }
        self._doc("SyncRule", code, {**base, **spec})
        return self

    def remove(self, kind: str, code: str) -> World:
        del self.docs[(kind, code)]
        return self

    def cli_args(self) -> list[str]:
        """--manifests, --media-root and --state for running the CLI on this world."""
        return [
            "--manifests",
            str(self.manifests_dir),
            "--media-root",
            str(self.media),
            "--state",
            self.state,
        ]

    def write_file(self, file: str, content: bytes) -> None:
        (self.media / file).write_bytes(content)

    # -- planning ----------------------------------------------------------------------------
    def manifests(self) -> ManifestSet:
        (self.manifests_dir / "all.yaml").write_text(yaml.safe_dump_all(list(self.docs.values())))
        result = validate_tree(self.manifests_dir, self.media)
        assert result.manifest_set is not None, [p.format() for p in result.problems]
        return result.manifest_set

    def plan(self, **options: Any) -> Plan:
        return make_plan(self.manifests(), self.store, PlanOptions(**options))

    def applied(self, plan: Plan | None = None) -> Plan:
        """Record what a fully successful apply of the plan would record; return the plan."""
        plan = plan or self.plan()
        pretend_applied(self.store, self.manifests(), plan)
        return plan


def apply_run(world: World, options: ApplyOptions, **plan_options: Any) -> ApplyResult:
    """A plain `reconcile` run on the world: recover, plan, apply through the real drivers."""
    manifests = world.manifests()
    with world.store.session():
        notes = recover(manifests, world.store)
        plan = world.plan(**plan_options)
        return apply_plan(manifests, world.store, plan, options, recovered=notes)


def rows(world: World, sql: str, params: list | None = None) -> list[tuple]:
    with world.store.reading() as con:
        return con.execute(sql, params or []).fetchall()


def action_of(plan: Plan, asset: str, platform: str) -> Action:
    found = [a for a in plan.actions if a.asset == asset and a.platform == platform]
    assert len(found) == 1, (asset, platform, plan.actions)
    return found[0]


def kinds(plan: Plan) -> dict[tuple[str, str], str]:
    return {(a.asset, a.platform): a.action for a in plan.actions}


def pretend_applied(store: Store, manifests: ManifestSet, plan: Plan) -> None:
    """What apply records when every change of the plan succeeded (no bytes move)."""
    now = utcnow()
    observed = plan.observed.files if plan.observed else {}
    records = []
    for a in plan.changes:
        if a.action == "delete":
            records.append(PlacementRecord(a.asset, a.platform, a.rule, "deleted"))
            continue
        records.append(
            PlacementRecord(
                asset=a.asset,
                platform=a.platform,
                rule=a.rule,
                sync_status="synced",
                synced_version=a.source_version,
                local_checksum=a.checksum,
                remote_checksum=a.checksum,
                platform_asset_id=f"{a.platform}/{a.asset}",
                remote_key=remote_key(a),
                metadata_hash=a.metadata_hash or fingerprint({}),
                transform_hash=a.transform_hash,
                managed=True,
                synced_at=now,
                verified_at=now,
                rendition_id=a.rendition_id or "",
            )
        )
    with store.writing() as con:
        record_objects(con, manifests, observed)
        record_placements(con, records)
