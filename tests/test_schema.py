"""The JSON Schemas: well-formed, shipped with the package, and explained in plain words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import reconciler
from reconciler.manifests.schema import (
    KIND_SCHEMAS,
    inline_refs,
    load_schemas,
    schema_errors,
    schemas_dir,
)

from helpers import REPO


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "schemas").glob("*.json")))
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = json.loads((REPO / "schemas" / name).read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_package_uses_the_schemas_of_the_repository() -> None:
    """schemas/ is the single source: what the package loads is exactly that folder."""
    repo = {p.name: json.loads(p.read_text()) for p in (REPO / "schemas").glob("*.json")}
    assert load_schemas() == repo


def test_an_installed_package_carries_its_schemas_inside() -> None:
    package = Path(reconciler.__file__).resolve().parent
    if package.parent == REPO:  # running from the source tree (editable install)
        assert schemas_dir() == REPO / "schemas"
    else:  # a real `pip install .`: the wheel must carry them
        assert schemas_dir() == package / "schemas"
        assert {p.name for p in schemas_dir().glob("*.json")} >= set(KIND_SCHEMAS.values())


@pytest.mark.parametrize("kind", sorted(KIND_SCHEMAS))
def test_inlined_schemas_have_no_references_left(kind: str) -> None:
    schemas = load_schemas()
    inlined = inline_refs(schemas[KIND_SCHEMAS[kind]], KIND_SCHEMAS[kind], schemas)
    assert "$ref" not in json.dumps(inlined)
    Draft202012Validator.check_schema(inlined)


PLATFORM = {
    "apiVersion": "mediasync/v1",
    "kind": "Platform",
    "metadata": {"code": "CDN"},
    "spec": {"platform_name": "CDN", "platform_type": "cdn", "driver": "local", "target": "x"},
}


def with_spec(**changes: object) -> dict:
    return {**PLATFORM, "spec": {**PLATFORM["spec"], **changes}}


@pytest.mark.parametrize(
    ("document", "path", "anchor", "fragment"),
    [
        (
            with_spec(max_file_size_mb=0),
            ("spec", "max_file_size_mb"),
            "value",
            "must be greater than 0",
        ),
        (
            with_spec(rate_limit_per_hour=1.5),
            ("spec", "rate_limit_per_hour"),
            "value",
            "must be a whole number, not the number 1.5",
        ),
        (with_spec(platform_type="CDN"), ("spec", "platform_type"), "value", "did you mean 'cdn'?"),
        (
            with_spec(sync_enabled="yes please"),
            ("spec", "sync_enabled"),
            "value",
            "must be true or false",
        ),
        (
            with_spec(supported_formats=["video/mp4", "video/mp4"]),
            ("spec", "supported_formats"),
            "value",
            "must be 'all' or a non-empty list",
        ),
        (
            with_spec(platform_nam="x"),
            ("spec", "platform_nam"),
            "key",
            "did you mean 'platform_name'?",
        ),
        (with_spec(password="x"), ("spec", "password"), "key", "inline credential"),
        (
            with_spec(auth={"secret_env": "A", "secret_file": "/b"}),
            ("spec", "auth"),
            "value",
            "credentials are referenced",
        ),
        (
            with_spec(auth={"secret_env": "not a name"}),
            ("spec", "auth", "secret_env"),
            "value",
            "must be the name of an environment variable",
        ),
        (with_spec(target=""), ("spec", "target"), "value", "must not be empty"),
        (
            {**PLATFORM, "metadata": {"code": "X" * 51}},
            ("metadata", "code"),
            "value",
            "must be 1 to 50",
        ),
        ({**PLATFORM, "metadata": {}}, ("metadata", "code"), "key", "required field is missing"),
        ({**PLATFORM, "extra": 1}, ("extra",), "key", "unknown field 'extra'"),
    ],
)
def test_schema_messages(document: dict, path: tuple, anchor: str, fragment: str) -> None:
    errors = schema_errors("Platform", document)
    assert any(p == path and a == anchor and fragment in m for p, a, m in errors), errors


def test_a_valid_platform_has_no_errors() -> None:
    assert schema_errors("Platform", PLATFORM) == []


def test_the_fast_validator_agrees_with_jsonschema_on_every_example() -> None:
    """schema_errors trusts jsonschema-rs to say "valid"; it must never disagree."""
    from reconciler.manifests.load import load_file
    from reconciler.manifests.schema import fast_validator_for, validator_for

    documents = []
    for folder in ("valid", "invalid"):
        for path in sorted((REPO / "tests" / "examples" / folder).rglob("*.y*ml")):
            loaded = load_file(path, path.name)
            documents += [d.data for d in loaded.documents if isinstance(d.data, dict)]
    documents += [PLATFORM, with_spec(max_file_size_mb=0), with_spec(password="x")]
    checked = 0
    for doc in documents:
        kind = doc.get("kind")
        if kind not in KIND_SCHEMAS:
            continue
        checked += 1
        slow = not any(True for _ in validator_for(kind).iter_errors(doc))
        assert fast_validator_for(kind).is_valid(doc) == slow, doc
    assert checked > 50
