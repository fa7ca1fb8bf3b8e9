"""Wake-ups: "this changed" for whoever listens on its topic.

The store is the truth. A signal says which topic changed, and, within one process, may hand over the
record just written (its news), which a waiter may use instead of reading the store again. Topics are
`job_topic(job_id)`, `shoot_topic(shoot_id)`, `hook_topic(job_id)` (a provider called back) and
`limits_topic(provider)` (a provider's rate windows or in-flight slots moved). A waiter listens on the
topics of what it waits for only (`Signals.watch`), so a change wakes the waiters of that change and no
others. With Redis (`server/store/redis.py`) a signal is also published, without its news, to every
other replica. Waiters keep a slow re-read as a safety net, so a lost message delays a wake-up, never
loses one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import anyio


def job_topic(job_id: str) -> str:
    """The job was written (its news: the record as written)."""
    return f"job:{job_id}"


def shoot_topic(shoot_id: str) -> str:
    """The shoot was written."""
    return f"shoot:{shoot_id}"


def limits_topic(provider: str) -> str:
    return f"limits:{provider}"


def hook_topic(job_id: str) -> str:
    """A provider said that the job ended (a webhook): its driver looks now, wherever it runs."""
    return f"hook:{job_id}"


class Watch:
    """What one waiter hears on its topics (from `Signals.watch`)."""

    def __init__(self, signals: Signals) -> None:
        self._signals = signals
        self._topics: set[str] = set()
        self._event = anyio.Event()
        self._heard: dict[str, object | None] = {}

    def add(self, topics: Iterable[str]) -> None:
        """Listen on more topics, from now on."""
        for topic in set(topics) - self._topics:
            self._topics.add(topic)
            self._signals._watches.setdefault(topic, set()).add(self)

    async def wait(self, seconds: float) -> dict[str, object | None]:
        """Wait up to `seconds` for a signal (not at all if one came since the last wait), and return the
        topics heard since then, each with its news: None when the store must be read (a change made on
        another replica, or two changes since the last wait, which may have been told out of order).
        Empty when the time ran out: then read everything again."""
        if not self._heard:
            with anyio.move_on_after(seconds):
                await self._event.wait()
        heard, self._heard = self._heard, {}
        self._event = anyio.Event()
        return heard

    def _hear(self, topic: str, news: object | None) -> None:
        self._heard[topic] = None if topic in self._heard else news
        self._event.set()

    def _close(self) -> None:
        for topic in self._topics:
            watches = self._signals._watches.get(topic)
            if watches is not None:
                watches.discard(self)
                if not watches:
                    del self._signals._watches[topic]
        self._topics.clear()


class Signals:
    """Wake-ups within one process."""

    def __init__(self) -> None:
        self._watches: dict[str, set[Watch]] = {}

    @contextmanager
    def watch(self, topics: Iterable[str]) -> Iterator[Watch]:
        """Listen on `topics` for the length of the block. Enter it *before* reading what they are about,
        so that a change made after the read is heard."""
        watch = Watch(self)
        watch.add(topics)
        try:
            yield watch
        finally:
            watch._close()

    async def notify(self, topic: str, news: object | None = None) -> None:
        """Tell every watch of `topic` (in this process; a Redis backend tells the other replicas too,
        without the news)."""
        self.wake(topic, news)

    def wake(self, topic: str, news: object | None = None) -> None:
        for watch in list(self._watches.get(topic, ())):
            watch._hear(topic, news)

    def wake_all(self) -> None:
        """Wake every waiter (e.g. after a reconnect, when signals may have been missed)."""
        for topic in list(self._watches):
            self.wake(topic)
