"""The job engine: the only writer of job state.

A call becomes a `JobRecord` stored as `queued` *before* anything is sent. A driver task, running
in the engine's own task group (never in the tool call, so a client timeout cannot kill it),
takes the job's lease, submits it within the provider's limits, stores the provider's id the
moment it arrives, polls with backoff from the model's typical duration, downloads the outputs
and ends the job.

Every change of a job goes through one function (`_write`), which refuses to leave a terminal
state, stamps the time, persists and wakes waiters. It is reached by one method per transition,
named for what happened (`_sending`, `_not_sent`, `_submitted`, `_running`, `_succeed`, `_fail`,
`_canceled`) and by `_update` for changes that are not transitions (a poll counted, a batch's
items recorded).

Never pay twice: a submission is retried only when the provider surely did not accept it.
When it may have been accepted but its id is unknown, the job fails with `submission_lost`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup

from server.errors import (
    AuthError,
    BadResponse,
    CallsheetError,
    ConfigError,
    InsufficientCredits,
    NotFound,
    ProviderError,
    ProviderRejected,
    StorageError,
    TransportError,
)
from server.ledger import Ledger
from server.links import Links
from server.media import CallerImages, Media
from server.models import (
    ACTIVE,
    HOLDS_KEY,
    TERMINAL,
    Job,
    JobError,
    JobRecord,
    JobStatus,
    Output,
    new_job_id,
    utcnow,
)
from server.policy import (
    PACE_KEPT,
    PACE_RANGE,
    PACE_REREAD,
    PREPARE_AT_ONCE,
    PollPolicy,
    RetryPolicy,
    pace,
)
from server.providers.base import Provider, RemoteState, StatusReport, Submission
from server.signals import Signals, hook_topic, job_topic
from server.store import LeaseLost, Store

log = logging.getLogger("callsheet.engine")

_driving: ContextVar[str | None] = ContextVar("callsheet_driving", default=None)
"""The job the current task drives: its writes are fenced by the job's lease (`Engine._write`)."""

ProgressFn = Callable[[float, str], Awaitable[None]]

SUBMISSION_LOST = (
    "The submission may have reached {provider} but its job id never came back ({why}), so it may "
    "have been charged. callsheet will not resend it by itself. Check the provider's dashboard; "
    "to generate again anyway, repeat the call with force: true."
)
REREAD_SECONDS = 1.0
"""A waiter reads its jobs again at least this often, even when no wake-up arrives (a lost message)."""
REFETCHABLE = frozenset({"download_failed", "disk_full", "storage_error"})
"""Failures after the provider finished the job: a repeat fetches its outputs again, paying nothing."""


