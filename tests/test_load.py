"""The YAML loader: plain data out, hostile input stopped, positions on demand."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.manifests.load import Limits, discover, load_file, parse, positions_of
from reconciler.manifests.scalars import plain

STR = "tag:yaml.org,2002:str"


def data_of(text: str | bytes) -> list:
    raw = text.encode() if isinstance(text, str) else text
    result = parse(raw, "t.yaml")
    assert result.findings == [], result.findings
    return [d.data for d in result.documents]


def findings_of(text: str | bytes, limits: Limits | None = None) -> list:
    raw = text.encode() if isinstance(text, str) else text
    return parse(raw, "t.yaml", limits or Limits()).findings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: 1\nb: 2.5\nc: true\nd: null\ne: text",
            {"a": 1, "b": 2.5, "c": True, "d": None, "e": "text"},
        ),
        ("a: '1'\nb: \"true\"", {"a": "1", "b": "true"}),
        ("a: [1, two, {x: y}]", {"a": [1, "two", {"x": "y"}]}),
        ("a: 2024-01-15\nb: 2024-01-15 10:00:00", {"a": "2024-01-15", "b": "2024-01-15 10:00:00"}),
        ("1: one\ntrue: TRUE\nnull: x", {"1": "one", "true": True, "null": "x"}),
        ("a: !!str 123\nb: !!int '7'", {"a": "123", "b": 7}),
        ("a: |\n  line one\n  line two\n", {"a": "line one\nline two\n"}),
        ("x: &v [1, 2]\ny: *v", {"x": [1, 2], "y": [1, 2]}),
        ("a: <<\n", {"a": "<<"}),
    ],
)
def test_values_are_plain_json_data(text: str, expected: dict) -> None:
    assert data_of(text) == [expected]


def test_merge_keys_explicit_keys_win_and_earlier_merges_win() -> None:
    text = "m:\n  <<: [{a: 1, b: 1}, {b: 2, c: 2}]\n  c: 3\n"
    assert data_of(text) == [{"m": {"a": 1, "b": 1, "c": 3}}]


def test_merge_key_needs_a_mapping() -> None:
    (finding,) = findings_of("m:\n  <<: [1, 2]\n")
    assert "merge key << takes a mapping" in finding.message


def test_several_documents_keep_their_index_and_empty_ones_are_skipped() -> None:
    result = parse(b"---\na: 1\n---\n---\nb: 2\n...\n", "t.yaml")
    assert [(d.index, d.line, d.data) for d in result.documents] == [
        (0, 2, {"a": 1}),
        (2, 5, {"b": 2}),
    ]


def test_duplicate_key_points_at_the_second_and_names_the_first() -> None:
    (finding,) = findings_of("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n")
    assert finding.error == "yaml-duplicate-key"
    assert (finding.line, finding.column, finding.path) == (5, 3, ("b", "c"))
    assert "first at line 3" in finding.message


def test_only_json_tags_are_allowed() -> None:
    for text in (
        "a: !!binary aGk=",
        "a: !!python/name:os.system",
        "a: !Custom x",
        "a: !!omap [{x: 1}]",
    ):
        (finding,) = findings_of(text)
        assert finding.error == "yaml-tag", text


def test_a_json_tag_on_a_value_it_cannot_hold_is_a_finding_not_a_crash() -> None:
    for text, shown in (
        ("a: !!bool x", "'x' is not a valid bool"),
        ("a: !!int ''", "valid int"),
        ("a: !!float ''", "valid float"),
        ("a: !!int +", "valid int"),
    ):
        (finding,) = findings_of(text + "\n")
        assert finding.error == "yaml-tag", text
        assert (finding.line, finding.column) == (1, 4), text
        assert shown in finding.message, (text, finding.message)


def test_recursive_and_undefined_aliases_are_errors() -> None:
    assert "contains it" in findings_of("a: &x [*x]\n")[0].message
    assert "no anchor &y" in findings_of("a: *y\n")[0].message


def test_alias_expansion_is_bounded() -> None:
    text = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
    for level, prev in zip("bcdefghij", "abcdefghi", strict=True):
        text += f"{level}: &{level} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
    (finding,) = findings_of(text)
    assert finding.error == "yaml-limit"
    assert "billion laughs" in finding.message


def test_small_alias_use_is_fine() -> None:
    text = "d: &d {a: 1}\n" + "".join(f"k{i}: *d\n" for i in range(100))
    assert len(data_of(text)[0]) == 101


def test_nesting_depth_is_bounded_and_the_rest_of_the_file_still_loads() -> None:
    deep = "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 6)) + "  " * 6 + "end\n"
    result = parse((deep + "---\nok: 1\n").encode(), "t.yaml", Limits(max_depth=4))
    assert [f.error for f in result.findings] == ["yaml-limit"]
    assert [d.data for d in result.documents] == [{"ok": 1}]


def test_flow_nesting_beyond_the_parser_limit_is_a_clean_error() -> None:
    (finding,) = findings_of("[" * 5000)
    assert finding.error == "yaml-limit"


def test_syntax_error_has_position() -> None:
    (finding,) = findings_of("a: 1\nb: [1, 2\nc: 3\n")
    assert finding.error == "yaml-syntax"
    assert finding.line == 3


def test_tab_indentation_says_so() -> None:
    (finding,) = findings_of("a:\n\tb: 1\n")
    assert "tab" in finding.message


@pytest.mark.parametrize(
    ("raw", "fragment", "line"),
    [
        (b"a: caf\xe9\n", "not valid UTF-8 (byte 0xe9)", 1),
        (b"a: 1\nb: \xff\n", "not valid UTF-8 (byte 0xff)", 2),
        ("a: 1\n".encode("utf-16"), "UTF-16", 1),
        (b"a: 1\n---\n\xef\xbb\xbfb: 2\n", "byte-order mark", 3),
    ],
)
def test_encoding_problems(tmp_path: Path, raw: bytes, fragment: str, line: int) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(raw)
    loaded = load_file(path, "m.yaml")
    (finding,) = loaded.findings
    assert finding.error == "yaml-encoding"
    assert fragment in finding.message
    assert finding.line == line


def test_a_leading_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert [d.data for d in load_file(path, "m.yaml").documents] == [{"a": 1}]


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:  # sparse: 1 GiB on paper, nothing on disk
        handle.truncate(1 << 30)
    loaded = load_file(path, "huge.yaml")
    (finding,) = loaded.findings
    assert finding.error == "yaml-limit"
    assert "1.0 GiB" in finding.message and "64.0 MiB" in finding.message
    assert loaded.documents == []


def test_an_empty_file_is_an_error() -> None:
    for text in ("", "# just a comment\n", "---\n---\n"):
        (finding,) = findings_of(text)
        assert finding.error == "empty-file"


def test_positions_of_keys_and_values() -> None:
    (positions,) = positions_of(b"a: 1\nb:\n  - x: 1\n    y: [1, {z: 2}]\n", "t.yaml")
    assert positions[("a",)] == (1, 1, 1, 4)
    assert positions[("b", 0, "x")] == (3, 5, 3, 8)
    assert positions[("b", 0, "y", 1, "z")] == (4, 13, 4, 16)


def test_discover_finds_yaml_recursively_in_order_and_skips_hidden(tmp_path: Path) -> None:
    for name in ("b.yaml", "a/c.yml", "a/d.txt", ".git/x.yaml", "e/.swap.yaml", "a.yaml"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x: 1\n")
    found = [p.relative_to(tmp_path).as_posix() for p in discover(tmp_path)]
    assert found == ["a.yaml", "b.yaml", "a/c.yml"]


def test_unreadable_file_is_a_finding_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "gone.yaml"
    loaded = load_file(path, "gone.yaml")
    assert loaded.findings[0].error == "io"


# -- properties ----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
)
json_data = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(
                st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                min_size=1,
                max_size=8,
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


class Yaml12Dumper(yaml.SafeDumper):
    """PyYAML's writer, quoting also the strings that YAML 1.2 reads as something else
    (``1e3``, ``0o17``): PyYAML (YAML 1.1) would write them plain."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        tag = super().resolve(kind, value, implicit)
        if tag == STR and implicit[0] and isinstance(value, str) and plain(value) is not value:
            return "tag:yaml.org,2002:int"  # not the string tag: the emitter quotes it
        return tag


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8).filter(str.isprintable), json_data, min_size=1, max_size=5
    )
)
def test_round_trip_of_json_data_written_for_yaml_1_2(document: dict) -> None:
    """What a YAML writer that quotes what needs quoting writes, we read back as it was."""
    text = yaml.dump(document, Dumper=Yaml12Dumper, allow_unicode=True)
    fast = parse(text.encode(), "t.yaml")
    tracked = parse(text.encode(), "t.yaml", track=True)
    assert fast.findings == [] and tracked.findings == []
    assert [d.data for d in fast.documents] == [document]
    assert [d.data for d in tracked.documents] == [document]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    folder = tmp_path_factory.mktemp("bytes")
    path = folder / "m.yaml"
    path.write_bytes(raw)
    loaded = load_file(path, "m.yaml")
    for finding in loaded.findings:
        assert finding.line is not None and finding.line >= 1
    os.remove(path)


def test_nan_and_infinity_are_refused() -> None:
    for text in ("a: .nan", "a: .inf", "a: -.Inf"):
        (finding,) = findings_of(text)
        assert finding.error == "yaml-tag" and "no NaN or infinity" in finding.message
