"""Did-you-mean hints for names a file gets wrong (a fragment, a parameter, a tag).

Rules of this module: a hint is the one closest known name (difflib, similarity 0.6 or more) or nothing; the text
it returns slots into a one-line error message as is (empty, or `` (did you mean 'x'?)``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'passive-open'?)`` for ``pasive-open``; empty when nothing known is close."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
