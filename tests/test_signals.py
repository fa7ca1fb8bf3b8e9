"""Wake-ups: a waiter hears the topics it watches and no others, with the record a change wrote when
the change was made in its own process; replicas hear each other's over Redis, never their own twice."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from server.signals import Signals, job_topic
from server.store import open_backend

pytestmark = pytest.mark.anyio


async def test_a_watch_hears_its_topics_only_with_the_news_of_a_single_change() -> None:
    signals = Signals()
    with signals.watch([job_topic("a"), job_topic("b")]) as watch:
        await signals.notify(job_topic("c"), "c's record")
        assert await watch.wait(0) == {}  # not its topic: nothing heard, the time ran out
        await signals.notify(job_topic("a"), "a's record")
        await signals.notify(job_topic("b"), "b's first")
        await signals.notify(job_topic("b"), "b's second")  # two changes: read the store for the latest
        assert await watch.wait(3600) == {job_topic("a"): "a's record", job_topic("b"): None}
        watch.add([job_topic("c")])
        await signals.notify(job_topic("c"))
        assert await watch.wait(3600) == {job_topic("c"): None}
        signals.wake_all()
        assert set(await watch.wait(3600)) == {job_topic(x) for x in "abc"}
    assert signals._watches == {}  # a closed watch leaves nothing behind
    await signals.notify(job_topic("a"), "after")  # and nobody to tell


async def test_a_watch_entered_before_a_read_hears_a_change_made_after_it() -> None:
    signals = Signals()
    heard: dict[str, object | None] = {}
    with signals.watch([job_topic("a")]) as watch:
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                heard.update(await watch.wait(3600))

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            await signals.notify(job_topic("a"), "written")
    assert heard == {job_topic("a"): "written"}


async def test_replicas_hear_each_others_signals_over_redis_and_their_own_once(
    redis_url: str, tmp_path: Path
) -> None:
    async with open_backend(redis_url, tmp_path) as one, open_backend(redis_url, tmp_path) as two:
        topics = [job_topic("a"), job_topic("b")]
        with one.signals.watch(topics) as here, two.signals.watch(topics) as there:
            await one.signals.notify(job_topic("a"), "record")
            assert await here.wait(3600) == {job_topic("a"): "record"}  # told at once, with the record
            assert await there.wait(3600) == {job_topic("a"): None}  # over Redis: read the store
            await two.signals.notify(job_topic("b"))
            # Redis delivers in order: had `one` heard its own message again, it would be heard first.
            assert await here.wait(3600) == {job_topic("b"): None}
