"""Structured fuzzing of the whole front half: manifests built from the schema's own fields,
validated and then planned (a dry run). Nothing may crash, nothing schema-invalid may be
accepted, and a plan only ever speaks of declared assets and platforms."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_fuzz import documents

from reconciler.manifests.schema import schema_errors
from reconciler.manifests.validate import validate_tree
from reconciler.plan.actions import PlanError
from reconciler.plan.planner import make_plan
from reconciler.store.db import StateStore

from helpers import MEDIA

FILES = [
    "images/team.jpg",
    "images/logo.png",
    "images/banner.jpg",
    "videos/intro.mp4",
    "videos/sub/keynote.mp4",
    "videos/missing.mp4",
]


@st.composite
def near_valid(draw: st.DrawFn) -> list[dict]:
    """Manifests that are mostly valid, so that planning is reached often; each field has a
    small chance of a wrong value, so that rejections are exercised too."""

    def maybe(good: object, bad: object) -> object:
        return bad if draw(st.integers(0, 39)) == 0 else good

    docs: list[dict] = []
    platforms = [f"P{i}" for i in range(draw(st.integers(1, 3)))]
    for code in platforms:
        spec = {
            "platform_name": code,
            "platform_type": "cdn",
            "driver": "local",
            "target": f"../out/{code}",
            "supported_formats": draw(
                st.sampled_from(["all", ["image/jpeg"], ["video/mp4", "image/png"]])
            ),
            "max_file_size_mb": maybe(draw(st.sampled_from([0.001, 1, 5000])), -1),
            "sync_enabled": draw(st.booleans()),
        }
        docs.append(
            {
                "apiVersion": "mediasync/v1",
                "kind": "Platform",
                "metadata": {"code": code},
                "spec": spec,
            }
        )
    for i in range(draw(st.integers(0, 5))):
        file = draw(st.sampled_from(FILES))
        spec = {
            "title": f"A{i}",
            "asset_type": maybe("video" if file.endswith("mp4") else "image", "film"),
            "category": draw(st.sampled_from(["news", "brand"])),
            "file": file,
            "status": draw(st.sampled_from(["active", "active", "inactive"])),
        }
        docs.append(
            {
                "apiVersion": "mediasync/v1",
                "kind": "Asset",
                "metadata": {"code": f"A-{i}"},
                "spec": spec,
            }
        )
    for i in range(draw(st.integers(0, 4))):
        spec = {
            "platform": maybe(draw(st.sampled_from(platforms)), "NOPE"),
            "source_category": draw(st.sampled_from(["all", ["news"], ["brand", "news"]])),
            "asset_types": draw(st.sampled_from(["all", ["image"], ["video"]])),
            "sync_mode": "selective",
            "priority": draw(st.integers(0, 3)),
            "include": draw(st.sampled_from([["A-*"], ["A-1", "A-3"], ["*"]])),
            "schedule_cron": maybe(draw(st.sampled_from(["0 9 * * 1", "@daily"])), "0 25 * * *"),
        }
        docs.append(
            {
                "apiVersion": "mediasync/v1",
                "kind": "SyncRule",
                "metadata": {"code": f"R-{i}"},
                "spec": spec,
            }
        )
    return docs


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(near_valid(), st.lists(documents(), min_size=1, max_size=6)))
def test_validate_then_dry_run_never_crashes(docs: list[dict]) -> None:
    folder = Path(tempfile.mkdtemp())
    try:
        (folder / "m").mkdir()
        (folder / "m" / "all.yaml").write_text(yaml.safe_dump_all(docs))
        result = validate_tree(folder / "m", MEDIA)
        if any(schema_errors(d["kind"], d) for d in docs):
            assert not result.ok
        if result.manifest_set is None:
            event("rejected")
            return
        event("planned")
        store = StateStore(folder / "state.duckdb")
        try:
            plan = make_plan(result.manifest_set, store)
        except PlanError:
            return
        for action in plan.actions:
            assert action.asset in result.manifest_set.assets
            assert action.platform in result.manifest_set.platforms
            assert action.action in ("create", "blocked")  # empty recorded state
        assert not store.path.exists()  # a dry run creates nothing
    finally:
        shutil.rmtree(folder)
