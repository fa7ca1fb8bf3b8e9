"""Job store: the interface and its diskcache backend.

Records are JSON (`JobRecord.model_dump(mode="json")`) under explicit key prefixes. The store
is process-safe: two servers on one data folder share it, and leases make sure only one of
them drives (submits or polls) any given job.
"""

from __future__ import annotations

from typing import Protocol

from server.models import JobRecord, JobStatus


class Store(Protocol):
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
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first, filtered; returns (page, next_cursor). The cursor is opaque to callers."""

    async def unfinished(self) -> list[JobRecord]:
        """Every job whose status is queued, submitted or running."""

    async def acquire_lease(self, job_id: str, owner: str, ttl: float) -> bool:
        """Take or renew the lease on a job for `ttl` seconds; False when another owner holds it."""

    async def release_lease(self, job_id: str, owner: str) -> None:
        """Give the lease up (only if `owner` holds it)."""

    def close(self) -> None:
        """Release file handles."""
