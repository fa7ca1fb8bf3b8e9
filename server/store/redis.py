"""The Redis backend (`CALLSHEET_STORE=redis://...`): one store shared by every replica that names it.

It holds what the embedded store holds (job and shoot records, idempotency keys, leases) and what
one process otherwise keeps in memory: the providers' limits (rate windows, in-flight slots,
Retry-After, the header budget) and the wake-ups. Every change that must be atomic is one Lua
script, run by Redis as one step; times come from Redis itself (`TIME`), so replicas whose clocks
disagree still share one window.

Keys, under the prefix `callsheet:` (one deployment per Redis database):
- `job:{id}`, `shoot:{id}`: a hash of the record's JSON (`data`), its `status`, a version `v`
  (for compare-and-set) and `idx`, the index sets it is in;
- `jobs:{filter}`, `shoots:{filter}`: sorted sets of ids, one per combination of filter values
  (`jobs:` is every job, `jobs:status=running&provider=fashn` ...), all scores 0, so that newest
  first is reverse lexical order of the time-sortable ids and a page reads only its own records;
- `key:{key}`: the job that holds an idempotency key;
- `lease:{id}`: `{expires_ms}:{holder}` of a job or shoot's lease;
- `pace:{provider}/{operation}`: a list of the latest ratios of actual to documented duration;
- `spend:{day}`: a hash of the credits each caller spent that UTC day (kept a week);
- `limits:{provider}:...`: the provider's windows, blocks, budget and slots;
- channel `signals`: wake-ups (per message, the sending replica and a topic name).

Redis Cluster is not supported (scripts touch keys they compute); use one primary, with
persistence on (`appendonly yes`), so that a restart of Redis loses nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar, cast
from urllib.parse import quote

import anyio
import redis.asyncio as aioredis
import redis.exceptions
from pydantic import BaseModel, ValidationError

from server.errors import ConfigError, StorageError
from server.limiter import OUTSTANDING_SECONDS, Book, Ticket
from server.models import ACTIVE, HOLDS_KEY, JobRecord, JobStatus, ShootRecord, ShootStatus
from server.policy import RateWindow
from server.signals import Signals
from server.store.base import Backend, JobChange, LeaseLost, ShootChange, public_url

log = logging.getLogger("callsheet.store")

PREFIX = "callsheet:"
CAS_ATTEMPTS = 100
"""Compare-and-set retries of one update before giving up (each retry means another writer won)."""
LEASE_GC_SECONDS = 24 * 3600
"""A lease key left by a process that died is removed by Redis after this long."""
CONNECTIONS = 16
"""Redis operations at once per process (and connections): a burst waits its turn in line instead of
opening hundreds of connections, each costing a handshake."""
CHUNK = 500
"""Records read per round trip when many are wanted (start-up, sweeps)."""

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

# --- Scripts -------------------------------------------------------------------------------------

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

_WRITE = """
-- KEYS: record, lease. ARGV: expected version ('' = any), holder ('' = none), data, status, id, indexes.
local lease = ARGV[2] ~= '' and redis.call('GET', KEYS[2])
if ARGV[2] ~= '' and (not lease or string.sub(lease, string.find(lease, ':', 1, true) + 1) ~= ARGV[2]) then
  return -1
