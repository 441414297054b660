"""JSON Schema validation of manifest documents, with messages a person understands.

The schemas live in the top-level ``schemas/`` folder (the single source) and ship inside the
wheel as ``reconciler/schemas``. :func:`schema_errors` runs the Draft 2020-12 validator of a
document's kind and turns each :class:`jsonschema.ValidationError` into a field path, an anchor
(point at the key or the value) and a sentence; a schema node may carry an ``errorMessage``
(the keyword of ajv-errors and of editors' JSON language service) that replaces the generic
sentence for its failures; it is read here as ``x-message`` (see :func:`load_schemas`). Called by
:mod:`reconciler.manifests.declared` for every document of a known kind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

import jsonschema_rs

if TYPE_CHECKING:  # jsonschema is imported only to explain an invalid document
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

from reconciler.errors import ReconcilerError
from reconciler.manifests.problems import Anchor, Path
from reconciler.manifests.quoting import describe, quote_key, suggest
from reconciler.manifests.scalars import yaml11_hint

__all__ = [
    "MANIFEST_SCHEMA",
    "bundled_schema",
    "describe",
    "schema_errors",
    "schemas_dir",
    "suggest",
    "unknown_field_message",
]

API_VERSION = "mediasync/v1"
KIND_SCHEMAS = {
    "Platform": "platform.schema.json",
    "Asset": "asset.schema.json",
    "AssetSet": "assetset.schema.json",
    "SyncRule": "syncrule.schema.json",
    "Import": "import.schema.json",
    "Moved": "moved.schema.json",
}
SECRET_LIKE = re.compile(
    r"(?i)(passw(or)?d|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|bearer)"
)

_TYPE_NAMES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}
_BOUNDS = {
    "exclusiveMinimum": "greater than",
    "minimum": "at least",
    "maximum": "at most",
    "exclusiveMaximum": "less than",
}


def schemas_dir() -> FsPath:
    """Where the JSON Schemas are: inside the installed package, or the source checkout."""
    packaged = resources.files("reconciler") / "schemas"
    if packaged.is_dir():
        return FsPath(str(packaged))
    source = FsPath(__file__).resolve().parents[2] / "schemas"
    if source.is_dir():
        return source
    raise ReconcilerError(
        "the JSON Schemas that ship with reconcile are missing; reinstall it with `pip install .`"
    )


MESSAGE_KEYWORD = "errorMessage"  # in the schema files
_MESSAGE_READ_AS = "x-message"  # what the message code below reads


@cache
def load_schemas() -> dict[str, dict[str, Any]]:
    """Every schema file, by file name, read from the schemas folder alone (no network)."""
    folder = schemas_dir()
    return {p.name: json.loads(p.read_text("utf-8")) for p in sorted(folder.glob("*.json"))}


def _messages(node: Any) -> Any:
    """The schema with every ``errorMessage`` renamed to what the message code reads."""
    if isinstance(node, list):
        return [_messages(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {_MESSAGE_READ_AS if k == MESSAGE_KEYWORD else k: _messages(v) for k, v in node.items()}


@cache
def validator_for(kind: str) -> Draft202012Validator:
    """The compiled validator of a manifest kind (built once per process).

    The schema's ``$ref`` s are inlined first: resolving a reference costs more than checking
    the value it points at, and a library of 100,000 assets would pay that on every field.
    Patterns are given ECMA-262's meaning of ``$`` (see :func:`ecma_patterns`).
    """
    from jsonschema import Draft202012Validator

    schemas = load_schemas()
    name = KIND_SCHEMAS[kind]
    inlined = inline_refs(schemas[name], name, schemas)
    return Draft202012Validator(_messages(ecma_patterns(inlined)))


def ecma_patterns(node: Any) -> Any:
    """The schema with every ``pattern``'s ``$`` written as Python's ``\\Z``.

    JSON Schema patterns are ECMA-262 regular expressions, where ``$`` matches only at the
    end of the text, as in jsonschema-rs; in Python's ``re`` it also matches before a final
    line break, so jsonschema alone would accept the code ``"NAS\\n"``, and the two
    validators would disagree.
    """
    if isinstance(node, list):
        return [ecma_patterns(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        k: _end_anchors(v) if k == "pattern" and isinstance(v, str) else ecma_patterns(v)
        for k, v in node.items()
    }


def _end_anchors(pattern: str) -> str:
    out: list[str] = []
    escaped = in_class = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append("\\Z")
            continue
        out.append(char)
    return "".join(out)


def inline_refs(node: Any, file: str, schemas: dict[str, dict[str, Any]]) -> Any:
    """Replace every ``$ref`` (``other.schema.json#/$defs/x`` or ``#/$defs/x``) by its target.

    Keywords beside a ``$ref`` (a description, an ``errorMessage``) are kept and win. Our schemas
    are not recursive, so this terminates.
    """
    if isinstance(node, list):
        return [inline_refs(item, file, schemas) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: inline_refs(v, file, schemas) for k, v in node.items() if k != "$ref"}
    ref = node.get("$ref")
    if ref is None:
        return out
    target_file, _, pointer = ref.partition("#")
    target_file = target_file or file
    target: Any = schemas[target_file]
    for part in filter(None, pointer.split("/")):
        target = target[part]
    return {**inline_refs(target, target_file, schemas), **out}


MANIFEST_SCHEMA = "manifest.schema.json"  # any document of a manifest file, by its kind


def bundled_schema(name: str = MANIFEST_SCHEMA) -> dict[str, Any]:
    """A schema with every ``$ref`` inlined: one self-contained document, which an editor or
    a validator can read from anywhere, with no other file beside it."""
    schemas = load_schemas()
    bundled: dict[str, Any] = inline_refs(schemas[name], name, schemas)
    return bundled


@cache
def fast_validator_for(kind: str) -> Any:
    """jsonschema-rs's compiled validator of a kind: it only answers valid or not, but a
    hundred times faster than jsonschema, so valid documents (nearly all) cost little."""
    schemas = load_schemas()
    name = KIND_SCHEMAS[kind]
    return jsonschema_rs.validator_for(inline_refs(schemas[name], name, schemas))


def schema_errors(kind: str, document: Any) -> list[tuple[Path, Anchor, str]]:
    """Validate one document against its kind's schema; return (path, anchor, message).

    The fast validator decides; only an invalid document goes through jsonschema, whose
    errors carry the paths and details the messages are made of.
    """
    if fast_validator_for(kind).is_valid(document):
        return []
    seen: set[tuple[Path, str]] = set()
    out: list[tuple[Path, Anchor, str]] = []
    for error in validator_for(kind).iter_errors(document):
        for path, anchor, message in _explain(error):
            if (path, message) not in seen:
                seen.add((path, message))
                out.append((path, anchor, message))
    if not out:  # the validators disagree: never let the document pass as valid
        out.append(((), "value", f"does not match the {kind} schema (no detail is available)"))
    return out


def unknown_field_message(key: str, allowed: list[str]) -> str:
    shown = quote_key(str(key), allowed)
    if SECRET_LIKE.search(str(key)) and not str(key).startswith("secret_"):
        return (
            f"unknown field {shown}, which looks like an inline credential; manifests never "
            "hold secrets: use auth: {secret_env: VARIABLE_NAME} or {secret_file: PATH}"
        )
    hint = suggest(key, allowed)
    if not hint and allowed:
        hint = "; allowed here: " + ", ".join(sorted(allowed))
    return f"unknown field {shown}{hint}"


# --------------------------------------------------------------------------------------------


def _custom(schema: Any, keyword: str | None) -> str | None:
    if not isinstance(schema, dict):
        return None
    message = schema.get("x-message")
    if isinstance(message, dict):
        return message.get(keyword or "")
    return message


def _explain(error: ValidationError) -> Iterator[tuple[Path, Anchor, str]]:
    path: Path = tuple(error.absolute_path)
    keyword = error.validator
    instance = error.instance

    if keyword == "required":
        yield from _missing(error, path)
        return
    branches = keyword in ("anyOf", "oneOf") and bool(error.context)
    telling = _telling_branches(error, path) if branches else []
    if telling:
        for sub in telling:
            yield from _explain(sub)
        return

    custom = _custom(error.schema, keyword)
    if custom:
        if "propertyNames" in error.schema_path:
            yield (*path, instance), "key", f"{quote_key(str(instance))} {custom}"
        else:
            yield path, "value", custom
        return

    if keyword == "additionalProperties" and isinstance(instance, dict):
        yield from _unknown_fields(error, path)
        return

    if branches:
        from jsonschema.exceptions import best_match

        yield from _explain(best_match(error.context))
        return

    yield path, "value", _generic(error, keyword, instance)


def _missing(error: ValidationError, path: Path) -> Iterator[tuple[Path, Anchor, str]]:
    instance = error.instance
    for name in error.validator_value:
        if isinstance(instance, dict) and name not in instance:
            yield (*path, name), "key", "required field is missing"


def _telling_branches(error: ValidationError, path: Path) -> list[ValidationError]:
    """The failures of an anyOf/oneOf's branches that say more than "must be this or that",
    or none."""
    # a branch that accepted the value's shape and failed further in (a list whose
    # third item is wrong) says more than "must be this or that"
    inner = [e for e in error.context if len(e.absolute_path) > len(path)]
    if inner:
        return inner
    # a branch of the value's type that failed on a rule with its own message (a glob
    # with a control character in it) says more than the alternatives' summary
    shaped = [e for e in error.context if e.validator != "type"]
    if shaped and all(_custom(e.schema, e.validator) for e in shaped):
        return shaped
    return []


def _unknown_fields(error: ValidationError, path: Path) -> Iterator[tuple[Path, Anchor, str]]:
    allowed = list(error.schema.get("properties", {}))
    for key in error.instance:
        if key not in allowed:
            yield (*path, key), "key", unknown_field_message(key, allowed)


def _types(value: Any, instance: Any) -> str:
    types = value if isinstance(value, list) else [value]
    wanted = " or ".join(_TYPE_NAMES.get(t, str(t)) for t in types)
    hint = yaml11_hint(types, instance) if isinstance(instance, str) else ""
    return f"must be {wanted}, not {describe(instance)}{hint}"


def _enum(value: Any, instance: Any) -> str:
    choices = ", ".join(str(v) for v in value)
    hint = suggest(instance, value) if isinstance(instance, str) else ""
    return f"must be one of {choices}; got {describe(instance, value)}{hint}"


def _dependent_required(value: Any, instance: Any) -> str:
    needs = [
        f"'{field}' needs '{other}' as well"
        for field, others in value.items()
        if isinstance(instance, dict) and field in instance
        for other in others
        if other not in instance
    ]
    return "; ".join(needs) or "needs other fields as well"


def _bound(words: str) -> Callable[[Any, Any], str]:
    return lambda value, instance: f"must be {words} {value}; got {instance}"


# keyword -> the sentence for a failure of it, from (the keyword's value, the instance)
_SENTENCES: dict[str, Callable[[Any, Any], str]] = {
    "type": _types,
    "enum": _enum,
    "const": lambda value, instance: f"must be '{value}'; got {describe(instance, [value])}",
    **{bound: _bound(words) for bound, words in _BOUNDS.items()},
    "minLength": lambda value, _: (
        "must not be empty" if value == 1 else f"must be at least {value} characters long"
    ),
    "maxLength": lambda value, instance: (
        f"must be at most {value} characters long; it has {len(instance)}"
    ),
    "minItems": lambda value, _: (
        "must not be an empty list" if value == 1 else f"must list at least {value} items"
    ),
    "maxItems": lambda value, _: f"must list at most {value} items",
    "uniqueItems": lambda value, _: "lists the same item more than once",
    "pattern": lambda value, instance: f"{describe(instance)} does not match the pattern {value}",
    "dependentRequired": _dependent_required,
    "minProperties": lambda value, _: "must not be an empty mapping",
    "multipleOf": lambda value, instance: f"{describe(instance)} is not a multiple of {value}",
    "maxProperties": lambda value, _: f"must have at most {value} fields",
}


def _generic(error: ValidationError, keyword: Any, instance: Any) -> str:
    if keyword in ("not", None, False):
        return "is not allowed here"
    sentence = _SENTENCES.get(keyword)
    if sentence is not None:
        return sentence(error.validator_value, instance)
    # jsonschema's own message repeats the value in full: say which rule failed instead
    return f"does not satisfy the schema's {keyword} rule"
