"""A cache of parsed cases, so a run does not parse and validate the same unchanged files again.

Rules of this module: an entry is used only when the case file is byte for byte what was parsed (its path, size,
modification time and content digest) and everything else that shapes a ``Case`` is unchanged too: the case
format's code (conformance/model/*.py), the shipped fragments and the tag registry, the Python and pydantic
versions. Only cases that loaded without error are kept. Any trouble with the cache (unwritable, corrupt, from
another version) means no cache: the case is parsed as if there were none. The cache is one file in the user's
cache directory (``$XDG_CACHE_HOME/tcp-conformance``), written whole and atomically, and bounded: it keeps the
files of the last ``MAX_ENTRIES`` loads (the files this process loaded always among them), so case files made
in temporary directories, run once and left behind, cannot make every later start-up slower. Each case is kept
pickled on its own and unpickled only when asked for: a start-up pays for the cases it loads, not for every
case of every checkout in the cache.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

import pydantic

MODEL_DIR = Path(__file__).resolve().parent
FORMAT = 2  # 2: each entry's case pickled on its own
MAX_ENTRIES = 2000  # the catalogue is ~200 files; room for several checkouts and a vendor's own cases


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tcp-conformance" / "cases.pickle"


@functools.cache
def world_key() -> str:
    """A digest of everything besides the case file that shapes a parsed case."""
    digest = hashlib.sha256(f"{FORMAT}|{sys.version}|{pydantic.VERSION}".encode())
    for path in sorted([*MODEL_DIR.glob("*.py"), *MODEL_DIR.glob("*.yaml"), *MODEL_DIR.glob("fragments/*.yaml")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class CaseCache:
    """Parsed cases by file, for one process; ``save`` writes back what changed."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_file()
        self.entries: dict[str, tuple[str, bytes]] = {}  # file -> (its key, the pickled case), oldest load first
        self.used: set[str] = set()  # the files this process loaded
        self.changed = False
        with contextlib.suppress(Exception):  # no cache, or one that cannot be read: start empty
            data = pickle.loads(self.path.read_bytes())
            if isinstance(data, dict) and data.get("world") == world_key():
                self.entries = data["entries"]

    @staticmethod
    def file_key(path: Path, raw: bytes) -> str:
        stat = path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}:{hashlib.sha1(raw).hexdigest()}"

    def get(self, path: Path, key: str) -> Any | None:
        file = str(path.resolve())
        entry = self.entries.get(file)
        if entry is None or entry[0] != key:
            return None
        try:
            case = pickle.loads(entry[1])
        except Exception:  # an entry that no longer unpickles is no entry
            return None
        self.used.add(file)
        return case

    def put(self, path: Path, key: str, case: Any) -> None:
        file = str(path.resolve())
        try:
            pickled = pickle.dumps(case, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            return
        self.entries.pop(file, None)
        self.entries[file] = (key, pickled)  # the newest load goes last
        self.used.add(file)
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        self.entries = {file: entry for file, entry in self.entries.items() if os.path.exists(file)}  # gone: dropped
        excess = len(self.entries) - MAX_ENTRIES
        if excess > 0:  # the oldest loads that this process did not use go first
            stale = [file for file in self.entries if file not in self.used][:excess]
            for file in stale:
                del self.entries[file]
        with contextlib.suppress(OSError, pickle.PicklingError, TypeError, AttributeError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            data = pickle.dumps({"world": world_key(), "entries": self.entries}, protocol=pickle.HIGHEST_PROTOCOL)
            with tempfile.NamedTemporaryFile(dir=self.path.parent, delete=False, prefix=".cases-") as tmp:
                tmp.write(data)
            os.replace(tmp.name, self.path)
            self.changed = False
