"""The retry pauses every loop of ours shares (clusternet_api.backoff)."""

from __future__ import annotations

import itertools

import pytest

from clusternet_api.backoff import JITTER, Backoff, jittered


@pytest.mark.parametrize(("first", "cap"), [(0.25, 30.0), (1.0, 60.0), (2.0, 60.0), (1.0, 300.0), (0.5, 8.0),
                                            (5.0, 5.0), (3.0, 4.0)])
def test_pauses_start_at_first_double_within_their_jitter_and_never_pass_the_cap(first: float, cap: float) -> None:
    backoff = Backoff(first, cap)
    delays = []
    for _ in range(30):
        pause = backoff.next()
        assert backoff.delay * JITTER[0] <= pause <= backoff.delay * JITTER[1]
        delays.append(backoff.delay)
    assert delays[0] == first
    assert all(b == min(a * 2, cap) for a, b in itertools.pairwise(delays))


def test_doubling_beats_the_jitter_so_each_pause_is_longer_until_the_cap() -> None:
    backoff = Backoff(1.0, 300.0)
    pauses = [backoff.next() for _ in range(8)]  # 1 s to 128 s
    assert all(b > a for a, b in itertools.pairwise(pauses))


def test_reset_starts_again_from_first() -> None:
    backoff = Backoff(0.5, 8.0, (0.5, 1.0))
    for _ in range(6):
        backoff.next()
    assert backoff.delay == 8.0
    backoff.reset()
    assert 0.25 <= backoff.next() <= 0.5 and backoff.delay == 0.5


@pytest.mark.parametrize("spread", [JITTER, (0.5, 1.0), (1.0, 2.0), (1.0, 1.0)])
def test_jittered_stays_within_its_spread(spread: tuple[float, float]) -> None:
    for seconds in (0.0, 0.25, 1.0, 60.0, 300.0):
        for _ in range(50):
            assert seconds * spread[0] <= jittered(seconds, spread) <= seconds * spread[1]
