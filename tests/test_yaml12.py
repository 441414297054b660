"""Plain scalars mean what the YAML 1.2 core schema (and so every editor) says, not YAML 1.1.

One test per scalar form of the core schema, then what the manifests make of the forms YAML
1.1 read differently: a field that wants a boolean or a number says how to write one, at the
value's file:line, and ``reconcile validate`` exits 1.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_process import reconcile

from reconciler.cache import Cache
from reconciler.manifests import load as load_module
from reconciler.manifests.load import parse
from reconciler.manifests.validate import validate_tree

from helpers import MEDIA


def value_of(text: str) -> Any:
    """The value of ``v`` in the one-line document ``v: TEXT``."""
    result = parse(f"v: {text}\n".encode(), "t.yaml")
    assert result.findings == [], result.findings
    (document,) = result.documents
    return document.data["v"]


def finding_of(text: str) -> Any:
    (finding,) = parse(f"v: {text}\n".encode(), "t.yaml").findings
    return finding


def exactly(value: Any, expected: Any) -> None:
    """Equal and of the same type: 1 == 1.0 == True in Python."""
    assert (type(value), value) == (type(expected), expected)


# -- the core schema, form by form --------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF", "Y"],
)
def test_yaml_1_1_booleans_are_strings(text: str) -> None:
    exactly(value_of(text), text)


@pytest.mark.parametrize("text", ["1:30", "190:20:30", "-1:30", "1:30.5", "12:00"])
def test_base_60_numbers_are_strings(text: str) -> None:
    exactly(value_of(text), text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1e3", 1000.0), ("1E3", 1000.0), ("-2.5e-3", -0.0025), ("+1e+2", 100.0), ("2E-1", 0.2)],
)
def test_exponents_without_a_dot_are_floats(text: str, expected: float) -> None:
    exactly(value_of(text), expected)


@pytest.mark.parametrize(
    ("text", "expected"), [("1.5", 1.5), (".5", 0.5), ("1.", 1.0), ("-0.25", -0.25)]
)
def test_decimal_fractions_are_floats(text: str, expected: float) -> None:
    exactly(value_of(text), expected)


@pytest.mark.parametrize(("text", "expected"), [("0o17", 15), ("0o0", 0), ("0o777", 511)])
def test_0o_is_octal(text: str, expected: int) -> None:
    exactly(value_of(text), expected)


@pytest.mark.parametrize(("text", "expected"), [("0x1F", 31), ("0x1f", 31), ("0xff", 255)])
def test_0x_is_hexadecimal(text: str, expected: int) -> None:
    exactly(value_of(text), expected)


@pytest.mark.parametrize(
    ("text", "expected"), [("017", 17), ("-017", -17), ("+12", 12), ("0", 0), ("00", 0)]
)
def test_leading_zeros_are_decimal(text: str, expected: int) -> None:
    exactly(value_of(text), expected)


@pytest.mark.parametrize(
    "text",
    # YAML 1.1 numbers that are not numbers in the core schema
    ["0b101", "1_000", "0X1F", "0O17", "+0x1F", "-0o7", "0o8", "0x", "1e", "e3", "1.2.3"],
)
def test_other_number_like_text_is_a_string(text: str) -> None:
    exactly(value_of(text), text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("FALSE", False),
    ],
)
def test_booleans(text: str, expected: bool) -> None:
    exactly(value_of(text), expected)


@pytest.mark.parametrize("text", ["tRUE", "fAlse", "truthy", "t", "f"])
def test_other_spellings_of_booleans_are_strings(text: str) -> None:
    exactly(value_of(text), text)


@pytest.mark.parametrize("text", ["null", "Null", "NULL", "~", ""])
def test_null(text: str) -> None:
    assert value_of(text) is None


@pytest.mark.parametrize("text", ["nULL", "nil", "None", "none"])
def test_other_spellings_of_null_are_strings(text: str) -> None:
    exactly(value_of(text), text)


@pytest.mark.parametrize("text", [".inf", "-.inf", "+.Inf", ".INF", ".nan", ".NaN", ".NAN"])
def test_infinity_and_nan_are_floats_which_a_manifest_refuses(text: str) -> None:
    finding = finding_of(text)
    assert finding.error == "yaml-tag" and "no NaN or infinity" in finding.message
    assert finding.line == 1 and finding.column == 4


@pytest.mark.parametrize("text", ["inf", "nan", ".Nan", ".iNF", "'.inf'", '".nan"'])
def test_other_spellings_and_quoted_infinity_are_strings(text: str) -> None:
    exactly(value_of(text), text.strip("'\""))


@pytest.mark.parametrize(
    "text", ["2024-01-25", "2024-01-25T10:00:00Z", "2024-01-25 10:00:00.5 +01:00", "2002-12-14"]
)
def test_timestamps_are_strings(text: str) -> None:
    exactly(value_of(text), text)


@pytest.mark.parametrize("text", ["'yes'", '"1:30"', "'0o17'", "'true'", "'null'", '"1e3"'])
def test_quoted_scalars_are_always_strings(text: str) -> None:
    exactly(value_of(text), text[1:-1])


@pytest.mark.parametrize("text", ["=", "<<"])
def test_yaml_1_1_special_values_are_strings(text: str) -> None:
    """YAML 1.1's value key ``=`` made a manifest fail with "the tag !!value is not allowed"."""
    exactly(value_of(text), text)