end
local current = redis.call('HMGET', KEYS[1], 'v', 'idx')
local version = tonumber(current[1] or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= version then return 0 end
if current[2] then
  for old in string.gmatch(current[2], '%S+') do redis.call('ZREM', old, ARGV[5]) end
end
for new in string.gmatch(ARGV[6], '%S+') do redis.call('ZADD', new, 0, ARGV[5]) end
redis.call('HSET', KEYS[1], 'data', ARGV[3], 'status', ARGV[4], 'idx', ARGV[6], 'v', version + 1)
return version + 1
"""

_ADD = (
    _NOW
    + """
-- KEYS: idempotency key, record, lease. ARGV: job id, force ('1'/'0'), job key prefix, statuses that
-- hold a key, data, status, indexes, lease holder ('' = none), ttl ms, gc ms. Returns the holder's
-- data when an identical job holds the key.
local holder = redis.call('GET', KEYS[1])
if ARGV[2] == '0' and holder and holder ~= ARGV[1] then
  local found = redis.call('HMGET', ARGV[3] .. holder, 'status', 'data')
  if found[1] and string.find(' ' .. ARGV[4] .. ' ', ' ' .. found[1] .. ' ', 1, true) then return found[2] end
end
for new in string.gmatch(ARGV[7], '%S+') do redis.call('ZADD', new, 0, ARGV[1]) end
redis.call('HSET', KEYS[2], 'data', ARGV[5], 'status', ARGV[6], 'idx', ARGV[7], 'v', 1)
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[8] ~= '' then
  local expires = string.format('%d', math.floor(now * 1000) + tonumber(ARGV[9]))
  redis.call('SET', KEYS[3], expires .. ':' .. ARGV[8], 'PX', ARGV[10])
end
return false
"""
)

_LEASE = (
    _NOW
    + """
-- KEYS: lease. ARGV: holder, ttl in ms, gc in ms. Value: '{expires_ms}:{holder}'.
local now_ms = math.floor(now * 1000)
local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, ':', 1, true)
  local expires, who = tonumber(string.sub(current, 1, sep - 1)), string.sub(current, sep + 1)
  if who ~= ARGV[1] and expires > now_ms then return 0 end
end
redis.call('SET', KEYS[1], string.format('%d', now_ms + tonumber(ARGV[2])) .. ':' .. ARGV[1], 'PX', ARGV[3])
return 1
"""
)

_SPEND = """
local total = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') + tonumber(ARGV[2])
if ARGV[3] ~= '' and tonumber(ARGV[2]) > 0 and total > tonumber(ARGV[3]) + 1e-9 then
  return false
end
local stored = redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], 604800)
return stored
"""
"""Add to a caller's day total unless the limit refuses it (Redis floats: the total is exact to the
credit's hundredths, which is all a budget needs)."""
_RELEASE = """
-- KEYS: lease. ARGV: holder.
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, string.find(current, ':', 1, true) + 1) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
"""

_LEARN = """
local function learn(seq, remaining, reset)
  local seen = tonumber(redis.call('HGET', KEYS[2], 'seen') or '0')
  if seq > seen then
    local reset_at = string.format('%.6f', now + reset)
    redis.call('HSET', KEYS[2], 'seen', seq, 'remaining', remaining, 'reset_at', reset_at)
  end
end
"""

_ADMIT = (
    _NOW
    + """
-- KEYS: calls, budget, outstanding, block. ARGV: ticket, budget ('1'/'0'), outstanding seconds,
-- then (limit, period) per window. Returns {wait, seq}: wait '0' when the ticket was counted.
local wait = tonumber(redis.call('GET', KEYS[4]) or '0') - now
local longest = 0
for i = 4, #ARGV - 1, 2 do
  local limit, period = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if period > longest then longest = period end
  local since = '(' .. string.format('%.6f', now - period)
  local recent = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES')
  local count = #recent / 2
  if count >= limit then
    local w = tonumber(recent[2 * (count - limit + 1)]) + period - now
    if w > wait then wait = w end
  end
end
if wait <= 0 and ARGV[2] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%.6f', now - tonumber(ARGV[3])))
  local b = redis.call('HMGET', KEYS[2], 'remaining', 'reset_at', 'headerless', 'seen')
  local seen = tonumber(b[4] or '0')
  local uncounted = 0
  for _, seq in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    if tonumber(seq) > seen then uncounted = uncounted + 1 end
  end
  local reset_at = tonumber(b[2] or '0')
  local room
  if not b[1] or b[1] == '' then
    if b[3] == '1' then room = 1 else room = 1 - uncounted end
  else
    room = tonumber(b[1]) - uncounted
    if now >= reset_at then room = room + 1 end
  end
  if room <= 0 then
    if reset_at > now then wait = reset_at - now else wait = 1.0 end
  end
end
if wait > 0 then return {string.format('%.6f', wait), 0} end
if longest > 0 then
  redis.call('ZADD', KEYS[1], string.format('%.6f', now), ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now - longest))
  redis.call('PEXPIRE', KEYS[1], math.ceil(longest * 1000) + 60000)
end
local seq = 0
if ARGV[2] == '1' then
  seq = redis.call('HINCRBY', KEYS[2], 'sent', 1)
  redis.call('ZADD', KEYS[3], string.format('%.6f', now), seq)
end
return {'0', seq}
"""
)

