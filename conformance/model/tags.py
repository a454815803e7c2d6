"""The tag registry: every tag a case may carry, each with a one-line description.

Rules of this module: the tags live in ``tags.yaml`` beside it (``tag: description``) and nowhere else. A tag is
lower-case letters, digits and ``_``, never a level's name (``must``, ``should``, ``may``, ``info``: levels are
markers of their own), and its description is one line. ``load_tags`` reads and checks the file once per process
(every problem is one line ``file:line:col: tag: message``); the case loader refuses a tag the registry lacks, and
the pytest plugin registers one marker per tag from it (``-m timewait``).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ..vocabulary import LEVELS
from ..yamlfile import DocumentError, read_yaml_file

TAGS_FILE = Path(__file__).with_name("tags.yaml")
TAG_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
DESCRIPTION_LENGTH = (10, 160)


class TagRegistryError(DocumentError):
    """One line: ``file:line:col: tag: message``."""


def load_tags(path: Path = TAGS_FILE) -> dict[str, str]:
    """Every registered tag and its description, in file order (a fresh dict; the file is read once)."""
    return dict(_read(path))


def tags_source(path: Path = TAGS_FILE) -> str:
    """The name error messages give the registry: relative to the project for the shipped file."""
    try:
        return str(path.relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        return str(path)


@functools.cache
def _read(path: Path) -> tuple[tuple[str, str], ...]:
    document = read_yaml_file(path, tags_source(path), TagRegistryError)
    located = document.located(TagRegistryError)
    data = document.data
    if not isinstance(data, dict) or not data:
        raise located.at((), "the tag registry is a mapping of tag: one-line description")
    levels = {level.lower() for level in LEVELS}
    out: list[tuple[str, str]] = []
    for tag, description in data.items():
        if not TAG_PATTERN.match(tag):
            raise located.at((tag,), "a tag is lower-case letters, digits and _, starting with a letter", at_key=True)
        if tag in levels:
            raise located.at((tag,), f"'{tag}' is a level: levels are markers of their own, not tags", at_key=True)
        low, high = DESCRIPTION_LENGTH
        if not isinstance(description, str) or "\n" in description.strip():
            raise located.at((tag,), "the description is one line of text")
        if not low <= len(description.strip()) <= high:
            raise located.at((tag,), f"the description is {low} to {high} characters long")
        out.append((tag, description.strip()))
    return tuple(out)