def test_keys_are_the_text_written() -> None:
    result = parse(b"yes: 1\non: 2\n0o17: 3\n1:30: 4\ntrue: 5\n~: 6\n", "t.yaml")
    assert result.findings == []
    assert result.documents[0].data == {"yes": 1, "on": 2, "0o17": 3, "1:30": 4, "true": 5, "~": 6}


def test_values_inside_flow_collections_are_resolved_the_same_way() -> None:
    assert value_of("[yes, 1:30, 1e3, 0o17, 0x1F, 017, TRUE, ~]") == [
        "yes",
        "1:30",
        1000.0,
        15,
        31,
        17,
        True,
        None,
    ]


def test_anchored_scalars_keep_their_value_through_aliases() -> None:
    result = parse(b"a: &x 0o17\nb: *x\nc: &y on\nd: *y\n", "t.yaml")
    assert result.documents[0].data == {"a": 15, "b": 15, "c": "on", "d": "on"}


# -- explicit tags follow the same forms ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!!int 0o17", 15),
        ("!!int '0x1F'", 31),
        ("!!int '017'", 17),
        ("!!float 1", 1.0),
        ("!!float '1e3'", 1000.0),
        ("!!bool 'TRUE'", True),
        ("!!null ''", None),
        ("!!str 0o17", "0o17"),
        ("!!str yes", "yes"),
    ],
)
def test_explicit_tags_take_the_core_forms(text: str, expected: Any) -> None:
    exactly(value_of(text), expected)


@pytest.mark.parametrize(
    ("text", "type_name"),
    [
        ("!!bool yes", "bool"),
        ("!!bool on", "bool"),
        ("!!int 1:30", "int"),
        ("!!int 1_000", "int"),
        ("!!int 1.5", "int"),
        ("!!float 0x1F", "float"),
        ("!!null nil", "null"),
        ("!!bool null", "bool"),
    ],
)
def test_explicit_tags_refuse_yaml_1_1_forms(text: str, type_name: str) -> None:
    finding = finding_of(text)
    assert finding.error == "yaml-tag"
    assert finding.message.endswith(f"is not a valid {type_name}"), finding.message


def test_a_decimal_too_long_for_python_is_a_finding_not_a_traceback() -> None:
    finding = finding_of("9" * 5000)
    assert finding.error == "yaml-tag" and "too many digits" in finding.message


# -- what the manifests make of it ---------------------------------------------------------

PLATFORM = """\
apiVersion: mediasync/v1
kind: Platform
metadata:
  code: CDN
spec:
  platform_name: CDN
  platform_type: cdn
  driver: local
  target: out/cdn
"""
ASSET = """\
apiVersion: mediasync/v1
kind: Asset
metadata:
  code: IMG-BANNER
spec:
  title: Banner
  asset_type: image
  file: images/banner.jpg
"""
RULE = """\
apiVersion: mediasync/v1
kind: SyncRule
metadata:
  code: R
spec:
  platform: CDN
  source_category: all
  asset_types: all
  sync_mode: full
"""


def folder_with(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "m.yaml").write_text(text)
    return folder


def manifest(tmp_path: Path) -> str:
    """How a problem names the file that :func:`folder_with` wrote."""
    return str(tmp_path / "manifests" / "m.yaml")


def problems_of(tmp_path: Path, text: str) -> list[Any]:
    result = validate_tree(folder_with(tmp_path, text), MEDIA)
    assert not result.ok
    return result.problems


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Y", "NO", "On"])
def test_a_yaml_1_1_boolean_in_a_boolean_field_says_write_true_or_false(
    tmp_path: Path, word: str
) -> None:
    (problem,) = problems_of(tmp_path, PLATFORM + f"  sync_enabled: {word}\n")
    assert (problem.file, problem.line, problem.column) == (manifest(tmp_path), 10, 17)
    assert problem.field == "spec.sync_enabled"
    assert f"not the string '{word}'" in problem.message
    assert problem.message.endswith("write true or false"), problem.message


def test_a_yaml_1_1_boolean_in_a_driver_setting_says_the_same(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, PLATFORM + "  fsync: on\n")
    assert problem.line == 10 and problem.field == "spec.fsync"
    assert problem.message.endswith("write true or false"), problem.message


