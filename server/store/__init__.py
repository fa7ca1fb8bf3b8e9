"""The store: jobs, shoots, idempotency keys, leases, limits and wake-ups, where `CALLSHEET_STORE` says.

Unset, it is the embedded store in `CALLSHEET_HOME/store` (`disk.py`: diskcache and SQLite, safe
for several processes on one machine). `redis://...` or `rediss://...` names a Redis that every
replica shares (`redis.py`). `base.py` holds the interfaces both implement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from server.limiter import Book, LocalBook
from server.signals import Signals
from server.store.base import (
    Backend,
    LeaseLost,
    ShootStore,
    Store,
    damaged_records,
    set_aside,
)
from server.store.disk import DiskShoots, DiskStore, open_cache

__all__ = [
    "Backend",
    "DiskShoots",
    "DiskStore",
    "LeaseLost",
    "ShootStore",
    "Store",
    "damaged_records",
    "open_backend",
    "open_cache",
    "set_aside",
]


@asynccontextmanager
async def open_backend(store_url: str | None, directory: Path) -> AsyncIterator[Backend]:
    """The store `store_url` names (None: the embedded one in `directory`), open until the block ends."""
    if store_url:
        # Imported here: the embedded store is the default, and needs neither redis-py nor its import time.
        from server.store.redis import open_redis

        async with open_redis(store_url) as backend:
            yield backend
        return
    jobs = DiskStore(directory)
    try:
        shoots = DiskShoots(directory / "shoots")
    except BaseException:
        jobs.close()
        raise
    books: dict[str, Book] = {}
    try:
        yield Backend(
            jobs=jobs,
            shoots=shoots,
            signals=Signals(),
            book=lambda provider: books.setdefault(provider, LocalBook()),
            where=str(directory),
        )
    finally:
        shoots.close()
        jobs.close()
