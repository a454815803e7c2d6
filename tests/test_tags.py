"""The tag registry: every tag the catalogue uses is registered with a description and every registered tag is
used; a case with an unknown tag fails to load in one line with a did-you-mean; a broken registry file is one
error line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance.model.loader import CaseFormatError, load_case, parse_case
from conformance.model.schema import json_schema
from conformance.model.tags import TAGS_FILE, TagRegistryError, load_tags

ROOT = Path(__file__).resolve().parent.parent
ERROR_LINE = re.compile(r"^(?P<source>[^:\s]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<message>.+)$")

CASE = """\
id: TAG-01
title: tag test
refs: [rfc9293:3.5]
requirement: a requirement written out in words
level: MUST
tags: [{tags}]
steps:
  - ut: listen
"""


def at(doc: str, marker: str) -> tuple[int, int]:
    index = doc.index(marker)
    return doc.count("\n", 0, index) + 1, index - (doc.rfind("\n", 0, index) + 1) + 1


def test_the_registry_describes_every_tag_in_one_line() -> None:
    tags = load_tags()
    assert len(tags) >= 30
    for tag, description in tags.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", tag), tag
        assert 10 <= len(description) <= 160 and "\n" not in description, tag
    assert not {"must", "should", "may", "info"} & set(tags)


def test_every_tag_in_use_is_registered_and_every_registered_tag_is_used() -> None:
    used: dict[str, int] = {}
    for path in sorted((ROOT / "testcases").rglob("*.yaml")):
        for tag in load_case(path, ROOT).meta.tags:
            used[tag] = used.get(tag, 0) + 1
    assert set(used) == set(load_tags()), "tags.yaml and the catalogue's tags differ"


def test_one_spelling_of_time_wait() -> None:
    assert "timewait" in load_tags() and "time_wait" not in load_tags()


def test_a_known_tag_loads() -> None:
    assert parse_case(CASE.format(tags="handshake, timewait"), "inline.yaml").meta.tags == ["handshake", "timewait"]


@pytest.mark.parametrize(
    ("tags", "marker", "path", "message"),
    [
        ("handshake, time_wait", "time_wait", "tags[1]",
         r"^unknown tag 'time_wait' \(did you mean 'timewait'\?\): the tags are listed in conformance/model/tags"),
        ("frobnicate", "frobnicate", "tags[0]", r"^unknown tag 'frobnicate': the tags are listed in "),
        ("reset, reset", "reset]", "tags[1]", r"^tag 'reset' is given twice$"),
    ],
    ids=["did-you-mean", "no-close-tag", "twice"],
)  # fmt: skip
def test_an_unknown_tag_is_one_error_line_at_its_place(tags: str, marker: str, path: str, message: str) -> None:
    doc = CASE.format(tags=tags)
    with pytest.raises(CaseFormatError) as info:
        parse_case(doc, "inline.yaml")
    got = ERROR_LINE.match(str(info.value))
    assert got, str(info.value)
    assert ((int(got["line"]), int(got["col"])), got["path"]) == (at(doc, marker), path)
    assert re.search(message, got["message"]), got["message"]


def test_load_tags_gives_a_fresh_dict() -> None:
    tags = load_tags()
    tags["scribble"] = "a tag added by a caller, not by the registry"
    assert "scribble" not in load_tags()


def test_the_schema_offers_the_registered_tags() -> None:
    assert json_schema()["properties"]["tags"]["items"]["enum"] == sorted(load_tags())


@pytest.mark.parametrize(
    ("text", "marker", "path", "message"),
    [
        ("Handshake: the handshake and its variants\n", "Handshake", "Handshake", r"lower-case letters, digits and _"),
        ("must: what a MUST requirement requires\n", "must", "must", r"^'must' is a level"),
        ("reset: short\n", "short", "reset", r"^the description is 10 to 160 characters long$"),
        ("reset: [a, list]\n", "[a, list]", "reset", r"^the description is one line of text$"),
        ("- reset\n", "- reset", "(top)", r"^the tag registry is a mapping of tag: one-line description$"),
        ("reset: sending and accepting resets\nreset: again and again\n", "reset: again", "YAML", r"duplicate key"),
    ],
    ids=["bad-name", "level-name", "short-description", "not-text", "not-a-mapping", "duplicate"],
)
def test_a_broken_registry_is_one_error_line(tmp_path: Path, text: str, marker: str, path: str, message: str) -> None:
    file = tmp_path / "tags.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(TagRegistryError) as info:
        load_tags(file)
    got = ERROR_LINE.match(str(info.value))
    assert got, str(info.value)
    assert (got["source"], (int(got["line"]), int(got["col"])), got["path"]) == (str(file), at(text, marker), path)
    assert re.search(message, got["message"]), got["message"]


def test_the_shipped_registry_is_beside_its_module() -> None:
    assert TAGS_FILE.name == "tags.yaml" and TAGS_FILE.parent.name == "model"
