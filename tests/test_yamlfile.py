"""The one YAML reader: YAML 1.2 scalars, anchors and merge keys, positions, and one-line errors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from conformance.yamlfile import DocumentError, parse_yaml


def test_plain_scalars_follow_the_yaml_1_2_core_schema() -> None:
    """Dates, yes/no and base-60 numbers stay text (YAML 1.1 would make dates, booleans and integers of them)."""
    doc = parse_yaml("a: 2024-02-30\nb: yes\nc: 1:30\nd: 0o17\ne: 0x1f\nf: 1.5e3\ng: null\nh: true\ni: 010\n", "t.yaml")
    assert doc.data == {"a": "2024-02-30", "b": "yes", "c": "1:30", "d": 15, "e": 31, "f": 1500.0, "g": None,
                        "h": True, "i": 10}  # fmt: skip


def test_positions_name_every_value_and_key() -> None:
    doc = parse_yaml("top:\n  list:\n    - {x: 1}\n    - y\n", "t.yaml")
    assert doc.positions.find(("top", "list", 0, "x")) == (3, 11)
    assert doc.positions.find(("top", "list", 1)) == (4, 7)
    assert doc.positions.find_key(("top", "list")) == (2, 3)
    assert doc.positions.find(("top", "list", 1, "missing")) == (4, 7)  # the nearest ancestor


def test_anchors_and_merge_keys_share_a_block_and_explicit_keys_win() -> None:
    text = "base: &b {kind: local, n: 1}\nother:\n  <<: *b\n  n: 2\n"
    assert parse_yaml(text, "t.yaml").data["other"] == {"n": 2, "kind": "local"}


def test_a_duplicate_key_is_an_error_at_the_second_key() -> None:
    with pytest.raises(DocumentError, match=r'^t\.yaml:3:1: YAML: found duplicate key "a"$'):
        parse_yaml("a: 1\nb: 2\na: 3\n", "t.yaml")


def test_a_syntax_error_says_what_was_expected() -> None:
    with pytest.raises(DocumentError, match=r"^t\.yaml:1:\d+: YAML: expected ',' or '}', but got ']'$"):
        parse_yaml("a: {b: 1]\n", "t.yaml")


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int


def test_validation_errors_point_at_the_field_or_the_unknown_key() -> None:
    doc = parse_yaml("points:\n  - {x: 1}\n  - {x: one}\n  - {x: 2, z: 3}\n", "p.yaml")
    located = doc.located()
    with pytest.raises(DocumentError, match=r"^p\.yaml:3:9: points\[1\]\.x: Input should be a valid integer"):
        located.validate(Point, doc.data["points"][1], ("points", 1))
    with pytest.raises(DocumentError, match=r"^p\.yaml:4:12: points\[2\]\.z: unknown key$"):
        located.validate(Point, doc.data["points"][2], ("points", 2))
