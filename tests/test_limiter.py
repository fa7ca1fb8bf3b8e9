"""One contract for every limit book: counted in this process, or in Redis and shared by replicas.

Every figure here is a decision the book returns (counted or not, how long to wait, slots taken), so
nothing depends on how busy the machine is; the few sleeps only outlast a window or a ttl.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from server.limiter import Book, Limiter, Ticket
from server.policy import Limits, RateWindow
from server.store import Backend, open_backend

pytestmark = pytest.mark.anyio

LONG = (RateWindow(4, 60.0),)


@pytest.fixture(params=["local", "redis"])
async def backends(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Backend, Backend]]:
    """Two handles on one store, as two replicas have (the embedded store: one process, one book)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with open_backend(url, tmp_path / "store") as one:
        if url is None:
            yield one, one
            return
        async with open_backend(url, tmp_path / "store") as other:
            yield one, other


@pytest.fixture
def books(backends: tuple[Backend, Backend]) -> tuple[Book, Book]:
    return backends[0].book("fashn"), backends[1].book("fashn")


def ticket(kind: str = "run", n: int = 0) -> Ticket:
    return Ticket(kind, f"t{n}-{id(object())}")


async def test_a_window_admits_its_limit_then_says_how_long_to_wait(books: tuple[Book, Book]) -> None:
    one, other = books
    decisions = [await (one if n % 2 else other).admit(ticket(n=n), LONG, False) for n in range(6)]
    assert [wait for wait, _ in decisions[:4]] == [0.0] * 4
    assert all(0 < wait <= 60.0 for wait, _ in decisions[4:])  # both handles count in one window
    assert (await one.admit(ticket("status"), LONG, False))[0] == 0.0  # kinds are counted apart


async def test_a_request_counts_from_its_answer(books: tuple[Book, Book]) -> None:
    one, _ = books
    window = (RateWindow(1, 30.0),)
    first = ticket()
    assert (await one.admit(first, window, False))[0] == 0.0
    await anyio.sleep(0.3)
    before = (await one.admit(ticket(), window, False))[0]
    await one.answered(first, None, False)  # answered now: it counts from now
    after = (await one.admit(ticket(), window, False))[0]
    assert 0 < before < after <= 30.0


async def test_retry_after_blocks_the_kind_for_every_handle(books: tuple[Book, Book]) -> None:
    one, other = books
    await one.block("run", 30.0, None)
    wait, _ = await other.admit(ticket(), LONG, False)
    assert 25.0 < wait <= 30.0
    assert (await other.admit(ticket("status"), LONG, False))[0] == 0.0


async def test_the_header_budget_holds_requests_to_what_the_provider_allows(books: tuple[Book, Book]) -> None:
    one, other = books
    first = ticket()
    wait, seq = await one.admit(first, (), True)
    assert wait == 0.0 and seq == 1
    assert (await other.admit(ticket(), (), True))[0] > 0  # one at a time until numbers arrive
    await one.answered(Ticket("run", first.id, seq), (2, 30.0), True)  # 2 left until a reset in 30 s
    admitted = [await (one if n % 2 else other).admit(ticket(n=n), (), True) for n in range(3)]
    assert [wait == 0.0 for wait, _ in admitted] == [True, True, False]
    assert 25.0 < admitted[2][0] <= 30.0  # held until the reset


async def test_a_provider_without_rate_headers_is_not_held_by_them(books: tuple[Book, Book]) -> None:
    one, other = books
    first = ticket()
    _, seq = await one.admit(first, (), True)
    await one.answered(Ticket("run", first.id, seq), None, True)  # answered, without the headers
    assert [(await other.admit(ticket(n=n), (), True))[0] for n in range(5)] == [0.0] * 5


async def test_slots_are_shared_kept_by_their_job_and_freed(books: tuple[Book, Book]) -> None:
    one, other = books
    assert await one.take_slot("j1", 2, ttl=60) and await other.take_slot("j2", 2, ttl=60)
    assert not await other.take_slot("j3", 2, ttl=60)
    assert await one.take_slot("j1", 2, ttl=60)  # the holder's own slot: kept
    assert await other.take_slot("j4", None, ttl=60)  # a resumed job takes one regardless
    assert await one.slots_taken() == 3 == await other.slots_taken()
    await one.free_slots(["j4", "j2"])
    assert await other.take_slot("j3", 2, ttl=60)
    assert await other.slots_taken() == 2


async def test_a_slot_lapses_with_its_ttl_unless_renewed(backends: tuple[Backend, Backend]) -> None:
    one = backends[0].book("fashn")
    if backends[0].where == backends[1].where and "redis" not in backends[0].where:
        pytest.skip("in one process a slot lives exactly as long as its holder")
    assert await one.take_slot("dead", 2, ttl=0.2) and await one.take_slot("alive", 2, ttl=0.2)
    await one.renew_slots(["alive"], ttl=60)
    await anyio.sleep(0.3)
    assert await one.slots_taken() == 1  # the slot of a replica that died frees itself
    assert await one.take_slot("next", 2, ttl=60)


async def test_limiters_of_two_replicas_wake_each_other(backends: tuple[Backend, Backend]) -> None:
    """A slot freed on one replica lets a job waiting on another go at once: by a signal, since the
    safety-net re-check is pushed out of the test's reach here."""
    limits = Limits(windows={}, max_in_flight=1)
    one = Limiter(limits, backends[0].book("fashn"), backends[0].signals, "limits:fashn")
    other = Limiter(limits, backends[1].book("fashn"), backends[1].signals, "limits:fashn")
    other.recheck = 3600.0
    order: list[str] = []
    await one.take("first", ttl=600)

    async def second() -> None:
        await other.take("second", ttl=600)
        order.append("second")

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.sleep(0.05)
        assert order == []  # waiting: the only slot is held
        order.append("first done")
        with anyio.fail_after(60):
            await one.free(["first"])
            while "second" not in order:
                await anyio.sleep(0.005)
    assert order == ["first done", "second"]


async def test_the_status_budget_is_shared_by_the_jobs_stepping_through_their_tail() -> None:
    """Six jobs in flight: while only one is past its planned looks it may poll as if alone; as more
    step, they share the budget; with none followed here, every job in flight counts (as before)."""
    limits = Limits(windows={"status": (RateWindow(50, 10.0),)}, max_in_flight=6)
    limiter = Limiter(limits)
    for n in range(6):
        await limiter.take(f"j{n}", ttl=60)
    assert await limiter.poll_interval() == pytest.approx(limits.poll_interval(6))  # nothing followed
    with contextlib.ExitStack() as jobs:
        follows = [jobs.enter_context(limiter.following()) for _ in range(6)]
        assert await limiter.poll_interval() == pytest.approx(
            limits.poll_interval(1)
        )  # none steps: one's share
        follows[0].step()
        assert await limiter.poll_interval() == pytest.approx(0.2)  # one job alone: 10 s / 50
        for follow in follows[:3]:
            follow.step()  # counted once each
        assert await limiter.poll_interval() == pytest.approx(limits.poll_interval(3))
        for follow in follows:
            follow.step()
        assert await limiter.poll_interval() == pytest.approx(1.2)  # all six step: the share of each
    assert await limiter.poll_interval() == pytest.approx(limits.poll_interval(6))  # all ended
