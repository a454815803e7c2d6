"""The ISN statistics on sequences whose nature is known."""

from __future__ import annotations

import random

import pytest

from conformance.engine.isn import isn_stats


def _times(n: int, gap: float = 0.01, jitter: float = 0.002, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += gap + rng.uniform(0, jitter)
    return out


def test_a_fixed_step_counter_is_flagged() -> None:
    times = _times(100)
    stats = isn_stats([(64001 + 64000 * i, t) for i, t in enumerate(times)])
    assert stats.gcd == 64000
    assert stats.sp < 64
    assert stats.repeats == 0


def test_random_isns_look_unpredictable() -> None:
    rng = random.Random(7)
    stats = isn_stats([(rng.randrange(1 << 32), t) for t in _times(100)])
    assert stats.gcd <= 9
    assert stats.sp >= 200


def test_a_constant_isn_repeats_and_has_no_spread() -> None:
    stats = isn_stats([(6510, t) for t in _times(20)])
    assert stats.repeats == 19 and stats.sp == 0 and stats.isr == 0


def test_differences_are_taken_the_short_way_round() -> None:
    times = _times(10)
    stats = isn_stats([((2**32 - 500 + 1000 * i) % 2**32, t) for i, t in enumerate(times)])
    assert stats.gcd == 1000


def test_too_few_samples_are_refused() -> None:
    with pytest.raises(ValueError):
        isn_stats([(1, 0.0), (2, 1.0)])


def test_increases_count_forward_steps_across_the_wrap() -> None:
    times = _times(5)
    rising = isn_stats([((2**32 - 200 + 100 * i) % 2**32, t) for i, t in enumerate(times)])
    assert rising.increases == 4
    falling = isn_stats([(10_000 - 100 * i, t) for i, t in enumerate(times)])
    assert falling.increases == 0
