"""Who spent what: each caller's credits per UTC day, the daily budget, and the audit trail.

Before a job is sent, its estimate is taken from the caller's day (`reserve`): with
`CALLSHEET_CALLER_CREDITS_PER_DAY` set, a job that would take the caller past it is refused then, with
what is left and when the day resets, and nothing is stored or sent. When the job ends (`settle`),
the day is corrected to what the job cost: the credits the provider reported, else the estimate when
it may have been charged (it succeeded, was canceled at the provider, or its submission was lost),
else nothing. The totals live in the store (`Store.spend`), so every replica on one Redis keeps one
budget per caller.

The audit trail (`CALLSHEET_AUDIT_LOG`) gets one JSON line per action that spends or cancels, written
when the action ends, with its credits then: a job (generation), a shoot, a cancel. Lines are appended
whole (one `write` of a line under 4 KB with O_APPEND), so replicas sharing the file do not interleave.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from server.errors import BudgetExceeded
from server.models import JobRecord, JobStatus, credits_text, utcnow
from server.store import Store

LOCAL = "local"
"""The caller id of the local user (stdio, or HTTP on loopback without tokens) in the ledger."""


@dataclass(frozen=True)
class Usage:
    """A caller's day: what the `credits` tool and `callsheet doctor` show."""

    day: str
    used: float
    limit: float | None
    resets_at: datetime

    @property
    def left(self) -> float | None:
        return None if self.limit is None else max(0.0, self.limit - self.used)

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "used": round(self.used, 3),
            "limit": self.limit,
            "left": None if self.left is None else round(self.left, 3),
            "resets_at": self.resets_at.isoformat(),
        }


class Ledger:
    def __init__(self, store: Store, limit: float | None, audit_log: Path) -> None:
        self.store = store
        self.limit = limit
        self.audit_log = audit_log

    async def reserve(self, caller: str | None, amount: float, what: str) -> None:
        """Take `amount` credits (an estimate) from the caller's day before `what` is sent."""
        if await self.store.spend(_day(utcnow()), caller or LOCAL, amount, self.limit) is None:
            raise self._exceeded(await self.usage(caller), amount, what)

    async def check(self, caller: str | None, amount: float, what: str) -> None:
        """Refuse `what` now if its estimate is over what the caller has left today (nothing taken)."""
        if self.limit is not None:
            usage = await self.usage(caller)
            if amount > (usage.left or 0.0) + 1e-9:
                raise self._exceeded(usage, amount, what)

    def _exceeded(self, usage: Usage, amount: float, what: str) -> BudgetExceeded:
        wait = _until(usage.resets_at - utcnow())
        return BudgetExceeded(
            f"{what} (about {credits_text(amount)}) would take you past today's budget of "
            f"{credits_text(self.limit or 0)} (CALLSHEET_CALLER_CREDITS_PER_DAY): {usage.used:g} used, "
            f"{usage.left or 0:g} left. It resets at 00:00 UTC, in {wait}. Nothing was sent or charged: "
            "choose something cheaper, wait, or ask for a higher budget."
        )

    async def give_back(self, caller: str | None, amount: float, when: datetime) -> None:
        """Return an estimate taken on `when`'s day (the job was not made after all)."""
        if amount:
            await self.store.spend(_day(when), caller or LOCAL, -amount, None)

    async def settle(self, job: JobRecord, tool: str | None = None) -> None:
        """A job ended: correct its day to what it cost, and write its audit line."""
        estimate = job.credits_estimate or 0.0
        cost = charged(job)
        if cost != estimate:
            await self.store.spend(_day(job.created_at), job.caller or LOCAL, cost - estimate, None)
        await self.audit(
            caller=job.caller,
            label=job.caller_label,
            tool=tool or f"{job.provider}_{job.operation}",
            job_id=job.job_id,
            shoot_id=job.shoot_id,
            status=job.status.value,
            estimate=job.credits_estimate,
            credits_used=cost,
        )

    async def usage(self, caller: str | None) -> Usage:
        now = utcnow()
        spent = await self.store.spending(_day(now))
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        used = spent.get(caller or LOCAL, 0.0)
        return Usage(day=_day(now), used=used, limit=self.limit, resets_at=midnight)

    async def audit(self, **fields: Any) -> None:
        """One line of the audit trail: the time, then `fields` (caller, tool, ids, estimate, credits)."""
        line = json.dumps({"time": utcnow().isoformat(), **fields}, separators=(",", ":")) + "\n"
        await anyio.to_thread.run_sync(_append, self.audit_log, line.encode())


def charged(job: JobRecord) -> float:
    """What an ended job cost: the provider's figure, else the estimate where it may have been charged."""
    if job.credits_used is not None:
        return job.credits_used
    estimate = job.credits_estimate or 0.0
    if job.status is JobStatus.SUCCEEDED:
        return estimate
    if job.status is JobStatus.FAILED:
        return estimate if job.error is not None and job.error.code == "submission_lost" else 0.0
    return estimate if job.provider_job_id else 0.0  # canceled at the provider: it may bill the start


def _day(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d")


def _until(delta: timedelta) -> str:
    minutes = max(1, int(delta.total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _append(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