@dataclass(frozen=True)
class WaitResult:
    jobs: list[JobRecord]
    pending: list[str]


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        media: Media,
        providers: dict[str, Provider],
        signals: Signals | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        lease_ttl: float = 30.0,
        ledger: Ledger | None = None,
        links: Links | None = None,
    ) -> None:
        self.store = store
        self.links = links
        """Signed links for outputs (server/links.py); None without CALLSHEET_PUBLIC_URL."""
        self.ledger = ledger
        """Each caller's day of credits and the audit trail (server/ledger.py); None keeps no books."""
        self.media = media
        self.providers = providers
        self.signals = signals or Signals()
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()
        self.lease_ttl = lease_ttl
        self.reread_seconds = REREAD_SECONDS
        self.lease_holder = f"{os.uname().nodename}:{os.getpid()}:{os.urandom(3).hex()}"
        """Who this engine is when it holds a job's lease (one per process)."""
        self._tg: TaskGroup | None = None
        self._drivers: dict[str, anyio.CancelScope] = {}
        self._slots: dict[str, str] = {}
        """Jobs holding an in-flight slot here, and their provider (slots are renewed by provider)."""
        self._stopping = False
        self._leased: set[str] = set()
        self._preparing = anyio.CapacityLimiter(PREPARE_AT_ONCE)
        self.paces = Paces(store)

    # -- lifecycle -------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Engine]:
        """Run the engine: resume unfinished jobs now, adopt orphans later, stop drivers on exit.

        On exit the drivers stop without giving their leases and slots back one by one: they are
        given back together afterwards (ten thousand drivers stopping at once would otherwise queue
        ten thousand store calls, each holding up the cancellation of all the others)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._renew_forever)
                await self.resume()
                tg.start_soon(self._sweep_forever)
                try:
                    yield self
                finally:
                    self._tg = None
                    self._stopping = True
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._give_back()

    async def _give_back(self) -> None:
        """Give back every lease and in-flight slot still held here, in a few store calls."""
        by_provider: dict[str, list[str]] = {}
        for job_id, provider in self._slots.items():
            by_provider.setdefault(provider, []).append(job_id)
        try:
            for provider, job_ids in by_provider.items():
                await self.providers[provider].limiter.free(job_ids)
            await self.store.release_leases(sorted(self._leased), self.lease_holder)
        except StorageError as exc:
            log.warning("leases and slots left to lapse by themselves: %s", exc.message)
        self._slots.clear()
        self._leased.clear()

    async def resume(self) -> int:
        """Start a driver for every unfinished job that no live process is driving: their leases are
        taken together (one store call per few hundred jobs), and each driver starts from the record
        just read (every write re-checks the stored one, so a stale copy changes nothing)."""
        records = [
            r
            for r in await self.store.unfinished()
            if r.job_id not in self._drivers and r.provider in self.providers
        ]
        held = set(
            await self.store.acquire_leases([r.job_id for r in records], self.lease_holder, self.lease_ttl)
        )
        self._leased |= held
        for record in records:
            if record.job_id in held:
                self._spawn(record.job_id, record)
        return len(held)

    async def _sweep_forever(self) -> None:
        while True:
            await anyio.sleep(self.lease_ttl / 2)
            try:
                await self.resume()
            except StorageError as exc:
                log.warning("unfinished jobs not swept: %s", exc.message)

    def _spawn(self, job_id: str, record: JobRecord | None = None) -> None:
        """Start the job's driver, unless one runs here already. With `record`, its lease is held."""
        if self._tg is None:
            raise RuntimeError("the engine is not running")
        if job_id in self._drivers:
            return
        scope = anyio.CancelScope()
        self._drivers[job_id] = scope
        self._tg.start_soon(self._drive, job_id, scope, record)

    # -- what tools, the shoot runner and the command line call ----------------------------

    def provider(self, name: str) -> Provider:
        try:
            return self.providers[name]
        except KeyError:
            raise ConfigError(
                f"Provider {name} is off: set its API key, or CALLSHEET_SANDBOX=1 to use its sandbox."
            ) from None

    async def submit(
        self,
        provider_name: str,
        operation: str,
        args: dict[str, Any],
        *,
        force: bool = False,
        shoot_id: str | None = None,
        caller: str | None = None,
        caller_label: str | None = None,
    ) -> JobRecord:
        """Validate, store and start a job; an identical earlier call returns its job instead.

        Raises InputError (nothing stored, nothing charged) when the arguments cannot be submitted, and
        BudgetExceeded when the job would take the caller past the day's credits.
        """
        provider = self.provider(provider_name)
        # A burst of calls is prepared and stored a few at a time, in arrival order: the first job
        # reaches the provider after its own input files are read and its record written, not after
        # those of the sixty behind it (their writes would queue ahead of its driver's).
        async with self._preparing:
            images = CallerImages(self.media, caller, links=provider.image_urls_only)
            prepared = await provider.prepare(operation, args, images)
            key = job_key(provider.name, operation, prepared.key_material, caller)
            now = utcnow()
            record = JobRecord(
                job_id=new_job_id(),
                provider=provider.name,
                operation=operation,
                status=JobStatus.QUEUED,
                credits_estimate=prepared.credits_estimate,
                sandbox=provider.sandbox,
                created_at=now,
                updated_at=now,
                key=key,
                payload=prepared.payload,
                summary=prepared.summary,
                shoot_id=shoot_id,
                caller=caller,
                caller_label=caller_label,
                typical_seconds=prepared.typical_seconds * provider.time_scale,
            )
            held = None if force else await self.store.holder(key)
            finished = held if _refetchable(held) else None
            if finished is not None:
                # The provider finished this very call before and only its outputs were lost: follow that
                # provider job again instead of paying for a new one.
                record = record.model_copy(
                    update={
                        "status": JobStatus.SUBMITTED,
                        "provider_job_id": finished.provider_job_id,
                        "submitted_at": now,
                        "credits_used": finished.credits_used,
                        "payload": None,
                    }
                )
            # An identical call that holds its key is that job again, at no cost: nothing to take.
            repeat = held is not None and held.status in HOLDS_KEY
            estimate = 0.0 if repeat else record.credits_estimate or 0.0
            if self.ledger is not None and estimate:
                await self.ledger.reserve(caller, estimate, f"{provider.name}_{operation}")
            # Stored with its key as one step (`Store.add`), and started in the same breath: a caller that
            # goes away meanwhile (a client timeout, a shoot canceled) leaves no job that waits for the
            # next sweep to be driven.
            with anyio.CancelScope(shield=True):
                try:
                    stored = await self._store_new(record, force)
                except BaseException:
                    if self.ledger is not None:
                        await self.ledger.give_back(caller, estimate, now)
                    raise
                if stored.job_id != record.job_id and self.ledger is not None:
                    await self.ledger.give_back(caller, estimate, now)  # the earlier job: nothing new spent
            return stored

    async def _store_new(self, record: JobRecord, force: bool) -> JobRecord:
        """Store a new job holding its key and start it; an identical earlier job that holds the key
        is returned (and started, if it was left by a process that died) instead."""
        stored = await self.store.add(record, force=force, holder=self.lease_holder, ttl=self.lease_ttl)
        if stored.job_id != record.job_id:
            if stored.active:
                self._spawn(stored.job_id)
            return stored
        self._leased.add(record.job_id)  # taken with the job: its driver starts at once
        self._spawn(record.job_id, record)
        await self.signals.notify(job_topic(record.job_id), record)
        return record

    async def get(self, job_id: str, *, caller: str | None = None) -> JobRecord:
        """The job, if it exists and `caller` (None: the local user) may see it; else NotFound."""
        record = await self.store.get(job_id)
        if record is None or (caller is not None and record.caller != caller):
            raise NotFound(f"Unknown job id {job_id!r}. jobs_list shows the jobs there are.")
        return record

    async def find(self, job_id: str) -> JobRecord | None:
        """The job or None, whoever it belongs to (for the runner and the app, which check callers)."""
        return await self.store.get(job_id)

    async def called_back(self, job_id: str) -> str:
        """A provider's webhook for `job_id` arrived: wake its driver (on any replica) to confirm the
        state with one status call; the webhook's body is not trusted. For a job that has ended
        already, nothing happens (a webhook may come twice)."""
        record = await self.find(job_id)
        if record is None:
            raise NotFound(f"Unknown job {job_id!r}.")
        if record.status in TERMINAL:
            return "ended already"
        await self.signals.notify(hook_topic(job_id))
        return "looking"

    async def cancel(self, job_id: str, *, caller: str | None = None) -> tuple[JobRecord, str]:
        """Cancel at the provider where it can; returns the job and a sentence saying what happened."""
        return await self._cancel(await self.get(job_id, caller=caller))

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        provider: str | None = None,
        shoot_id: str | None = None,
        caller: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        return await self.store.list(
            status=status, provider=provider, shoot_id=shoot_id, caller=caller, limit=limit, cursor=cursor
        )

    async def wait(
        self,
        job_ids: list[str],
        *,
        wait_seconds: float,
        until: Literal["all", "any"] = "all",
        on_progress: ProgressFn | None = None,
        caller: str | None = None,
    ) -> WaitResult:
        """Wait up to `wait_seconds` for the jobs, reporting progress; returns early when done.

        Only these jobs' changes wake it. A change made in this process hands over the record it wrote,
        so the store is read again only for a change made on another replica and by the safety-net
        re-read each `reread_seconds` (a wake-up missed); a finished job is never read again.
        """
        deadline = time.monotonic() + wait_seconds
        with self.signals.watch(job_topic(j) for j in job_ids) as changes:
            latest = {j: await self.get(j, caller=caller) for j in job_ids}
            while True:
                records = [latest[j] for j in job_ids]
                done = [r.status in TERMINAL for r in records]
                if (all(done) if until == "all" else any(done)) or time.monotonic() >= deadline:
                    pending = [r.job_id for r in records if r.status not in TERMINAL]
                    return WaitResult(jobs=records, pending=pending)
                if on_progress is not None:
                    total = sum(self.progress(r) for r in records) / len(records)
                    await on_progress(total, _progress_message(records))
                heard = await changes.wait(min(self.reread_seconds, max(0.0, deadline - time.monotonic())))
                for job_id, record in latest.items():
                    if record.status in TERMINAL or (heard and job_topic(job_id) not in heard):
                        continue
                    news = heard.get(job_topic(job_id))
                    if isinstance(news, JobRecord) and news.updated_at >= record.updated_at:
                        latest[job_id] = news
                    else:
                        latest[job_id] = await self.get(job_id, caller=caller)

    def public(self, record: JobRecord) -> Job:
        """The client-facing `Job`, with its progress estimated now."""
        job = record.public()
        job.progress = self.progress(record)
        if self.links is not None:
            for n, output in enumerate(job.outputs):
                output.download_url = self.links.sign(f"jobs/{job.job_id}/outputs/{n}")
        return job

    def progress(self, record: JobRecord) -> float:
        """Estimated progress: from the time since submission against the model's typical duration."""
        if record.status in TERMINAL:
            return 1.0 if record.status is JobStatus.SUCCEEDED else record.progress
        if record.status is JobStatus.QUEUED:
            # Not accepted yet: waiting for its turn, or being sent (a synchronous call while it runs).
            return 0.0 if record.submit_started_at is None else 0.05
        started = record.submitted_at or record.created_at
        elapsed = (utcnow() - started).total_seconds()
        typical = record.typical_seconds * self.paces.known(record)
        return round(min(0.95, 0.05 + 0.9 * elapsed / max(typical * 1.2, 0.001)), 3)

    # -- transitions: one method each, all through `_write` ------------------------------------

    async def _sending(self, record: JobRecord) -> JobRecord:
        """About to send the submission: from now on it may reach the provider."""
        return await self._write(record, JobStatus.QUEUED, submit_started_at=utcnow())

    async def _not_sent(self, record: JobRecord) -> JobRecord:
        """The submission surely did not reach the provider (refused connection, 429, 5xx)."""
        return await self._write(record, JobStatus.QUEUED, submit_started_at=None)

    async def _submitted(self, record: JobRecord, submission: Submission) -> JobRecord:
        return await self._write(
            record,
            JobStatus.SUBMITTED,
            provider_job_id=submission.provider_job_id,
            submitted_at=utcnow(),
            credits_used=submission.credits_used,
            payload=None,
        )

    async def _running(self, record: JobRecord, **changes: Any) -> JobRecord:
        return await self._write(record, JobStatus.RUNNING, **changes)

    async def _succeed(
        self, record: JobRecord, outputs: list[Output], credits: float | None, **changes: Any
    ) -> JobRecord:
        return await self._write(
            record, JobStatus.SUCCEEDED, outputs=outputs, credits_used=credits, **changes
        )

    async def _fail(self, record: JobRecord, error: JobError, **changes: Any) -> JobRecord:
        return await self._write(record, JobStatus.FAILED, error=error, **changes)

    async def _canceled(self, record: JobRecord, note: str, **changes: Any) -> JobRecord:
        error = JobError(code="canceled", message=note, retryable=True)
        return await self._write(record, JobStatus.CANCELED, error=error, **changes)

    async def _update(self, record: JobRecord, **changes: Any) -> JobRecord:
        """A change that is not a transition (a poll counted, an id kept): the state stays."""
        return await self._write(record, None, **changes)

    async def _write(self, record: JobRecord, status: JobStatus | None, **changes: Any) -> JobRecord:
        """The one function that changes a job: apply `changes` (and `status`; None keeps it) to the
        stored record, refuse to leave a terminal state (a late poll never overwrites a cancel), stamp
        the time, persist, wake waiters. One atomic step in the store: a cancel from another replica
        is never lost between the read and the write.

        A driver writes as the holder of the job's lease: if another process took the lease, the write
        is refused (LeaseLost) and the driver stops. A store that cannot be reached (Redis away) makes
        a driver wait and write again, so nothing it learned (a provider's job id) is lost.
        """

        ended = False

        def change(current: JobRecord) -> JobRecord | None:
            nonlocal ended
            target = current.status if status is None else status
            ended = current.status not in TERMINAL and target in TERMINAL
            if current.status in TERMINAL and current.status is not target:
                return None
            updated = current.model_copy(update={**changes, "status": target, "updated_at": utcnow()})
            if target in TERMINAL:
                updated.progress = 1.0 if target is JobStatus.SUCCEEDED else self.progress(current)
                updated.payload = None
            else:
                updated.progress = self.progress(updated)
            return updated

        holder = self.lease_holder if _driving.get() == record.job_id else None
        delay = 0.5
        while True:
            try:
                stored = await self.store.update(record.job_id, change, holder=holder)
                break
            except StorageError as exc:
                if holder is None or exc.code != "store_unavailable":
                    raise
                log.warning("job %s waits for the store: %s", record.job_id, exc.message)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if stored is None:
            raise NotFound(f"Job {record.job_id} is no longer in the store.")
        await self.signals.notify(job_topic(stored.job_id), stored)
        if ended and self.ledger is not None:
            try:
                await self.ledger.settle(stored)
            except (OSError, StorageError) as exc:  # the books may lag; the job's end must not
                log.warning("job %s: its credits were not booked: %s", record.job_id, exc)
        return stored

    # -- cancel ------------------------------------------------------------------------------

    async def _cancel(self, record: JobRecord) -> tuple[JobRecord, str]:
        job_id = record.job_id
        if record.status in TERMINAL:
            return record, f"Job {job_id} had already {record.status.value}; nothing to cancel."
        note = "Canceled before it was sent to the provider; nothing was charged."
        if record.provider_job_id:
            provider = self.provider(record.provider)
            try:
                done = await provider.cancel(record.provider_job_id, record.operation)
            except ProviderError as exc:
                done = False
                log.info("cancel of %s at %s failed: %s", job_id, record.provider, exc)
            note = (
                f"Canceled at {record.provider} too."
                if done
                else f"{record.provider} offers no way to cancel a running job: it may still finish and be "
                "charged; callsheet stops following it."
            )
        scope = self._drivers.get(job_id)
        if scope is not None:
            scope.cancel()
        record = await self._canceled(record, note)
        # A batch is marked canceled before its items, so no driver sees the items end first.
        for child_id in record.children:
            child = await self.store.get(child_id)
            if child is not None and child.status not in TERMINAL:
                await self._cancel(child)
        return record, note

    async def _cancel_late(self, provider: Provider, record: JobRecord, provider_job_id: str) -> None:
        """The user canceled while the submission was in flight: cancel it at the provider too."""
        await self._update(record, provider_job_id=provider_job_id)
        try:
            await provider.cancel(provider_job_id, record.operation)
        except ProviderError as exc:
            log.info("late cancel of %s failed: %s", record.job_id, exc)

    # -- the driver --------------------------------------------------------------------------

    async def _drive(self, job_id: str, scope: anyio.CancelScope, record: JobRecord | None) -> None:
        _driving.set(job_id)
        try:
            with scope:
                async with self._lease(job_id, held=record is not None) as held:
                    if held:
                        await self._run(job_id, record)
        except LeaseLost:
            log.warning("lost the lease on %s; another process drives it now", job_id)
        except StorageError as exc:
            # The store cannot be written (a full disk): the job keeps its last stored state and is
            # taken up again by the sweep once its lease lapses. One job's trouble, not the server's.
            log.warning("job %s paused: %s", job_id, exc.message)
        finally:
            if self._drivers.get(job_id) is scope:
                del self._drivers[job_id]

    @asynccontextmanager
    async def _lease(self, job_id: str, *, held: bool = False) -> AsyncIterator[bool]:
        """Hold the job's lease while driving it (`held`: taken already); `_renew_forever` keeps every
        held lease alive."""
        if not held and not await self.store.acquire_leases([job_id], self.lease_holder, self.lease_ttl):
            yield False
            return
        self._leased.add(job_id)
        try:
            yield True
        finally:
            if not self._stopping:  # stopping: `_give_back` returns them all at once
                self._leased.discard(job_id)
                with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                    await self.store.release_leases([job_id], self.lease_holder)  # else it lapses

    async def _renew_forever(self) -> None:
        """One loop renews every lease this engine holds (not a task per job: thousands may run), and
        the in-flight slots of those jobs with them."""
        while True:
            await anyio.sleep(self.lease_ttl / 3)
            slots: dict[str, list[str]] = {}
            for job_id, provider in list(self._slots.items()):
                slots.setdefault(provider, []).append(job_id)
            for name, job_ids in slots.items():
                try:
                    await self.providers[name].limiter.renew(job_ids, self.lease_ttl)
                except StorageError as exc:
                    log.warning("in-flight slots of %s not renewed: %s", name, exc.message)
            leased = sorted(self._leased)
            try:
                renewed = set(await self.store.acquire_leases(leased, self.lease_holder, self.lease_ttl))
            except StorageError as exc:
                log.warning("leases of %d jobs not renewed: %s", len(leased), exc.message)
                continue  # the store is away: try again next round
            for job_id in leased:
                if job_id in self._leased and job_id not in renewed:
                    log.warning("lost the lease on %s; another process drives it now", job_id)
                    self._leased.discard(job_id)
                    scope = self._drivers.get(job_id)
                    if scope is not None:
                        scope.cancel()

    async def _run(self, job_id: str, record: JobRecord | None) -> None:
        record = record or await self.store.get(job_id)
        if record is None or record.status not in ACTIVE:
            return
        provider = self.providers[record.provider]
        queued = record.status is JobStatus.QUEUED
        # A job already sent (resumed after a restart) runs at the provider: it takes a slot regardless.
        await provider.limiter.take(
            job_id, ttl=self.lease_ttl, wait=queued and record.submit_started_at is None
        )
        self._slots[job_id] = provider.name
        try:
            if record.status is JobStatus.QUEUED:
                record = await self._submit(provider, record)
            if record.status in (JobStatus.SUBMITTED, JobStatus.RUNNING):
                if record.children:
                    await self._follow_children(record)
                else:
                    await self._follow(provider, record)
        except (StorageError, LeaseLost):
            raise  # the job's state cannot be written, or is no longer ours: `_drive` stops
        except CallsheetError as exc:
            # Anything not handled below ends the job with the error, so nothing is left hanging.
            log.info("job %s failed: %s", job_id, exc.code)
            latest = await self.store.get(job_id)
            if latest is not None and latest.status in ACTIVE:
                await self._fail(latest, _job_error(exc))
        finally:
            if not self._stopping:  # stopping: `_give_back` returns them all at once
                with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                    await self._free_slot(job_id)

    async def _free_slot(self, job_id: str) -> None:
        """Give the job's in-flight slot back (once; a job without one has nothing to give)."""
        provider = self._slots.pop(job_id, None)
        if provider is not None:
            await self.providers[provider].limiter.free([job_id])

    async def _submit(self, provider: Provider, record: JobRecord) -> JobRecord:
        if record.submit_started_at is not None:
            # We died while sending: it may have been accepted, so it must not be sent again.
            why = "the server stopped while sending it"
            return await self._fail(record, _submission_lost(provider, why))
        if record.payload is None:
            raise BadResponse("The stored request is missing; repeat the call.", retryable=True)
        for attempt in range(1, self.retry.attempts + 1):
            record = await self._sending(record)
            if record.status in TERMINAL:
                return record  # canceled while it waited for its turn: send nothing
            try:
                # Shielded: a cancel arriving mid-send must not lose the id of a job that was accepted.
                # A batch's items are stored in the same breath: a batch accepted is never left without them.
                with anyio.CancelScope(shield=True):
                    hook = self.links.hook(record.job_id) if self.links and provider.webhooks else None
                    submission = await provider.submit(
                        record.operation, record.payload or {}, webhook_url=hook
                    )
                    submitted = await self._submitted(record, submission)
                    if submitted.status is JobStatus.CANCELED and submission.provider_job_id:
                        await self._cancel_late(provider, submitted, submission.provider_job_id)
                        return submitted
                    if submission.children:
                        return await self._adopt_children(provider, submitted, submission)
            except (TransportError, BadResponse) as exc:
                if isinstance(exc, BadResponse) or exc.maybe_sent:
                    return await self._fail(record, _submission_lost(provider, exc.message))
                error: ProviderError = exc
            except ProviderError as exc:
                if not exc.retryable:
                    raise
                error = exc
            else:
                record = submitted
                if submission.done is not None:
                    return await self._end(provider, record, submission.done)
                return record
            # Surely not accepted (connection refused, 429, 5xx): clear the marker and try again.
            record = await self._not_sent(record)
            if attempt == self.retry.attempts:
                raise error
            await anyio.sleep(self.retry.delay(attempt, getattr(error, "retry_after", None)))
        raise AssertionError("unreachable")

    async def _adopt_children(
        self, provider: Provider, parent: JobRecord, submission: Submission
    ) -> JobRecord:
        """A batch was accepted: store one child job per item (already submitted), then follow them."""
        now = utcnow()
        children = [
            JobRecord(
                job_id=new_job_id(),
                provider=parent.provider,
                operation=submission.child_operation or parent.operation,
                status=JobStatus.SUBMITTED,
                sandbox=parent.sandbox,
                created_at=now,
                updated_at=now,
                provider_job_id=provider_id,
                submitted_at=now,
                summary={"batch": parent.job_id, "item": n},
                shoot_id=parent.shoot_id,
                caller=parent.caller,
                typical_seconds=parent.typical_seconds,
                parent_job_id=parent.job_id,
            )
            for n, provider_id in enumerate(submission.children)
        ]
        for child in children:
            await self.store.put(child)
        parent = await self._running(parent, children=[c.job_id for c in children])
        for child in children:
            self._spawn(child.job_id)
        return parent

    async def _follow_children(self, parent: JobRecord) -> None:
        """A batch ends when all its items have: its outputs are theirs, its credits their sum."""
        with self.signals.watch(job_topic(j) for j in [parent.job_id, *parent.children]) as changes:
            while True:
                children = [await self.store.get(job_id) for job_id in parent.children]
                latest = await self.store.get(parent.job_id)
                if latest is None or latest.status in TERMINAL:
                    return
                done = [c for c in children if c is not None and c.status in TERMINAL]
                if len(done) == len(children):
                    break
                await changes.wait(self.reread_seconds)  # a wake-up missed is seen by the re-read
        outputs = [
            output.model_copy(update={"uri": f"callsheet://jobs/{parent.job_id}/outputs/{n}"})
            for n, output in enumerate(o for c in done for o in c.outputs)
        ]
        credits = sum(c.credits_used or 0 for c in done)
        failed = [c for c in done if c.status is not JobStatus.SUCCEEDED]
        if not failed:
            await self._succeed(latest, outputs, credits)
            return
        reasons = "; ".join(f"{c.job_id}: {c.error.code if c.error else c.status.value}" for c in failed)
        error = JobError(
            code="batch_incomplete",
            message=f"{len(failed)} of {len(done)} items did not succeed ({reasons}); the outputs of "
            "the others are kept. Repeat the failed items on their own.",
            retryable=True,
        )
        await self._fail(latest, error, outputs=outputs, credits_used=credits)

    async def _follow(self, provider: Provider, record: JobRecord) -> None:
        """Poll until the job ends, starting near its typical duration and backing off."""
        provider_job_id = record.provider_job_id
        if provider_job_id is None:
            raise BadResponse(
                f"{provider.name} accepted the job without an id to follow it by; its result is unknown. "
                "Check the provider's dashboard, or repeat the call with force: true.",
                retryable=False,
                provider=provider.name,
            )
        failures = 0
        calls = record.status_calls  # written with the job's next change of state, not after every call
        # When the job was last seen still running (s after it started): its end falls after that.
        # Unknown for a job followed again after a restart, which therefore teaches no pace.
        running_at: float | None = 0.0 if calls == 0 else None
        # The provider's clock starts when the request arrives: closer to sending than to the answer.
        started = record.submit_started_at or record.submitted_at or record.created_at
        # With a webhook (the provider calls back when the job ends), its call is heard here, also while
        # the provider is being asked.
        hooked = self.links is not None and provider.webhooks
        planned: int | None = None  # of the poll policy's planned looks, how many this job has had
        # Past them, its polls share the provider's status budget (`Limiter.poll_interval`).
        with (
            provider.limiter.following() as follow,
            self.signals.watch([hook_topic(record.job_id)] if hooked else []) as called_back,
        ):
            while True:
                elapsed = (utcnow() - started).total_seconds()
                pace = await self.paces.of(record)
                typical = record.typical_seconds * pace
                if planned is None:  # taken up late (a restart): looked at once, then the looks still ahead
                    planned = self.poll.passed(typical, elapsed)
                if planned >= len(self.poll.looks):
                    follow.step()
                wait, is_planned = self.poll.next_look(typical, elapsed, planned, pace)
                delay = max(wait, await provider.limiter.poll_interval())
                if failures:
                    delay = max(delay, self.retry.delay(failures))
                if hooked:
                    # The provider calls back when the job ends: look then, and before that only as a
                    # safety net.
                    delay = max(delay, self.poll.webhook_safety * typical - elapsed)
                    await called_back.wait(delay)
                else:
                    await anyio.sleep(delay)
                latest = await self.store.get(record.job_id)
                if latest is None or latest.status in TERMINAL:
                    return  # canceled (perhaps by another process) while we slept
                record = latest
                calls += 1
                planned += is_planned
                looked_at = (utcnow() - started).total_seconds()
                try:
                    report = await provider.status(provider_job_id, record.operation)
                except ProviderError as exc:
                    if isinstance(exc, AuthError | InsufficientCredits | ProviderRejected) or (
                        not exc.retryable and failures >= 2
                    ):
                        await self._update(record, status_calls=calls)
                        raise
                    failures += 1
                    continue
                failures = 0
                if report.state in (RemoteState.RUNNING, RemoteState.PENDING):
                    running_at = looked_at
                    if report.state is RemoteState.RUNNING and record.status is not JobStatus.RUNNING:
                        record = await self._running(record, status_calls=calls)
                else:
                    await self._end(provider, record, report, status_calls=calls)
                    if report.state is RemoteState.SUCCEEDED and running_at is not None:
                        # It ended between the last look that saw it running and this one: the middle. One
                        # never seen running ended before its first look, how long before is unknown: the
                        # look itself, an upper bound (the looks then move earlier until they see it run).
                        await self.paces.learn(
                            record, (running_at + looked_at) / 2 if running_at else looked_at
                        )
                    return
                if record.status in TERMINAL:
                    return

    async def _end(
        self, provider: Provider, record: JobRecord, report: StatusReport, **changes: Any
    ) -> JobRecord:
        """End the job from a terminal report: download outputs the moment it succeeds.

        The job no longer runs at the provider, so its in-flight slot is freed before the download.
        """
        await self._free_slot(record.job_id)
        credits = report.credits_used if report.credits_used is not None else record.credits_used
        if report.state is RemoteState.FAILED:
            error = report.error or JobError(
                code="job_failed", message="The provider reported a failure.", retryable=True
            )
            return await self._fail(record, error, credits_used=0 if credits is None else credits, **changes)
        if report.state is RemoteState.CANCELED:
            return await self._canceled(record, "Canceled at the provider.", **changes)
        urls = ", ".join(o.url for o in report.outputs if o.url) or "none (inline data)"
        for attempt in range(1, self.retry.attempts + 1):
            try:
                outputs = await provider.save_outputs(self.media, record, report.outputs)
                break
            except StorageError as exc:
                # Nothing to gain from trying again at once: the disk must have room first.
                error = JobError(
                    code=exc.code, message=_outputs_lost(provider, record, exc, urls), retryable=True
                )
                return await self._fail(record, error, credits_used=credits, **changes)
            except ProviderError as exc:
                if not exc.retryable or attempt == self.retry.attempts:
                    error = JobError(
                        code="download_failed",
                        message=_outputs_lost(provider, record, exc, urls),
                        retryable=exc.retryable,
                    )
                    return await self._fail(record, error, credits_used=credits, **changes)
                await anyio.sleep(self.retry.delay(attempt))
        return await self._succeed(record, outputs, credits, **changes)