_ANSWERED = (
    _NOW
    + _LEARN
    + """
-- KEYS: calls, budget, outstanding. ARGV: ticket, seq, has numbers, remaining, reset, has headers.
redis.call('ZADD', KEYS[1], 'XX', string.format('%.6f', now), ARGV[1])
local seq = tonumber(ARGV[2])
if seq > 0 then
  redis.call('ZREM', KEYS[3], ARGV[2])
  if ARGV[3] == '1' then
    redis.call('HSET', KEYS[2], 'headerless', '0')
    learn(seq, tonumber(ARGV[4]), tonumber(ARGV[5]))
  elseif ARGV[6] == '1' then
    local remaining = redis.call('HGET', KEYS[2], 'remaining')
    if not remaining or remaining == '' then redis.call('HSET', KEYS[2], 'headerless', '1') end
  end
end
return 0
"""
)

_BLOCK = (
    _NOW
    + _LEARN
    + """
-- KEYS: block, budget. ARGV: seconds, seq.
local seconds = tonumber(ARGV[1])
local until_ = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now + seconds)
redis.call('SET', KEYS[1], string.format('%.6f', until_), 'PX', math.ceil((until_ - now) * 1000) + 1000)
if tonumber(ARGV[2]) > 0 then learn(tonumber(ARGV[2]), 0, seconds) end
return 0
"""
)

_TAKE_SLOT = (
    _NOW
    + """
-- KEYS: slots. ARGV: job id, limit (-1: none), ttl seconds. Scores are expiry times.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
local limit = tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or limit < 0 or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], string.format('%.6f', now + tonumber(ARGV[3])), ARGV[1])
  return 1
end
return 0
"""
)

_RENEW_SLOTS = (
    _NOW
    + """
-- KEYS: slots. ARGV: ttl seconds, then job ids. Only slots still held are renewed.
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.6f', now + tonumber(ARGV[1])), ARGV[i])
end
return 0
"""
)

