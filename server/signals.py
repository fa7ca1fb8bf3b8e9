"""Wake-ups: "something changed, read again" for whoever waits on a topic.

A signal carries no data: the store is the truth, and a woken waiter reads it again. Topics are
`JOBS` (a job or a shoot changed) and `limits_topic(provider)` (a provider's rate windows or
in-flight slots moved). In one process a signal is an `anyio.Event`; with Redis
(`server/store/redis.py`) it is also published to every other replica. Waiters keep a slow re-read
as a safety net, so a lost message delays a wake-up, never loses one.
"""

from __future__ import annotations

import anyio

JOBS = "jobs"
"""A job or a shoot was written."""


def limits_topic(provider: str) -> str:
    return f"limits:{provider}"


def hook_topic(job_id: str) -> str:
    """A provider said that the job ended (a webhook): its driver looks now, wherever it runs."""
    return f"hook:{job_id}"


class Signals:
    """Wake-ups within one process."""

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}

    def event(self, topic: str) -> anyio.Event:
        """The event the next signal on `topic` sets: take it *before* reading, then wait on it."""
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = anyio.Event()
        return event

    async def notify(self, topic: str) -> None:
        """Wake every waiter on `topic` (in this process; a Redis backend tells the others too)."""
        self.wake(topic)

    def wake(self, topic: str) -> None:
        event = self._events.pop(topic, None)
        if event is not None:
            event.set()

    def forget(self, topic: str) -> None:
        """Drop the event of a topic nobody will wait on again (a job's webhook, once it ended)."""
        self._events.pop(topic, None)

    def wake_all(self) -> None:
        """Wake every waiter (e.g. after a reconnect, when signals may have been missed)."""
        for topic in list(self._events):
            self.wake(topic)
