"""What every store backend provides: job records, shoot records, idempotency keys and leases.

Two backends implement it and pass the same contract tests (tests/test_store.py): the embedded
diskcache/SQLite store in `CALLSHEET_HOME/store` (`disk.py`) and Redis (`redis.py`), which every
replica that names it shares.

A record changes by `update(id, change)`: the backend reads the stored record, applies `change` and
writes the result as one atomic step (a transaction, or a compare-and-set retried on conflict), so
two writers never lose each other's change. A job's driver passes its lease `holder`: a writer that
lost the lease to another replica is refused with `LeaseLost` and can never write over the new holder
(fencing).
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from server import paths
from server.limiter import Book
from server.models import JobRecord, JobStatus, ShootRecord, ShootStatus
from server.signals import Signals

log = logging.getLogger("callsheet.store")

JobChange = Callable[[JobRecord], JobRecord | None]
"""Given the stored job, the record to store instead, or None to leave it as it is."""
ShootChange = Callable[[ShootRecord], ShootRecord | None]


class LeaseLost(Exception):
    """A driver's write was refused: another process holds the job's lease now and drives it."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"the lease on {job_id} is held by another process")
        self.job_id = job_id


class Store(Protocol):
    """Where job records, idempotency keys and leases live; every backend passes the same contract tests."""

    async def get(self, job_id: str) -> JobRecord | None:
        """The record, or None if unknown."""

    async def put(self, record: JobRecord) -> None:
        """Insert or replace the record without its key (a batch's items; changes go through `update`)."""

    async def update(self, job_id: str, change: JobChange, *, holder: str | None = None) -> JobRecord | None:
        """Atomically replace the stored record by `change(stored)`; returns what is stored afterwards
        (the stored record unchanged when `change` returns None; None when there is no such job).

        With `holder`, the write happens only while `holder` holds the job's lease: else LeaseLost.
        """

    async def add(
        self, record: JobRecord, *, force: bool = False, holder: str | None = None, ttl: float = 0.0
    ) -> JobRecord:
        """Store a new job as the holder of its idempotency key (`record.key`), as one atomic step;
        with `holder`, the job's lease is taken for it for `ttl` seconds in the same step.

        When an identical earlier job holds the key and is queued, submitted, running or succeeded
        (a repeat call), nothing is stored and that job is returned instead. A holder that failed or
        was canceled, or is missing, is replaced; `force=True` always stores the new job.
        """

    async def holder(self, key: str) -> JobRecord | None:
        """The job that holds idempotency `key` now, whatever its state; None if none."""

    async def list(
        self,
        *,
        status: JobStatus | None = None,
        provider: str | None = None,
        shoot_id: str | None = None,
        caller: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[builtins.list[JobRecord], str | None]:
        """Newest first, filtered; returns (page, next_cursor). The cursor is opaque to callers.

        A page reads only the records it returns (and a few stale ones), never every record."""

    # `builtins.list`: inside the class, plain `list` names the method above.
    async def unfinished(self) -> builtins.list[JobRecord]:
        """Every job whose status is queued, submitted or running."""

    async def acquire_leases(self, names: builtins.list[str], holder: str, ttl: float) -> builtins.list[str]:
        """Take or renew the leases on these job or shoot ids for `ttl` seconds; returns those `holder`
        holds now (another holder's lease, not expired, is left to it)."""

    async def release_leases(self, names: builtins.list[str], holder: str) -> None:
        """Give these leases up (those `holder` has; the others are left as they are)."""

    async def learn_pace(self, kind: str, ratio: float, keep: int) -> builtins.list[float]:
        """Remember that a job of `kind` (provider/operation) took `ratio` times its documented
        duration; returns the `keep` most recent ratios of that kind, newest first (older ones go)."""

    async def paces(self, kind: str) -> builtins.list[float]:
        """The ratios `learn_pace` keeps for `kind`, newest first."""

    async def spend(self, day: str, caller: str, amount: float, limit: float | None) -> float | None:
        """Add `amount` credits (negative: give back) to what `caller` spent on `day` (YYYY-MM-DD, UTC)
        and return the new total, in one atomic step; with `limit`, an addition that would take the
        total past it is refused (None, nothing added)."""

    async def spending(self, day: str) -> dict[str, float]:
        """What each caller spent on `day`."""

    def close(self) -> None:
        """Release file handles and connections."""


class ShootStore(Protocol):
    """Where shoot records live; the runner is their only writer."""

    async def get(self, shoot_id: str) -> ShootRecord | None:
        """The record, or None if unknown (a damaged one is set aside)."""

    async def put(self, record: ShootRecord) -> None:
        """Store a new shoot."""

    async def update(self, shoot_id: str, change: ShootChange) -> ShootRecord | None:
        """Atomically replace the stored record by `change(stored)`, as `Store.update` does."""

    async def list(
        self,
        *,
        status: ShootStatus | None = None,
        caller: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[builtins.list[ShootRecord], str | None]:
        """Newest first, filtered; returns (page, next_cursor)."""

    def close(self) -> None:
        """Release file handles and connections."""


@dataclass
class Backend:
    """Everything that lives in the store: what `CALLSHEET_STORE` names (server/store/__init__.py)."""

    jobs: Store
    shoots: ShootStore
    signals: Signals
    book: Callable[[str], Book]
    """A provider's limit book, by provider name."""
    where: str
    """Where it is, for people: a folder, or the Redis URL without its password."""


def public_url(url: str) -> str:
    """A store URL as people may see it: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = (f"{parts.username}:***@" if parts.username else ":***@") + (parts.hostname or "")
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


DAMAGED = "damaged"
"""The store's folder of records set aside because they could not be read."""


def set_aside(directory: Path, kind: str, key: str, raw: object) -> Path:
    """Keep a record that cannot be read in `directory/damaged/` and say so in the log."""
    folder = directory / DAMAGED
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_-]", "_", key)[:80] or "record"
    target = folder / f"{kind}-{name}.txt"
    text = raw if isinstance(raw, str) else repr(raw)
    paths.write_atomic(directory.resolve(), target.resolve(), text.encode("utf-8", "replace"))
    log.warning("the %s record %s is damaged; it was set aside in %s", kind, key, target)
    return target


def damaged_records(directory: Path) -> builtins.list[Path]:
    """The records set aside in the store folder, for `callsheet doctor`."""
    folder = directory / DAMAGED
    return sorted(folder.iterdir()) if folder.is_dir() else []