def test_base_60_in_a_number_field_is_text_and_says_how_to_write_a_number(
    tmp_path: Path,
) -> None:
    (problem,) = problems_of(tmp_path, PLATFORM + "  rate_limit_per_hour: 1:30\n")
    assert (problem.file, problem.line, problem.column) == (manifest(tmp_path), 10, 24)
    assert problem.field == "spec.rate_limit_per_hour"
    assert problem.message == (
        "must be a whole number, not the string '1:30': YAML 1.2 reads it as text, not as "
        "base 60 (YAML 1.1 made it 90); write the number in plain digits, such as 90"
    )


def test_base_60_in_a_float_field_too(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, PLATFORM + "  max_file_size_mb: 1:30.5\n")
    assert problem.field == "spec.max_file_size_mb"
    assert "must be a number, not the string '1:30.5'" in problem.message
    assert "such as 90.5" in problem.message


def test_underscores_in_a_number_field_say_to_drop_them(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, PLATFORM + "  rate_limit_per_hour: 1_000\n")
    assert problem.message.endswith("write the number without underscores: 1000")


def test_other_text_in_a_number_field_gets_no_yaml_hint(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, PLATFORM + "  rate_limit_per_hour: 0:30\n")
    assert problem.message == "must be a whole number, not the string '0:30'"


def test_numbers_and_words_editors_accept_are_accepted(tmp_path: Path) -> None:
    text = PLATFORM + "  max_file_size_mb: 1e3\n  rate_limit_per_hour: 0x1F\n---\n"
    text += ASSET + "  category: on\n  metadata: {rating: 017, public: yes, shot: 2024-01-25}\n"
    result = validate_tree(folder_with(tmp_path, text), MEDIA)
    assert result.ok, result.problems
    assert result.manifest_set is not None
    platform = result.manifest_set.platforms["CDN"]
    exactly(platform.max_file_size_mb, 1000.0)
    exactly(platform.rate_limit_per_hour, 31)
    asset = result.manifest_set.assets["IMG-BANNER"]
    assert asset.category == "on"
    assert dict(asset.metadata) == {"rating": 17, "public": "yes", "shot": "2024-01-25"}


def test_whole_numbers_written_with_an_exponent_are_integers_in_the_model(tmp_path: Path) -> None:
    text = PLATFORM + "  rate_limit_per_hour: 1e2\n---\n" + RULE + "  priority: 1E1\n"
    result = validate_tree(folder_with(tmp_path, text), MEDIA)
    assert result.ok, result.problems
    assert result.manifest_set is not None
    exactly(result.manifest_set.platforms["CDN"].rate_limit_per_hour, 100)
    exactly(result.manifest_set.rules["R"].priority, 10)


def test_an_exponent_too_large_is_refused_as_infinity() -> None:
    finding = finding_of("1e999")
    assert finding.error == "yaml-tag" and "no NaN or infinity" in finding.message


def test_a_cache_entry_parsed_by_yaml_1_1_is_not_trusted(tmp_path: Path) -> None:
    """A manifest cache written before YAML 1.2 holds 1:30 as 90 under the file's sha256; an
    upgraded reconcile must parse the file again and flag it, not use the stale entry."""
    text = PLATFORM + "  rate_limit_per_hour: 1:30\n"
    folder = folder_with(tmp_path, text)
    cache = Cache(tmp_path / "cache")
    old = yaml.safe_load(text)
    assert old["spec"]["rate_limit_per_hour"] == 90  # what YAML 1.1 made of it
    digest = hashlib.sha256(text.encode()).hexdigest()
    cache.save_manifest(folder, digest, [(0, 1, old)])  # the entry as an older version wrote it
    (problem,) = validate_tree(folder, MEDIA, cache=cache).problems
    assert problem.field == "spec.rate_limit_per_hour" and "'1:30'" in problem.message


def test_the_manifest_cache_still_spares_a_second_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_with(tmp_path, PLATFORM + "  rate_limit_per_hour: 0x1F\n")
    cache = Cache(tmp_path / "cache")
    assert validate_tree(folder, MEDIA, cache=cache).ok
    parsed: list[str] = []
    original = load_module.parse
    monkeypatch.setattr(
        load_module, "parse", lambda data, *a, **k: parsed.append("x") or original(data, *a, **k)
    )
    again = validate_tree(folder, MEDIA, cache=cache)
    assert parsed == [] and again.manifest_set is not None
    exactly(again.manifest_set.platforms["CDN"].rate_limit_per_hour, 31)


def test_reconcile_validate_exits_1_with_file_and_line_for_base_60(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, PLATFORM + "  rate_limit_per_hour: 1:30\n")
    result = reconcile("validate", "--manifests", str(folder))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{folder / 'm.yaml'}:10:24: Platform CDN: spec.rate_limit_per_hour:")
    assert "not the string '1:30'" in first and "write the number in plain digits" in first
