"""The cache of parsed cases: used only for an unchanged file in an unchanged world, never trusted blindly."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.model import cache as cache_module
from conformance.model.cache import CaseCache
from conformance.model.loader import CaseFormatError, load_case

CASE = """\
id: CACHE-01
title: a cached case
refs: [rfc9293:3.5]
requirement: the suite's own test of its cache of parsed cases
level: MUST
steps:
  - send: {flags: S, seq: l_isn}
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CaseCache:
    made = CaseCache(tmp_path / "cache" / "cases.pickle")
    monkeypatch.setattr("conformance.model.loader._cache", lambda: made)
    return made


def _no_parse(*args: object, **kwargs: object) -> None:
    raise AssertionError("parsed again although the file was in the cache")


def test_an_unchanged_file_comes_from_the_cache_and_a_changed_one_is_parsed_again(
    tmp_path: Path, cache: CaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CASE)
    first = load_case(path)
    assert cache.changed and len(cache.entries) == 1
    monkeypatch.setattr("conformance.model.loader.build_case", _no_parse)
    assert load_case(path).meta == first.meta  # from the cache: no parse
    monkeypatch.undo()
    monkeypatch.setattr("conformance.model.loader._cache", lambda: cache)
    path.write_text(CASE.replace("a cached case", "an edited case"))
    assert load_case(path).meta.title == "an edited case"


def test_a_saved_cache_serves_the_next_process_only_in_the_same_world(
    tmp_path: Path, cache: CaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CASE)
    load_case(path)
    cache.save()
    again = CaseCache(cache.path)
    key = again.file_key(path, path.read_bytes())
    assert again.get(path, key).meta.id == "CACHE-01"
    monkeypatch.setattr(cache_module, "world_key", lambda: "another version of the case format")
    assert CaseCache(cache.path).entries == {}


def test_a_broken_case_is_never_cached_and_a_corrupt_cache_is_ignored(tmp_path: Path, cache: CaseCache) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CASE.replace("level: MUST", "level: MOST"))
    for _ in range(2):
        with pytest.raises(CaseFormatError, match="level"):
            load_case(path)
    assert cache.entries == {}
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    cache.path.write_bytes(b"not a pickle")
    assert CaseCache(cache.path).entries == {}


def test_the_cache_is_bounded_and_keeps_what_this_process_loaded(
    tmp_path: Path, cache: CaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "MAX_ENTRIES", 3)
    paths = []
    for n in range(5):  # five files of an earlier process, left behind in a directory that still exists
        path = tmp_path / f"old{n}.yaml"
        path.write_text(CASE.replace("CACHE-01", f"CACHE-OLD-{n}"))
        load_case(path)
        paths.append(path)
    cache.save()
    assert len(CaseCache(cache.path).entries) == 5  # a process keeps every file it loaded, beyond the bound too
    later = CaseCache(cache.path)
    monkeypatch.setattr("conformance.model.loader._cache", lambda: later)
    assert load_case(paths[2]).meta.id == "CACHE-OLD-2"  # used by this process: a cache hit, kept
    fresh = tmp_path / "new.yaml"
    fresh.write_text(CASE)
    load_case(fresh)
    later.save()
    kept = set(CaseCache(cache.path).entries)
    assert kept == {str(fresh.resolve()), str(paths[2].resolve()), str(paths[4].resolve())}


def test_each_case_is_unpickled_only_when_asked_for_and_a_spoilt_entry_is_parsed_again(
    tmp_path: Path, cache: CaseCache
) -> None:
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"c{i}.yaml")
        paths[-1].write_text(CASE.replace("CACHE-01", f"CACHE-0{i + 2}"))
        load_case(paths[-1])
    cache.save()
    again = CaseCache(cache.path)
    assert all(isinstance(pickled, bytes) for _, pickled in again.entries.values())  # nothing unpickled yet
    file = str(paths[0].resolve())
    again.entries[file] = (again.entries[file][0], b"spoilt")
    assert again.get(paths[0], again.file_key(paths[0], paths[0].read_bytes())) is None  # a miss: parsed again
    assert again.get(paths[1], again.file_key(paths[1], paths[1].read_bytes())).meta.id == "CACHE-03"