_SLOTS_TAKEN = (
    _NOW
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.6f', now), '+inf')
"""
)


# --- Errors ---------------------------------------------------------------------------------------


def reaching(
    what: str,
) -> Callable[
    [Callable[Concatenate[S, P], Coroutine[Any, Any, R]]], Callable[Concatenate[S, P], Coroutine[Any, Any, R]]
]:
    """A store operation whose Redis failures become one StorageError naming `what` and the fix."""

    def wrap(
        fn: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        async def run(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            link: Link = getattr(store, "link")  # noqa: B009 (S is any store class of this module)
            try:
                async with link.gate:
                    return await fn(store, *args, **kwargs)
            except redis.exceptions.RedisError as exc:
                raise unavailable(exc, what, link.where) from exc

        return run

    return wrap


def unavailable(exc: BaseException, what: str, where: str) -> StorageError:
    if isinstance(exc, redis.exceptions.BusyLoadingError):
        reason = "Redis is loading its data after a restart"
    elif isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        reason = f"Redis does not answer ({type(exc).__name__})"
    else:
        reason = f"Redis refused the operation ({str(exc)[:200]})"
    return StorageError(
        f"{what} at {where} cannot be reached: {reason}. Nothing is lost: jobs in progress wait and go "
        "on by themselves once Redis answers again; call again in a moment, and check Redis if this "
        "lasts (callsheet doctor).",
        code="store_unavailable",
    )


@dataclass(frozen=True)
class Link:
    """One connection pool to Redis, and the gate every operation passes: at most CONNECTIONS at once,
    the others waiting in line (first come, first served) without touching the pool. Ten thousand
    drivers resuming or stopping at once would otherwise all wait on the pool's lock."""

    client: aioredis.Redis
    where: str
    gate: anyio.CapacityLimiter


# --- Records ----------------------------------------------------------------------------------------


def _value(value: object) -> str:
    return "" if value is None else str(value)


def _index(kind: str, wanted: list[tuple[str, str]]) -> str:
    """The index set of one combination of filter values (in the order of the backend's filters)."""
    return f"{PREFIX}{kind}:" + "&".join(f"{name}={quote(value, safe='')}" for name, value in wanted)


def _indexes(kind: str, filters: tuple[str, ...], record: BaseModel) -> str:
    """Every index set the record belongs in: one per combination of its non-empty filter values."""
    present = [(name, _value(getattr(record, name))) for name in filters]
    present = [(name, value) for name, value in present if value]
    return " ".join(
        _index(kind, list(combo))
        for n in range(len(present) + 1)
        for combo in itertools.combinations(present, n)
    )


class _Records:
    """Versioned JSON records with index sets: what the job and shoot stores share."""

    kind: str
    filters: tuple[str, ...]
    model: type[BaseModel]

    def __init__(self, link: Link) -> None:
        self.link = link
        self.client = client = link.client
        self.where = link.where
        self._write = client.register_script(_WRITE)

    def key(self, record_id: str) -> str:
        return f"{PREFIX}{self.kind[:-1]}:{record_id}"

    def _id(self, record: BaseModel) -> str:
        return str(getattr(record, f"{self.kind[:-1]}_id"))

    async def _store(self, record: BaseModel, *, version: str = "", holder: str = "") -> int:
        record_id = self._id(record)
        status = cast(Any, record).status
        return int(
            await self._write(
                keys=[self.key(record_id), f"{PREFIX}lease:{record_id}"],
                args=[
                    version,
                    holder,
                    record.model_dump_json(),
                    status.value,
                    record_id,
                    _indexes(self.kind, self.filters, record),
                ],
            )
        )

    async def _load(self, record_id: str) -> tuple[Any, str] | None:
        data, version = cast("list[str | None]", await self.client.hmget(self.key(record_id), ["data", "v"]))
        if data is None:
            return None
        return self._parse(record_id, data), version or "0"

    def _parse(self, record_id: str, data: str) -> Any:
        try:
            return self.model.model_validate_json(data)
        except (ValidationError, ValueError):
            log.warning(
                "the %s record %s in %s is damaged; it is skipped", self.kind[:-1], record_id, self.where
            )
            return None

    async def _change(self, record_id: str, change: Callable[[Any], Any], holder: str = "") -> Any:
        for _ in range(CAS_ATTEMPTS):
            loaded = await self._load(record_id)
            if loaded is None or loaded[0] is None:
                if holder:
                    await self._check_lease(record_id, holder)
                return None
            current, version = loaded
            changed = change(current)
            if changed is None:
                if holder:
                    await self._check_lease(record_id, holder)
                return current
            written = await self._store(changed, version=version, holder=holder)
            if written == -1:
                raise LeaseLost(record_id)
            if written > 0:
                return changed
        raise StorageError(
            f"The {self.kind[:-1]} {record_id} changed {CAS_ATTEMPTS} times while it was being updated; "
            "call again.",
            code="storage_error",
        )

    async def _check_lease(self, record_id: str, holder: str) -> None:
        current = cast("str | None", await self.client.get(f"{PREFIX}lease:{record_id}"))
        if current is None or current.split(":", 1)[1] != holder:
            raise LeaseLost(record_id)

    async def _page(
        self, wanted: list[tuple[str, str]], limit: int, cursor: str | None
    ) -> tuple[builtins.list[Any], str | None]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        index = _index(self.kind, wanted)
        page: builtins.list[Any] = []
        while True:
            want = limit + 1 - len(page)
            ids = cast(
                "list[str]",
                await self.client.zrevrangebylex(
                    index, f"({cursor}" if cursor else "+", "-", start=0, num=want
                ),
            )
            for record in await self._many(ids):
                page.append(record)
                if len(page) > limit:
                    page.pop()
                    return page, self._id(page[-1])
            if len(ids) < want:
                return page, None
            cursor = ids[-1]

    async def _many(self, ids: builtins.list[str]) -> builtins.list[Any]:
        """The records of `ids` that exist and can be read, in order, a chunk per round trip."""
        found: builtins.list[Any] = []
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            async with self.client.pipeline(transaction=False) as pipe:
                for record_id in chunk:
                    pipe.hget(self.key(record_id), "data")
                datas = await pipe.execute()
            for record_id, data in zip(chunk, datas, strict=True):
                record = None if data is None else self._parse(record_id, data)
                if record is not None:
                    found.append(record)
        return found


class RedisStore(_Records):
    """Job records, idempotency keys and leases in Redis."""

    kind = "jobs"
    filters = ("status", "provider", "shoot_id", "caller")
    model = JobRecord

    def __init__(self, link: Link) -> None:
        super().__init__(link)
        client = link.client
        self._add = client.register_script(_ADD)
        self._lease = client.register_script(_LEASE)
        self._release = client.register_script(_RELEASE)
        self._spend = client.register_script(_SPEND)

    @reaching("The job store")
    async def get(self, job_id: str) -> JobRecord | None:
        loaded = await self._load(job_id)
        return None if loaded is None else loaded[0]

    @reaching("The job store")
    async def put(self, record: JobRecord) -> None:
        await self._store(record)

    @reaching("The job store")
    async def update(self, job_id: str, change: JobChange, *, holder: str | None = None) -> JobRecord | None:
        result: JobRecord | None = await self._change(job_id, change, holder or "")
        return result

    @reaching("The job store")
    async def add(
        self, record: JobRecord, *, force: bool = False, holder: str | None = None, ttl: float = 0.0
    ) -> JobRecord:
        existing = await self._add_holding(record, force, holder or "", ttl)
        if existing is None:
            return record
        found: JobRecord | None = self._parse(existing[0], existing[1])
        if found is None:  # the holder's record is damaged: it holds nothing any more
            await self._add_holding(record, True, holder or "", ttl)
            return record
        return found

    async def _add_holding(
        self, record: JobRecord, force: bool, holder: str, ttl: float
    ) -> tuple[str, str] | None:
        """Run the add script: None when `record` was stored, else the holder's (id, data)."""
        holding = " ".join(status.value for status in HOLDS_KEY)
        found = await self._add(
            keys=[f"{PREFIX}key:{record.key}", self.key(record.job_id), f"{PREFIX}lease:{record.job_id}"],
            args=[
                record.job_id,
                "1" if force else "0",
                f"{PREFIX}job:",
                holding,
                record.model_dump_json(),
                record.status.value,
                _indexes(self.kind, self.filters, record),
                holder,
                max(1, int(ttl * 1000)),
                LEASE_GC_SECONDS * 1000,
            ],
        )
        return None if found is None else (record.key, str(found))

    @reaching("The job store")
    async def holder(self, key: str) -> JobRecord | None:
        job_id = await self.client.get(f"{PREFIX}key:{key}")
        if job_id is None:
            return None
        loaded = await self._load(str(job_id))
        return None if loaded is None else loaded[0]

    @reaching("The job store")
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
        given = {"status": status, "provider": provider, "shoot_id": shoot_id, "caller": caller}
        wanted = [(name, _value(value)) for name, value in given.items() if value is not None]
        return await self._page(wanted, limit, cursor)

    @reaching("The job store")
    async def unfinished(self) -> builtins.list[JobRecord]:
        ids: builtins.list[str] = []
        for status in sorted(ACTIVE):
            ids += cast(
                "list[str]", await self.client.zrange(_index(self.kind, [("status", status.value)]), 0, -1)
            )
        return [record for record in await self._many(sorted(set(ids))) if record.active]

    @reaching("The lease store")
    async def acquire_leases(self, names: builtins.list[str], holder: str, ttl: float) -> builtins.list[str]:
        held: builtins.list[str] = []
        args: builtins.list[str | int] = [holder, max(1, int(ttl * 1000)), LEASE_GC_SECONDS * 1000]
        for start in range(0, len(names), CHUNK):
            chunk = names[start : start + CHUNK]
            async with self.client.pipeline(transaction=False) as pipe:
                for name in chunk:
                    await self._lease(keys=[f"{PREFIX}lease:{name}"], args=args, client=pipe)
                taken = await pipe.execute()
            held += [name for name, got in zip(chunk, taken, strict=True) if int(got)]
        return held

    @reaching("The lease store")
    async def release_leases(self, names: builtins.list[str], holder: str) -> None:
        for start in range(0, len(names), CHUNK):
            async with self.client.pipeline(transaction=False) as pipe:
                for name in names[start : start + CHUNK]:
                    await self._release(keys=[f"{PREFIX}lease:{name}"], args=[holder], client=pipe)
                await pipe.execute()

    @reaching("The job store")
    async def learn_pace(self, kind: str, ratio: float, keep: int) -> builtins.list[float]:
        key = f"{PREFIX}pace:{kind}"
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.lpush(key, repr(ratio))
            pipe.ltrim(key, 0, keep - 1)
            pipe.lrange(key, 0, -1)
            *_, ratios = await pipe.execute()
        return [float(r) for r in ratios]

    @reaching("The job store")
    async def paces(self, kind: str) -> builtins.list[float]:
        return [float(r) for r in await self.client.lrange(f"{PREFIX}pace:{kind}", 0, -1)]

    @reaching("The job store")
    async def spend(self, day: str, caller: str, amount: float, limit: float | None) -> float | None:
        limit_arg = "" if limit is None else repr(limit)
        total = await self._spend(keys=[f"{PREFIX}spend:{day}"], args=[caller, repr(amount), limit_arg])
        return None if total is None else float(total)

    @reaching("The job store")
    async def spending(self, day: str) -> dict[str, float]:
        found = await self.client.hgetall(f"{PREFIX}spend:{day}")
        return {k.decode() if isinstance(k, bytes) else str(k): float(v) for k, v in found.items()}

    def close(self) -> None:
        """The connection pool is closed by `open_redis`."""


class RedisShoots(_Records):
    """Shoot records in Redis."""

    kind = "shoots"
    filters = ("status", "caller")
    model = ShootRecord

    @reaching("The shoot store")
    async def get(self, shoot_id: str) -> ShootRecord | None:
        loaded = await self._load(shoot_id)
        return None if loaded is None else loaded[0]

    @reaching("The shoot store")
    async def put(self, record: ShootRecord) -> None:
        await self._store(record)

    @reaching("The shoot store")
    async def update(self, shoot_id: str, change: ShootChange) -> ShootRecord | None:
        result: ShootRecord | None = await self._change(shoot_id, change)
        return result

    @reaching("The shoot store")
    async def list(
        self,
        *,
        status: ShootStatus | None = None,
        caller: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[builtins.list[ShootRecord], str | None]:
        given = {"status": status, "caller": caller}
        wanted = [(name, _value(value)) for name, value in given.items() if value is not None]
        return await self._page(wanted, limit, cursor)

    def close(self) -> None:
        """The connection pool is closed by `open_redis`."""


# --- Limits ---------------------------------------------------------------------------------------------


class RedisBook(Book):
    """One provider's limits in Redis, shared by every replica (see `server/limiter.py`)."""

    def __init__(self, link: Link, provider: str) -> None:
        self.link = link
        self.client = client = link.client
        base = f"{PREFIX}limits:{provider}:"
        self._calls = base + "calls:"
        self._blocks = base + "block:"
        self._budget = base + "budget"
        self._outstanding = base + "outstanding"
        self._slots = base + "slots"
        self._admit = client.register_script(_ADMIT)
        self._answered = client.register_script(_ANSWERED)
        self._block = client.register_script(_BLOCK)
        self._take = client.register_script(_TAKE_SLOT)
        self._renew = client.register_script(_RENEW_SLOTS)
        self._taken = client.register_script(_SLOTS_TAKEN)

    @reaching("The shared limits")
    async def admit(self, ticket: Ticket, windows: tuple[RateWindow, ...], budget: bool) -> tuple[float, int]:
        args: builtins.list[Any] = [ticket.id, "1" if budget else "0", OUTSTANDING_SECONDS]
        for window in windows:
            args += [window.limit, repr(window.period)]
        wait, seq = await self._admit(
            keys=[self._calls + ticket.kind, self._budget, self._outstanding, self._blocks + ticket.kind],
            args=args,
        )
        return float(wait), int(seq)

    @reaching("The shared limits")
    async def answered(self, ticket: Ticket, numbers: tuple[int, float] | None, has_headers: bool) -> None:
        remaining, reset = numbers if numbers is not None else (0, 0.0)
        await self._answered(
            keys=[self._calls + ticket.kind, self._budget, self._outstanding],
            args=[
                ticket.id,
                ticket.seq,
                "1" if numbers else "0",
                remaining,
                repr(reset),
                "1" if has_headers else "0",
            ],
        )

    @reaching("The shared limits")
    async def block(self, kind: str, seconds: float, seq: int | None) -> None:
        await self._block(keys=[self._blocks + kind, self._budget], args=[repr(seconds), seq or 0])

    @reaching("The shared limits")
    async def take_slot(self, job_id: str, limit: int | None, ttl: float) -> bool:
        taken = await self._take(keys=[self._slots], args=[job_id, -1 if limit is None else limit, repr(ttl)])
        return bool(int(taken))

    @reaching("The shared limits")
    async def renew_slots(self, job_ids: builtins.list[str], ttl: float) -> None:
        if job_ids:
            await self._renew(keys=[self._slots], args=[repr(ttl), *job_ids])

    @reaching("The shared limits")
    async def free_slots(self, job_ids: builtins.list[str]) -> None:
        if job_ids:
            await self.client.zrem(self._slots, *job_ids)

    @reaching("The shared limits")
    async def slots_taken(self) -> int:
        return int(await self._taken(keys=[self._slots], args=[]))


# --- Wake-ups -------------------------------------------------------------------------------------------


class RedisSignals(Signals):
    """Wake-ups published to every replica; `listen` delivers the others' to this one (a replica's own
    were delivered here when they were sent, with their news)."""

    CHANNEL = PREFIX + "signals"

    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link
        self.client = link.client
        self.origin = os.urandom(6).hex()

    async def notify(self, topic: str, news: object | None = None) -> None:
        self.wake(topic, news)
        with contextlib.suppress(redis.exceptions.RedisError):
            # A lost wake-up costs a waiter its safety-net re-read, never a result.
            async with self.link.gate:
                await self.client.publish(self.CHANNEL, f"{self.origin} {topic}")

    async def listen(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver published wake-ups here, reconnecting after Redis went away (then wake everyone:
        what happened meanwhile was not heard)."""
        started = False
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.CHANNEL)
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        self.wake_all()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            origin, _, topic = str(message["data"]).partition(" ")
                            if origin != self.origin:
                                self.wake(topic)
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("wake-ups from other replicas paused: %s", exc)
                if not started:
                    started = True
                    task_status.started()
                await anyio.sleep(1.0)


# --- Opening --------------------------------------------------------------------------------------------


@asynccontextmanager
async def open_redis(url: str) -> AsyncIterator[Backend]:
    """Connect to the Redis that `url` names (redis://[:password@]host:port/db, rediss://...)."""
    where = public_url(url)
    try:
        pool = aioredis.ConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=5.0,
            health_check_interval=15,
            max_connections=CONNECTIONS + 2,  # and the wake-up listener's, and a spare
        )
        client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
    except ValueError as exc:
        raise ConfigError(
            f"CALLSHEET_STORE={where} is not a Redis URL ({exc}). Use redis://[:password@]host:port/db "
            "or rediss://..., or unset it for the embedded store."
        ) from None
    link = Link(client, where, anyio.CapacityLimiter(CONNECTIONS))
    signals = RedisSignals(link)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(signals.listen)
            books: dict[str, RedisBook] = {}

            def book(provider: str) -> Book:
                return books.setdefault(provider, RedisBook(link, provider))

            try:
                yield Backend(
                    jobs=RedisStore(link),
                    shoots=RedisShoots(link),
                    signals=signals,
                    book=book,
                    where=where,
                )
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()


async def check_redis(url: str) -> str:
    """One line on the Redis that `url` names, for `callsheet doctor`; StorageError if it does not answer."""
    where = public_url(url)
    client = aioredis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=3.0, socket_timeout=3.0
    )
    try:
        info = await client.info("server")
        persistence = await client.info("persistence")
        jobs = await client.zcard(_index("jobs", []))
    except redis.exceptions.RedisError as exc:
        raise unavailable(exc, "The store", where) from exc
    finally:
        await client.aclose()
    durable = (
        "appendonly on"
        if persistence.get("aof_enabled")
        else "appendonly OFF (a restart of Redis loses recent changes)"
    )
    return f"Redis {info.get('redis_version', '?')} at {where}: answers, {jobs} jobs, {durable}"
