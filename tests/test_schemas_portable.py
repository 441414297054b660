"""The shipped schemas outside Python: check-jsonschema with its default (ECMA-262) regex
engine agrees with `reconcile validate` on every shipped and example document.

Both run as real subprocesses over real files. check-jsonschema reads one document per file,
so every manifest file is split into its documents (as reconcile's loader reads them) and
each is written as a JSON file; each is checked against ``schemas/manifest.schema.json`` (the
schema of a whole file, which picks the kind's schema) and against its kind's own schema.

A document is schema-invalid for reconcile when reconcile reports a problem of a schema-level
class (``schema``, ``api-version``, ``kind``, ``document``) on one of its lines; problems of
other classes (an unknown platform, a missing file, a cron that never fires) come from cross
references and the file system, which no schema sees. Files that fail before their documents
exist (YAML syntax, encoding, limits, tags) are not schema cases and are left out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import regress
from cli_process import reconcile
from jsonschema import Draft202012Validator

from reconciler.manifests.load import check_encoding, parse
from reconciler.manifests.schema import KIND_SCHEMAS, inline_refs, load_schemas, schema_errors

from helpers import EXAMPLES, MEDIA, REPO, SHIPPED_MANIFESTS

SCHEMAS = REPO / "schemas"
MANIFEST_SCHEMA = SCHEMAS / "manifest.schema.json"
SCHEMA_LEVEL = {"schema", "api-version", "kind", "document"}


@dataclass
class Doc:
    """One document of a manifest file, and what reconcile said about it."""

    where: str  # file:line, for messages
    kind: Any
    json_file: Path
    reconcile_invalid: bool


def check_jsonschema(schema: Path, files: list[Path]) -> set[str]:
    """The files check-jsonschema (default regex engine) finds invalid against ``schema``."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "-o", "json", "--schemafile", str(schema)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    assert result.stdout.lstrip().startswith("{"), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report.get("parse_errors", []) == [], report["parse_errors"]
    return {error["filename"] for error in report.get("errors", [])}


def schema_problem_lines(folder: Path, media: Path) -> dict[str, list[int]]:
    """Per file (relative to ``folder``): the lines of reconcile's schema-level problems;
    a file with a problem before its documents exist maps to ``[-1]``."""
    result = reconcile(
        "validate", "--manifests", str(folder), "--media-root", str(media), "--output", "json"
    )
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    lines: dict[str, list[int]] = {}
    for problem in json.loads(result.stdout)["problems"]:
        name = str(Path(problem["file"]).resolve().relative_to(folder.resolve()))
        if problem["error"].startswith("yaml-") or problem["error"] in ("empty-file",):
            lines[name] = [-1]
        elif problem["error"] in SCHEMA_LEVEL and lines.get(name) != [-1]:
            lines.setdefault(name, []).append(problem["line"])
    return lines


def split(folder: Path, media: Path, out: Path) -> list[Doc]:
    """Every document of every manifest file under ``folder``, written as JSON into ``out``."""
    verdicts = schema_problem_lines(folder, media)
    docs: list[Doc] = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml")):
        name = str(path.relative_to(folder))
        data = path.read_bytes()
        parsed = parse(data, name)
        if path.is_symlink() or check_encoding(data, name) or parsed.findings:
            continue  # not a schema case: nothing reaches the schema
        assert verdicts.get(name) != [-1], name
        starts = [d.line for d in parsed.documents]
        for i, document in enumerate(parsed.documents):
            if document.data is None:
                continue
            end = starts[i + 1] if i + 1 < len(starts) else float("inf")
            invalid = any(document.line <= line < end for line in verdicts.get(name, []))
            target = out / f"{len(list(out.iterdir())):04d}.json"
            target.write_text(json.dumps(document.data), "utf-8")
            kind = document.data.get("kind") if isinstance(document.data, dict) else None
            docs.append(Doc(f"{path}:{document.line}", kind, target, invalid))
    return docs


def copy_regular_files(source: Path, dest: Path) -> Path:
    dest.mkdir()
    for example in source.iterdir():
        if example.is_file() and not example.is_symlink() and example.suffix == ".yaml":
            shutil.copy(example, dest / example.name)
    return dest


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    tmp = tmp_path_factory.mktemp("portable")
    out = tmp / "docs"
    out.mkdir()
    docs = split(SHIPPED_MANIFESTS, SHIPPED_MANIFESTS, out)
    for folder in sorted(p for p in (EXAMPLES / "valid").iterdir() if p.is_dir()):
        docs += split(folder, MEDIA, out)
    docs += split(copy_regular_files(EXAMPLES / "invalid", tmp / "invalid"), MEDIA, out)
    return docs


def test_there_are_enough_cases_of_each_verdict(documents: list[Doc]) -> None:
    assert sum(d.reconcile_invalid for d in documents) >= 30
    assert sum(not d.reconcile_invalid for d in documents) >= 30
    assert {d.kind for d in documents} >= set(KIND_SCHEMAS)


def _disagreements(docs: list[Doc], flagged: set[str], schema: str) -> list[str]:
    return [
        f"{d.where} ({d.kind}): reconcile says "
        f"{'invalid' if d.reconcile_invalid else 'valid'}, check-jsonschema with {schema} "
        f"says {'invalid' if str(d.json_file) in flagged else 'valid'}"
        for d in docs
        if (str(d.json_file) in flagged) != d.reconcile_invalid
    ]


def test_the_schema_of_a_whole_file_agrees_with_reconcile(documents: list[Doc]) -> None:
    flagged = check_jsonschema(MANIFEST_SCHEMA, [d.json_file for d in documents])
    assert _disagreements(documents, flagged, MANIFEST_SCHEMA.name) == []


@pytest.mark.parametrize("kind", sorted(KIND_SCHEMAS))
def test_each_kind_schema_agrees_with_reconcile(kind: str, documents: list[Doc]) -> None:
    of_kind = [d for d in documents if d.kind == kind]
    assert of_kind
    flagged = check_jsonschema(SCHEMAS / KIND_SCHEMAS[kind], [d.json_file for d in of_kind])
    assert _disagreements(of_kind, flagged, KIND_SCHEMAS[kind]) == []


MIXED = """\
apiVersion: mediasync/v1
kind: Platform
metadata: {code: CDN}
spec: {platform_name: CDN, platform_type: cdn, driver: local, target: /srv/cdn}
---
apiVersion: mediasync/v1
kind: Asset
metadata: {code: HERO}
spec: {title: Hero, asset_type: image, category: web, file: hero.jpg}
---
apiVersion: mediasync/v1
kind: AssetSet
metadata: {code: CLIPS}
spec: {include: "videos/*.mp4", asset_type: video, category: web, code_template: "{stem}"}
---
apiVersion: mediasync/v1
kind: SyncRule
metadata: {code: WEB}
spec:
  platform: CDN
  source_category: all
  asset_types: all
  sync_mode: full
  priorty: 5
"""


def test_a_typo_in_the_last_document_of_a_mixed_file_is_flagged(tmp_path: Path) -> None:
    parsed = parse(MIXED.encode(), "mixed.yaml")
    assert parsed.findings == []
    files = []
    for document in parsed.documents:
        files.append(tmp_path / f"doc{document.index}.json")
        files[-1].write_text(json.dumps(document.data))
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(MANIFEST_SCHEMA)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    flagged = [
        line for line in result.stdout.splitlines() if line.strip().startswith(str(tmp_path))
    ]
    assert len(flagged) == 1, result.stdout
    assert flagged[0].strip().startswith(f"{files[-1]}::$.spec") and "'priorty'" in flagged[0]


def _patterns(node: Any) -> list[str]:
    if isinstance(node, list):
        return [p for item in node for p in _patterns(item)]
    if not isinstance(node, dict):
        return []
    own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
    return own + [p for value in node.values() for p in _patterns(value)]


@pytest.mark.parametrize("name", sorted(p.name for p in SCHEMAS.glob("*.json")))
def test_every_pattern_is_an_ecma_262_regular_expression(name: str) -> None:
    """regress is the ECMA-262 engine check-jsonschema uses by default (unicode mode)."""
    for pattern in _patterns(json.loads((SCHEMAS / name).read_text())):
        regress.Regex(pattern, "u")


def test_no_schema_names_a_host_its_references_would_be_fetched_from() -> None:
    """Relative $refs resolve against the folder a schema was read from, never a server."""
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        assert "$id" not in schema, path.name
        refs = json.dumps(schema).split('"$ref": ')[1:]
        assert all(not r.startswith('"http') for r in refs), path.name


def test_reconcile_schema_path_is_the_shipped_whole_file_schema() -> None:
    result = reconcile("schema", "--path")
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.name == "manifest.schema.json" and path.is_file()
    assert json.loads(path.read_text()) == json.loads(MANIFEST_SCHEMA.read_text())


def test_reconcile_schema_prints_one_self_contained_schema(tmp_path: Path) -> None:
    """Saved alone in a folder with no other schema, it still checks every kind."""
    result = reconcile("schema")
    assert result.returncode == 0, result.stderr
    assert '"$ref"' not in result.stdout
    saved = tmp_path / "editor" / "mediasync.schema.json"
    saved.parent.mkdir()
    saved.write_text(result.stdout)
    docs = tmp_path / "docs"
    docs.mkdir()
    parsed = parse(MIXED.encode(), "mixed.yaml")
    files = []
    for document in parsed.documents:
        files.append(docs / f"doc{document.index}.json")
        files[-1].write_text(json.dumps(document.data))
    assert check_jsonschema(saved, files) == {str(files[-1])}
    fixed = json.loads(files[-1].read_text())
    fixed["spec"]["priority"] = fixed["spec"].pop("priorty")
    files[-1].write_text(json.dumps(fixed))
    assert check_jsonschema(saved, files) == set()


def test_reconcile_schema_refuses_an_unknown_option() -> None:
    result = reconcile("schema", "--kind", "Platform")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "--kind" in result.stderr


def _properties(node: Any, where: str) -> list[tuple[str, Any]]:
    """Every (path, schema) under a ``properties`` keyword, outside the conditional rules."""
    if isinstance(node, list):
        return [p for i, item in enumerate(node) for p in _properties(item, f"{where}[{i}]")]
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        if key in ("if", "then", "not", "oneOf"):
            continue
        if key == "properties":
            for name, sub in value.items():
                found.append((f"{where}.{name}", sub))
                found += _properties(sub, f"{where}.{name}")
        else:
            found += _properties(value, f"{where}/{key}")
    return found


@pytest.mark.parametrize("kind", sorted(KIND_SCHEMAS))
def test_every_property_says_what_it_means_and_defaults_are_valid(kind: str) -> None:
    schemas = load_schemas()
    name = KIND_SCHEMAS[kind]
    inlined = inline_refs(schemas[name], name, schemas)
    props = _properties(inlined, kind)
    assert len(props) >= 8
    assert [p for p, sub in props if not sub.get("description")] == []
    for path, sub in props:
        if "default" in sub:
            errors = list(Draft202012Validator(sub).iter_errors(sub["default"]))
            assert errors == [], f"{path}: default {sub['default']!r} is not valid"


@pytest.mark.parametrize("kind", sorted(KIND_SCHEMAS))
def test_each_kind_has_examples_that_reconcile_accepts(kind: str) -> None:
    schemas = load_schemas()
    examples = schemas[KIND_SCHEMAS[kind]]["examples"]
    assert examples and all(e["kind"] == kind for e in examples)
    for example in examples:
        assert schema_errors(kind, example) == []