class Paces:
    """How fast each provider's operation runs now against its documented duration (`policy.pace`),
    learned from the jobs seen ending and kept in the store, so that every replica polls by it and a
    restart keeps what was learned. Read again every PACE_REREAD s for what other replicas taught."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: dict[str, tuple[float, float]] = {}
        """By kind (provider/operation): the pace and when it was read (monotonic seconds)."""

    def known(self, record: JobRecord) -> float:
        """The pace as last read (1 before it was read), without waiting for the store."""
        return self._known.get(_kind(record), (1.0, 0.0))[0]

    async def of(self, record: JobRecord) -> float:
        kind = _kind(record)
        known = self._known.get(kind)
        if known is None or time.monotonic() - known[1] > PACE_REREAD:
            try:
                ratios = await self.store.paces(kind)
            except StorageError:  # the store is away: poll by what was known (or the documented pace)
                return 1.0 if known is None else known[0]
            known = self._known[kind] = (pace(ratios), time.monotonic())
        return known[0]

    async def learn(self, record: JobRecord, seconds: float) -> None:
        """Count a job of this kind that ran about `seconds` (a lesson lost to an absent store is no harm)."""
        if record.typical_seconds <= 0:
            return
        ratio = min(max(seconds / record.typical_seconds, PACE_RANGE[0]), PACE_RANGE[1])
        try:
            ratios = await self.store.learn_pace(_kind(record), ratio, PACE_KEPT)
        except StorageError as exc:
            log.info("the pace of %s was not learned: %s", _kind(record), exc)
            return
        self._known[_kind(record)] = (pace(ratios), time.monotonic())


def _refetchable(holder: JobRecord | None) -> bool:
    """Whether `holder`, the earlier job of a call, was finished by the provider and only saving its
    outputs failed: then it is followed again instead of paying for a new one."""
    return (
        holder is not None
        and holder.status is JobStatus.FAILED
        and holder.error is not None
        and holder.error.code in REFETCHABLE
        and bool(holder.provider_job_id)
        and not holder.children
    )


def _kind(record: JobRecord) -> str:
    return f"{record.provider}/{record.operation}"


def job_key(provider: str, operation: str, inputs: dict[str, Any], caller: str | None = None) -> str:
    """Hash of provider, operation and normalized inputs (files by content hash): identical calls share it."""
    # "owner" is the caller's name in keys made before it was renamed: identical calls stay one job.
    material = {"provider": provider, "operation": operation, "inputs": inputs, "owner": caller}
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _submission_lost(provider: Provider, why: str) -> JobError:
    return JobError(
        code="submission_lost",
        message=SUBMISSION_LOST.format(provider=provider.name, why=why),
        retryable=True,
    )


def _outputs_lost(provider: Provider, record: JobRecord, exc: CallsheetError, urls: str) -> str:
    again = (
        "Repeat the same call (without force) to fetch them again from the provider, paying nothing, "
        "while the provider keeps them."
        if record.provider_job_id
        else "They can be fetched from the provider's URLs while the provider keeps them."
    )
    return (
        f"The job succeeded at {provider.name} but its outputs were not saved: {exc.message} {again} "
        f"URLs: {urls}"
    )


def _job_error(exc: CallsheetError) -> JobError:
    return JobError(code=exc.code, message=exc.message, retryable=exc.retryable)


def _progress_message(records: Iterable[JobRecord]) -> str:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
