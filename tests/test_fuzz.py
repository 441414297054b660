"""Property tests: whatever text arrives, validation ends in a clean result, never a traceback,
and a manifest set that validation accepts always satisfies the schemas."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.manifests.load import parse
from reconciler.manifests.schema import schema_errors
from reconciler.manifests.validate import validate_tree

from helpers import MEDIA

YAMLISH = st.text(
    alphabet=st.sampled_from(list("abc:- \n\t{}[],&*!|>'\"#%@`?~<=.0123456789\ufeff\x00é")),
    max_size=200,
)


def validate_text(text: str | bytes) -> None:
    folder = Path(tempfile.mkdtemp())
    try:
        path = folder / "m.yaml"
        if isinstance(text, str):
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(text)
        result = validate_tree(folder, MEDIA)
        for problem in result.problems:
            assert problem.line >= 1 and problem.column >= 1
            assert problem.message
        if not result.ok:
            assert result.manifest_set is None
    finally:
        shutil.rmtree(folder)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    parse(text.encode("utf-8", "surrogatepass"), "t.yaml")
    validate_text(text)


@settings(max_examples=300, deadline=None)
@given(YAMLISH)
def test_yaml_like_text_never_raises(text: str) -> None:
    validate_text(text)


FIELDS = {
    "Platform": [
        "platform_name",
        "platform_type",
        "driver",
        "target",
        "api_endpoint",
        "supported_formats",
        "max_file_size_mb",
        "rate_limit_per_hour",
        "auth",
        "bucket",
        "sync_enabled",
    ],
    "Asset": ["title", "asset_type", "category", "file", "metadata", "status", "mime_type"],
    "SyncRule": [
        "platform",
        "source_category",
        "asset_types",
        "sync_mode",
        "include",
        "transform_rules",
        "schedule_cron",
        "priority",
    ],
    "AssetSet": ["include", "asset_type", "category", "code_template", "exclude"],
}
VALUES = st.one_of(
    st.sampled_from(
        [
            "cdn",
            "local",
            "s3",
            "video",
            "image",
            "all",
            "full",
            "selective",
            "../out",
            "images/team.jpg",
            "videos/**/*.mp4",
            "V-{stem}",
            "0 9 * * 1",
            "0 25 * * *",
            "https://x.example/api",
            "image/jpeg",
            "P",
            "A",
            "/etc/passwd",
            "../secret",
        ]
    ),
    st.integers(-5, 5000),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(["image/jpeg", "video", "image", "corporate", "x"]), max_size=3),
    st.fixed_dictionaries(
        {}, optional={"secret_env": st.sampled_from(["KEY", "a b"]), "token": st.just("t")}
    ),
)


@st.composite
def documents(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(sorted(FIELDS)))
    names = draw(st.lists(st.sampled_from(FIELDS[kind]), unique=True, max_size=9))
    spec = {name: draw(VALUES) for name in names}
    code = draw(st.sampled_from(["P", "A", "R", "S", "bad code"]))
    return {"apiVersion": "mediasync/v1", "kind": kind, "metadata": {"code": code}, "spec": spec}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents(), min_size=1, max_size=5))
def test_structured_manifests_are_accepted_only_when_schema_valid(docs: list[dict]) -> None:
    folder = Path(tempfile.mkdtemp())
    try:
        (folder / "m.yaml").write_text(yaml.safe_dump_all(docs))
        result = validate_tree(folder, MEDIA)
        schema_ok = all(not schema_errors(d["kind"], d) for d in docs)
        if result.ok:
            assert schema_ok
            assert result.manifest_set is not None
        if not schema_ok:
            assert not result.ok
            assert any(p.error == "schema" for p in result.errors)
    finally:
        shutil.rmtree(folder)


@settings(max_examples=300, deadline=None)
@given(documents())
def test_the_fast_and_the_full_validator_agree(document: dict) -> None:
    from reconciler.manifests.schema import fast_validator_for, validator_for

    kind = document["kind"]
    slow = not any(True for _ in validator_for(kind).iter_errors(document))
    assert fast_validator_for(kind).is_valid(document) == slow
