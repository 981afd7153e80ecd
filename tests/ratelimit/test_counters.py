"""The in-memory counters behind the limits of a server without Redis: limits' contract, bounded memory.

``MemoryCounters`` stands in for ``limits``' own memory storage (which rescans every key on
every hit): it must count exactly as ``limits``' storages do, forget a key when its lifetime
ends, and hold nothing for keys that are gone -- whatever order the calls come in.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from limits.aio.storage import MemoryStorage

from keyturn.clock import FrozenClock
from keyturn.server.counters import MemoryCounters


@pytest.fixture
def clock() -> FrozenClock:
    """Stands in for the monotonic clock: moved by hand."""
    return FrozenClock(start=1000.0)


@pytest.fixture
def counters(clock: FrozenClock) -> MemoryCounters:
    return MemoryCounters(clock.now)


_calls = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from([1, 1, 1, -1, 2, 0]), st.booleans()), max_size=40
)


@settings(max_examples=150, deadline=None)
@given(calls=_calls)
def test_counts_exactly_as_limits_memory_storage_does(calls: list[tuple[str, int, bool]]) -> None:
    """Any sequence of increments (negative ones included) and reads gives limits' answers, call by call."""

    async def both() -> tuple[list[int], list[int]]:
        ours, theirs = MemoryCounters(), MemoryStorage()
        mine, reference = [], []
        for key, amount, read in calls:
            if read:
                mine.append(await ours.get(key))
                reference.append(await theirs.get(key))
            else:
                mine.append(await ours.incr(key, 3600, amount))
                reference.append(await theirs.incr(key, 3600, amount))
        return mine, reference

    mine, reference = asyncio.run(both())
    assert mine == reference


@pytest.mark.anyio
async def test_a_key_lives_expiry_seconds_from_its_first_count(counters: MemoryCounters, clock: FrozenClock) -> None:
    assert await counters.incr("k", 10) == 1
    clock.advance(6)
    assert await counters.incr("k", 10) == 2  # counting again does not extend the lifetime
    clock.advance(3.9)
    assert await counters.get("k") == 2
    clock.advance(0.1)
    assert await counters.get("k") == 0
    assert await counters.incr("k", 10) == 1  # a new life


@pytest.mark.anyio
async def test_a_key_counted_back_to_zero_starts_a_new_life_at_its_next_count(
    counters: MemoryCounters, clock: FrozenClock
) -> None:
    """As limits' storages do: a given-back slot (count 0) then a new hit restarts the lifetime."""
    await counters.incr("k", 10)
    await counters.incr("k", 10, -1)
    clock.advance(8)
    assert await counters.incr("k", 10) == 1
    clock.advance(8)  # 16 s after the first count, 8 s into the new life
    assert await counters.get("k") == 1
    clock.advance(2)
    assert await counters.get("k") == 0


@pytest.mark.anyio
async def test_expired_keys_are_reclaimed_without_being_read_again(
    counters: MemoryCounters, clock: FrozenClock
) -> None:
    """A spray of one-off keys is gone once their lifetime ends: any later call reclaims them."""
    for index in range(5000):
        await counters.incr(f"sprayed-{index}", 60)
    assert len(counters) == 5000
    clock.advance(61)
    await counters.incr("fresh", 60)
    assert len(counters) == 1


@pytest.mark.anyio
async def test_a_key_restarted_many_times_holds_one_entry(counters: MemoryCounters, clock: FrozenClock) -> None:
    """Take and give back a slot, over and over (every successful login does): memory does not grow."""
    for _ in range(2000):
        await counters.incr("pair", 60)
        await counters.incr("pair", 60, -1)
        clock.advance(0.01)
    assert len(counters) == 1
    assert len(counters._deadlines) == 1  # the heap is the memory this test bounds
    clock.advance(61)
    assert await counters.get("pair") == 0
    assert len(counters) == 0
