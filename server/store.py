"""Job store: the interface and its diskcache backend.

Records are persisted as JSON (`JobRecord.model_dump_json()`), never pickled. The store is
process-safe: two servers on one data folder share it, idempotency keys are claimed atomically,
and leases make sure only one of them drives (submits or polls) any given job.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, cast

from diskcache import Cache

from server.models import ACTIVE, HOLDS_KEY, JobRecord, JobStatus


class Store(Protocol):
    """Where job records live; every backend passes the same contract tests."""

    async def get(self, job_id: str) -> JobRecord | None:
        """The record, or None if unknown."""

    async def put(self, record: JobRecord) -> None:
        """Insert or replace the record (also keeps the set of unfinished jobs up to date)."""

    async def delete(self, job_id: str) -> None:
        """Remove a record that was never submitted (a lost race for an idempotency key)."""

    async def claim_key(self, key: str, job_id: str, *, force: bool = False) -> str | None:
        """Atomically make `job_id` the holder of idempotency `key`.

        Returns None when `job_id` now holds the key. Returns the id of the current holder instead
        when that job is queued, submitted, running or succeeded (a repeat call: reuse it).
        A holder that failed or was canceled, or is missing, is replaced. `force=True` always
        replaces. The caller has already `put` the record of `job_id`.
        """

    async def list(
        self,
        *,
        status: JobStatus | None = None,
        provider: str | None = None,
        shoot_id: str | None = None,
        owner: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[builtins.list[JobRecord], str | None]:
        """Newest first, filtered; returns (page, next_cursor). The cursor is opaque to callers."""

    # `builtins.list`: inside the class, plain `list` names the method above.
    async def unfinished(self) -> builtins.list[JobRecord]:
        """Every job whose status is queued, submitted or running."""

    async def acquire_lease(self, job_id: str, owner: str, ttl: float) -> bool:
        """Take or renew the lease on a job for `ttl` seconds; False when another owner holds it."""

    async def release_lease(self, job_id: str, owner: str) -> None:
        """Give the lease up (only if `owner` holds it)."""

    def close(self) -> None:
        """Release file handles."""


class DiskStore:
    """The embedded default: one SQLite-backed diskcache per concern under `directory`.

    - `jobs/`: job id -> record JSON. Job ids are time-sortable, so reverse key order is newest first.
    - `keys/`: idempotency key -> job id of the holder.
    - `leases/`: job id -> owner, expiring after the lease's ttl.
    - `active/`: job id -> provider, for every job that may be unfinished (read by `unfinished()`).

    Values are plain `str`, which diskcache stores as text, so nothing is ever pickled. Eviction is
    off: a store must never drop a job to save space.

    Writes to several caches are not one SQLite transaction, so they are ordered to fail safe: a crash
    can leave a finished job in `active/` (filtered out on read), never an unfinished job outside it.
    Lock order is keys -> jobs -> active, so processes cannot deadlock.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._jobs = _open(directory / "jobs")
        self._keys = _open(directory / "keys")
        self._leases = _open(directory / "leases")
        self._active = _open(directory / "active")

    async def get(self, job_id: str) -> JobRecord | None:
        return self._load(job_id)

    async def put(self, record: JobRecord) -> None:
        data = record.model_dump_json()
        # One writer at a time per store, so the active set follows the last put of each job.
        with self._jobs.transact(retry=True):
            if record.status in ACTIVE:
                self._active.set(record.job_id, record.provider, retry=True)
                self._jobs.set(record.job_id, data, retry=True)
            else:
                self._jobs.set(record.job_id, data, retry=True)
                self._active.delete(record.job_id, retry=True)

    async def delete(self, job_id: str) -> None:
        with self._jobs.transact(retry=True):
            self._jobs.delete(job_id, retry=True)
            self._active.delete(job_id, retry=True)
        self._leases.delete(job_id, retry=True)

    async def claim_key(self, key: str, job_id: str, *, force: bool = False) -> str | None:
        if not force and self._keys.add(key, job_id, retry=True):
            return None
        with self._keys.transact(retry=True):
            holder = cast("str | None", self._keys.get(key))
            if not force and holder is not None and holder != job_id:
                current = self._load(holder)
                if current is not None and current.status in HOLDS_KEY:
                    return holder
            self._keys.set(key, job_id, retry=True)
            return None

    async def list(
        self,
        *,
        status: JobStatus | None = None,
        provider: str | None = None,
        shoot_id: str | None = None,
        owner: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[builtins.list[JobRecord], str | None]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        page: builtins.list[JobRecord] = []
        for job_id in self._job_ids(reverse=True):
            # The cursor is the last id of the previous page; ids compare as they sort in SQLite.
            if cursor is not None and job_id >= cursor:
                continue
            record = self._load(job_id)
            if record is None:  # deleted while we were paging
                continue
            if (
                (status is not None and record.status != status)
                or (provider is not None and record.provider != provider)
                or (shoot_id is not None and record.shoot_id != shoot_id)
                or (owner is not None and record.owner != owner)
            ):
                continue
            page.append(record)
            if len(page) > limit:  # one extra tells us there is another page
                page.pop()
                return page, page[-1].job_id
        return page, None

    async def unfinished(self) -> builtins.list[JobRecord]:
        records = []
        for job_id in cast("Iterator[str]", self._active.iterkeys()):
            record = self._load(job_id)
            if record is not None and record.active:
                records.append(record)
        return records

    async def acquire_lease(self, job_id: str, owner: str, ttl: float) -> bool:
        # `add` also takes over an expired lease, atomically.
        if self._leases.add(job_id, owner, expire=ttl, retry=True):
            return True
        with self._leases.transact(retry=True):
            holder = cast("str | None", self._leases.get(job_id))
            if holder is not None and holder != owner:
                return False
            self._leases.set(job_id, owner, expire=ttl, retry=True)
            return True

    async def release_lease(self, job_id: str, owner: str) -> None:
        with self._leases.transact(retry=True):
            if self._leases.get(job_id) == owner:
                self._leases.delete(job_id, retry=True)

    def close(self) -> None:
        for cache in (self._jobs, self._keys, self._leases, self._active):
            cache.close()

    def _load(self, job_id: str) -> JobRecord | None:
        data = cast("str | None", self._jobs.get(job_id))
        return None if data is None else JobRecord.model_validate_json(data)

    def _job_ids(self, *, reverse: bool) -> Iterator[str]:
        """Job ids in key order, fetched by diskcache in small batches (never all records at once)."""
        return cast("Iterator[str]", self._jobs.iterkeys(reverse=reverse))


def _open(directory: Path) -> Cache:
    # eviction_policy="none": diskcache otherwise culls the oldest items past its 1 GB default limit.
    return Cache(str(directory), eviction_policy="none")
