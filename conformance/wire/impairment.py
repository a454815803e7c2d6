"""Link impairments: the netem-like description a user gives (``loss 1%``, ``delay 5ms 2ms``,
``duplicate 0.5%``, ``reorder 25% delay 5ms``), parsed and validated into an ``Impairment``.

The words and their meaning follow Linux netem, so a description written for ``tc qdisc ... netem`` means
the same here. Only the subset below is accepted; anything else is a one-line error naming the word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TIME = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s)$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


class ImpairmentError(ValueError):
    """A description that cannot be used; the message is one line naming the offending word."""


@dataclass(frozen=True)
class Impairment:
    """What the link does to every frame, in each direction independently.

    ``reorder``: that share of frames skips the delay (netem's meaning), so it overtakes delayed ones.
    """

    loss: float = 0.0  # probability 0..1 that a frame is dropped
    delay_s: float = 0.0
    jitter_s: float = 0.0  # uniform +- around delay_s
    duplicate: float = 0.0  # probability that a frame is delivered twice
    reorder: float = 0.0  # probability that a frame is sent at once, ahead of the delayed ones
    text: str = ""

    @property
    def active(self) -> bool:
        return bool(self.loss or self.delay_s or self.jitter_s or self.duplicate or self.reorder)

    @property
    def lossy(self) -> bool:
        """A link that can lose frames: the absence of an expected segment proves nothing on it."""
        return self.loss > 0

    def __str__(self) -> str:
        return self.text or "none"


def _percent(word: str, what: str) -> float:
    m = _PERCENT.match(word)
    if not m or float(m.group(1)) > 100:
        raise ImpairmentError(f"{what}: expected a percentage like 1% or 0.5%, got {word!r}")
    return float(m.group(1)) / 100


def _time(word: str, what: str) -> float:
    m = _TIME.match(word)
    if not m:
        raise ImpairmentError(f"{what}: expected a time like 5ms, 500us or 1s, got {word!r}")
    value = float(m.group(1)) * _UNIT[m.group(2)]
    if value > 10:
        raise ImpairmentError(f"{what}: {word} is longer than the 10 s a case can wait")
    return value


def parse_impairment(text: str | None) -> Impairment:
    """Parse a netem-style description; an empty one (or ``none``) is the clean link."""
    words = (text or "").split()
    if not words or words == ["none"]:
        return Impairment()
    values: dict[str, float] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in values or (word == "delay" and "delay_s" in values):
            raise ImpairmentError(f"impairment {text!r}: '{word}' is given twice")
        if word in ("loss", "duplicate", "reorder"):
            if i + 1 >= len(words):
                raise ImpairmentError(f"impairment {text!r}: '{word}' needs a percentage")
            values[word] = _percent(words[i + 1], f"impairment {text!r}: {word}")
            i += 2
        elif word == "delay":
            if i + 1 >= len(words):
                raise ImpairmentError(f"impairment {text!r}: 'delay' needs a time")
            values["delay_s"] = _time(words[i + 1], f"impairment {text!r}: delay")
            i += 2
            if i < len(words) and _TIME.match(words[i]):
                values["jitter_s"] = _time(words[i], f"impairment {text!r}: delay jitter")
                i += 1
        else:
            raise ImpairmentError(
                f"impairment {text!r}: unknown word '{word}' (known: loss P%, delay T [J], duplicate P%, reorder P%)"
            )
    imp = Impairment(**values, text=" ".join(words))  # type: ignore[arg-type]
    if imp.reorder and not imp.delay_s:
        raise ImpairmentError(f"impairment {text!r}: reorder needs a delay to overtake (e.g. reorder 25% delay 5ms)")
    if imp.jitter_s > imp.delay_s:
        raise ImpairmentError(f"impairment {text!r}: the jitter is larger than the delay")
    return imp
