"""Statistics over a sample of initial sequence numbers, in the manner of Nmap's SEQ tests.

- ``gcd``: the greatest common divisor of the differences between consecutive ISNs. A counter that
  steps by a fixed amount (64000 in 4.4BSD's classic generator) shows a large GCD; random ISNs give 1.
- ``isr``: 8 * log2 of the average rate at which ISNs advance, in increments per second.
- ``sp``: the sequence predictability index, 8 * log2 of the standard deviation of those rates (after
  dividing them by the GCD when it exceeds 9). Near 0 for counters, around 200 or more for RFC 6528
  generators (a clock plus a keyed hash of the 4-tuple), whose successive ISNs look random.

Differences are taken the short way round the 2**32 sequence space, as Nmap does.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from functools import reduce

from ..tcp import seq_after, seq_distance


@dataclass(frozen=True)
class IsnStats:
    count: int
    gcd: int
    isr: int
    sp: int
    repeats: int  # ISNs seen more than once in the sample
    increases: int  # consecutive pairs where the later ISN is ahead in sequence space

    def as_env(self, prefix: str = "isn") -> dict[str, int]:
        keys = ("count", "gcd", "isr", "sp", "repeats", "increases")
        return {f"{prefix}_{k}": getattr(self, k) for k in keys}


def isn_stats(samples: list[tuple[int, float]]) -> IsnStats:
    """``samples`` are (isn, time in seconds), in the order the connections were opened."""
    if len(samples) < 3:
        raise ValueError("need at least 3 samples")
    diffs = [seq_distance(a[0], b[0]) for a, b in itertools.pairwise(samples)]
    gaps = [max(b[1] - a[1], 1e-6) for a, b in itertools.pairwise(samples)]
    gcd = reduce(math.gcd, diffs) or 1
    rates = [d / g for d, g in zip(diffs, gaps, strict=True)]
    avg = statistics.fmean(rates)
    isr = round(8 * math.log2(avg)) if avg >= 1 else 0
    scaled = [r / gcd for r in rates] if gcd > 9 else rates
    sd = statistics.pstdev(scaled)
    sp = round(8 * math.log2(sd)) if sd > 1 else 0
    repeats = len(samples) - len({isn for isn, _ in samples})
    increases = sum(1 for a, b in itertools.pairwise(samples) if seq_after(b[0], a[0]))
    return IsnStats(len(samples), gcd, isr, sp, repeats, increases)
