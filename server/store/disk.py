"""The embedded store in `CALLSHEET_HOME/store`: diskcache for records, a SQLite catalog beside them.

Records are persisted as JSON (`JobRecord.model_dump_json()`), never pickled. The store is
process-safe: two servers on one data folder share it, idempotency keys are claimed atomically,
and leases make sure only one of them drives (submits or polls) any given job.

At 100,000 jobs a listing must not read every record to find one page, and a start-up that resumes
10,000 jobs must not spend its time on lease bookkeeping: `DiskStore` keeps a small SQLite catalog
beside the records for both (see its docstring; `benchmarks/README.md` has the figures).

SQLite and diskcache block: every operation runs in a worker thread (`blocking`), so a cheap call
stays fast on the event loop while sixty jobs are being written.
"""

from __future__ import annotations

import builtins
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import anyio
import anyio.to_thread
from diskcache import Cache
from diskcache import Timeout as CacheTimeout
from pydantic import ValidationError

from server.errors import StorageError, storage_failure
from server.models import ACTIVE, HOLDS_KEY, JobRecord, JobStatus, ShootRecord, ShootStatus
from server.store.base import JobChange, LeaseLost, ShootChange, set_aside

Entry = tuple[str, str, str, str, str]
"""A catalog row: job id, status, provider, shoot id, caller (`""` for none)."""


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

log = logging.getLogger("callsheet.store")

BACKEND_ERRORS = (sqlite3.Error, OSError, CacheTimeout)
"""What SQLite and diskcache raise when a file cannot be read or written (a full disk, say)."""


READERS = anyio.CapacityLimiter(8)
"""Worker threads of the store's own for reads: a cheap read never queues behind media work (hashing,
thumbnails) in anyio's default pool, and reads run side by side (SQLite's WAL)."""
WRITER = anyio.CapacityLimiter(1)
"""One writer thread per process: SQLite takes one writer at a time anyway, and threads that race for
its lock sleep in its busy handler (milliseconds each) instead of queueing here."""


def blocking(
    what: str, *, writes: bool = False
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], Coroutine[Any, Any, R]]]:
    """A store operation run in a worker thread, whose backend failures become one StorageError naming
    `what` (and disk_full when the disk is full): the call that meets it fails clearly, never the
    server. The thread finishes what it started even when the caller is cancelled. `writes`: the
    operation writes, and waits for the process's one writer thread."""

    def wrap(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        async def run(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                call = functools.partial(fn, store, *args, **kwargs)
                return await anyio.to_thread.run_sync(call, limiter=WRITER if writes else READERS)
            except BACKEND_ERRORS as exc:
                raise storage_failure(exc, what) from exc

        return run

    return wrap


class DiskStore:
    """The embedded default: diskcache for records and keys, a SQLite catalog for queries and leases.

    - `jobs/` (diskcache): job id -> record JSON. Job ids are time-sortable: newest first is reverse order.
    - `keys/` (diskcache): idempotency key -> job id of the holder.
    - `catalog.sqlite3`, table `entries`: (job id, status, provider, shoot id, caller) of every job,
      indexed per filter, so `list` reads only the records of the page it returns and `unfinished()`
      only the unfinished ones.
    - `catalog.sqlite3`, table `leases`: job id -> holder and expiry, taken or renewed by one conditional
      upsert (in diskcache it was a transaction of several statements, and 10,000 drivers starting
      at once spent seconds on their leases).

    Values are plain `str`, which diskcache stores as text, so nothing is ever pickled. Eviction is
    off: a store must never drop a job to save space.

    A record and its catalog row are not one SQLite transaction, so `put` orders its writes to fail
    safe: the new row first, then the record, then the job's other rows go. A crash in between can
    leave an extra row (a reader loads the record, sees that it does not match, skips it and heals
    the rows), never a job without its row. Records and rows are only written under the `jobs/` write
    lock, so two writers never interleave. Lock order is keys -> jobs -> catalog: no deadlocks.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._jobs = open_cache(directory / "jobs", "job records", "the jobs in it are lost")
        try:
            self._catalog = _Catalog(directory / "catalog.sqlite3")
        except sqlite3.DatabaseError:
            # The catalog is an index of the records: set the damaged file aside and build it again.
            self._catalog = _Catalog(_set_file_aside(directory / "catalog.sqlite3"))
        if not self._catalog.built():
            self._build_catalog()
        try:
            self._keys = open_cache(directory / "keys", "idempotency keys", "")
        except StorageError:
            # The keys can be told again from the records: set the file aside and rebuild them.
            self._keys = open_cache(_set_file_aside(directory / "keys" / "cache.db").parent, "", "")
            self._rebuild_keys()

    @blocking("The job store")
    def get(self, job_id: str) -> JobRecord | None:
        return self._load(job_id)

    @blocking("The job store", writes=True)
    def put(self, record: JobRecord) -> None:
        with self._jobs.transact(retry=True):
            self._write(record)

    @blocking("The job store", writes=True)
    def update(self, job_id: str, change: JobChange, *, holder: str | None = None) -> JobRecord | None:
        # Under the `jobs/` write lock (a SQLite transaction, so across processes too): nothing else
        # writes the record between the read and the write.
        with self._jobs.transact(retry=True):
            if holder is not None and self._catalog.holder(job_id) != holder:
                raise LeaseLost(job_id)
            current = self._load(job_id)
            if current is None:
                return None
            changed = change(current)
            if changed is None:
                return current
            self._write(changed)
            return changed

    @blocking("The job store", writes=True)
    def add(
        self, record: JobRecord, *, force: bool = False, holder: str | None = None, ttl: float = 0.0
    ) -> JobRecord:
        # Lock order keys -> jobs: nothing else claims the key between the read and the write.
        with self._keys.transact(retry=True):
            held_by = cast("str | None", self._keys.get(record.key))
            if not force and held_by is not None and held_by != record.job_id:
                current = self._load(held_by)
                if current is not None and current.status in HOLDS_KEY:
                    return current
            with self._jobs.transact(retry=True):
                self._write(record)
                if holder is not None:
                    self._catalog.lease(record.job_id, holder, ttl)
            self._keys.set(record.key, record.job_id, retry=True)
        return record

    @blocking("The job store")
    def holder(self, key: str) -> JobRecord | None:
        job_id = cast("str | None", self._keys.get(key))
        return None if job_id is None else self._load(job_id)

    @blocking("The job store")
    def list(
        self,
        *,
        status: JobStatus | None = None,
        provider: str | None = None,
        shoot_id: str | None = None,
        caller: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[builtins.list[JobRecord], str | None]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        given = {"status": status, "provider": provider, "shoot_id": shoot_id, "caller": caller}
        wanted = {column: value for column, value in given.items() if value is not None}
        page: builtins.list[JobRecord] = []
        seen: set[str] = set()
        while True:
            # One record more than the page tells us there is another page. The cursor is the last id
            # of the previous page; ids compare in SQLite as they sort.
            want = limit + 1 - len(page)
            batch = self._catalog.newest(wanted, before=cursor, limit=want)
            for job_id in batch:
                if job_id in seen:  # a stale row beside the current one
                    continue
                seen.add(job_id)
                record = self._load(job_id)
                if record is None or any(getattr(record, c) != v for c, v in wanted.items()):
                    self._heal(job_id)  # deleted or changed since its row was read, or a stale row
                    continue
                page.append(record)
                if len(page) > limit:
                    page.pop()
                    return page, page[-1].job_id
            if len(batch) < want:
                return page, None
            cursor = batch[-1]

    @blocking("The job store")
    def unfinished(self) -> builtins.list[JobRecord]:
        records = []
        for job_id in self._catalog.with_status(ACTIVE):
            record = self._load(job_id)
            if record is not None and record.active:
                records.append(record)
            else:
                self._heal(job_id)
        return records

    @blocking("The job store", writes=True)
    def acquire_leases(self, names: builtins.list[str], holder: str, ttl: float) -> builtins.list[str]:
        return [name for name in names if self._catalog.lease(name, holder, ttl)]

    @blocking("The job store", writes=True)
    def release_leases(self, names: builtins.list[str], holder: str) -> None:
        self._catalog.release(names, holder)

    @blocking("The job store", writes=True)
    def learn_pace(self, kind: str, ratio: float, keep: int) -> builtins.list[float]:
        return self._catalog.learn_pace(kind, ratio, keep)

    @blocking("The job store")
    def paces(self, kind: str) -> builtins.list[float]:
        return self._catalog.paces(kind)

    @blocking("The job store", writes=True)
    def spend(self, day: str, caller: str, amount: float, limit: float | None) -> float | None:
        return self._catalog.spend(day, caller, amount, limit)

    @blocking("The job store")
    def spending(self, day: str) -> dict[str, float]:
        return self._catalog.spending(day)

    def close(self) -> None:
        for cache in (self._jobs, self._keys):
            cache.close()
        self._catalog.close()

    def _write(self, record: JobRecord) -> None:
        """Under the `jobs/` write lock: the new row first, then the record, then the job's other rows go."""
        entry = _entry(record)
        self._catalog.add(entry)
        self._jobs.set(record.job_id, record.model_dump_json(), retry=True)
        self._catalog.keep_only(entry)

    def _load(self, job_id: str) -> JobRecord | None:
        data = self._jobs.get(job_id)
        if data is None:
            return None
        try:
            return JobRecord.model_validate_json(cast(str, data))
        except (ValidationError, ValueError, TypeError):
            # One damaged record must not stop the others: keep it aside, named, and go on.
            set_aside(self.directory, "job", job_id, data)
            self._jobs.delete(job_id, retry=True)
            self._catalog.forget(job_id)
            return None

    def _rebuild_keys(self) -> None:
        """Tell the idempotency keys again from the records: the newest job holding each one."""
        for job_id in cast("Iterator[str]", self._jobs.iterkeys()):
            record = self._load(job_id)
            if record is not None and record.key and record.status in HOLDS_KEY:
                self._keys.set(record.key, job_id, retry=True)

    def _heal(self, job_id: str) -> None:
        """Make the job's rows match its record again. Under the `jobs/` write lock no put is half done,
        so whatever row does not match the record is stale."""
        with self._jobs.transact(retry=True):
            record = self._load(job_id)
            if record is None:
                self._catalog.forget(job_id)
            else:
                entry = _entry(record)
                self._catalog.add(entry)
                self._catalog.keep_only(entry)

    def _build_catalog(self) -> None:
        """Catalog every record once: a data folder from before the catalog, or one whose catalog was lost."""
        with self._jobs.transact(retry=True):
            if self._catalog.built():  # another process did it while we waited for the lock
                return
            entries = []
            for job_id in cast("Iterator[str]", self._jobs.iterkeys()):
                record = self._load(job_id)
                if record is not None:
                    entries.append(_entry(record))
            self._catalog.rebuild(entries)


class _Catalog:
    """The SQLite side of `DiskStore`: WAL, autocommit, one connection per thread (as diskcache has)."""

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS entries (
            job_id TEXT NOT NULL,
            status TEXT NOT NULL,
            provider TEXT NOT NULL,
            shoot_id TEXT NOT NULL,
            caller TEXT NOT NULL,
            PRIMARY KEY (job_id, status, provider, shoot_id, caller)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS entries_status ON entries (status, job_id);
        CREATE INDEX IF NOT EXISTS entries_provider ON entries (provider, job_id);
        CREATE INDEX IF NOT EXISTS entries_status_provider ON entries (status, provider, job_id);
        CREATE INDEX IF NOT EXISTS entries_shoot ON entries (shoot_id, job_id);
        CREATE INDEX IF NOT EXISTS entries_caller ON entries (caller, job_id);
        CREATE TABLE IF NOT EXISTS leases (
            job_id TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires REAL NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    """
    VERSION = "2"
    """The layout of the tables below; another one is dropped and built again."""
    FILTERS = ("status", "provider", "shoot_id", "caller")
    """The filterable columns, in the order `newest` names them (only these names enter SQL text)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._opened: builtins.list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        con = self._con()
        con.execute("PRAGMA journal_mode = WAL")
        con.execute(
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
        )
        # What was learned, not an index of the records: outside the layout that is rebuilt.
        con.execute(
            "CREATE TABLE IF NOT EXISTS paces "
            "(seen INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, ratio REAL NOT NULL)"
        )
        con.execute("CREATE INDEX IF NOT EXISTS paces_kind ON paces (kind, seen)")
        con.execute(
            "CREATE TABLE IF NOT EXISTS spending "
            "(day TEXT NOT NULL, caller TEXT NOT NULL, credits REAL NOT NULL, PRIMARY KEY (day, caller))"
        )
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is None or row[0] != self.VERSION:
                # An older layout (or none): the catalog is an index, so it is made again from the records.
                con.execute("DROP TABLE IF EXISTS entries")
                con.execute("DROP TABLE IF EXISTS leases")
                con.execute("DELETE FROM meta")
                for statement in self.SCHEMA.split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute("INSERT INTO meta VALUES ('schema', ?)", (self.VERSION,))
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _con(self) -> sqlite3.Connection:
        con = cast("sqlite3.Connection | None", getattr(self._local, "con", None))
        if con is None:
            # timeout: how long a statement waits for another process's write lock (diskcache's too).
            con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA synchronous = NORMAL")
            self._local.con = con
            with self._opened_lock:
                self._opened.append(con)
        return con

    def built(self) -> bool:
        return self._con().execute("SELECT 1 FROM meta WHERE name = 'entries'").fetchone() is not None

    def rebuild(self, entries: builtins.list[Entry]) -> None:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM entries")
            con.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?)", entries)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('entries', '1')")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def add(self, entry: Entry) -> None:
        self._con().execute("INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?)", entry)

    def keep_only(self, entry: Entry) -> None:
        """Delete the job's rows other than `entry`."""
        self._con().execute(
            "DELETE FROM entries WHERE job_id = ? "
            "AND NOT (status = ? AND provider = ? AND shoot_id = ? AND caller = ?)",
            entry,
        )

    def forget(self, job_id: str) -> None:
        con = self._con()
        con.execute("DELETE FROM entries WHERE job_id = ?", (job_id,))
        con.execute("DELETE FROM leases WHERE job_id = ?", (job_id,))

    def newest(self, wanted: dict[str, str], *, before: str | None, limit: int) -> builtins.list[str]:
        """Ids of the rows matching `wanted` (column -> value), newest first, older than `before`."""
        where = [f"{column} = ?" for column in self.FILTERS if column in wanted]
        params: builtins.list[object] = [str(wanted[column]) for column in self.FILTERS if column in wanted]
        if before is not None:
            where.append("job_id < ?")
            params.append(before)
        sql = "SELECT job_id FROM entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._con().execute(sql + " ORDER BY job_id DESC LIMIT ?", [*params, limit])
        return [job_id for (job_id,) in rows]

    def with_status(self, statuses: frozenset[JobStatus]) -> builtins.list[str]:
        marks = ", ".join("?" for _ in statuses)
        rows = self._con().execute(
            f"SELECT DISTINCT job_id FROM entries WHERE status IN ({marks}) ORDER BY job_id",
            [status.value for status in statuses],
        )
        return [job_id for (job_id,) in rows]

    def lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take a free or expired lease, or renew our own: one statement, so atomic across processes."""
        now = time.time()
        cursor = self._con().execute(
            "INSERT INTO leases (job_id, holder, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
            "WHERE leases.holder = excluded.holder OR leases.expires <= ?",
            (name, holder, now + ttl, now),
        )
        return cursor.rowcount == 1

    def release(self, names: builtins.list[str], holder: str) -> None:
        con = self._con()
        for start in range(0, len(names), 500):  # SQLite's limit on parameters is 999 or more
            chunk = names[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            con.execute(f"DELETE FROM leases WHERE holder = ? AND job_id IN ({marks})", [holder, *chunk])

    def holder(self, name: str) -> str | None:
        """Who holds the lease on `name` (expired or not: until another takes it, it is still theirs)."""
        row = self._con().execute("SELECT holder FROM leases WHERE job_id = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def learn_pace(self, kind: str, ratio: float, keep: int) -> builtins.list[float]:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("INSERT INTO paces (kind, ratio) VALUES (?, ?)", (kind, ratio))
            con.execute(
                "DELETE FROM paces WHERE kind = ? AND seen NOT IN "
                "(SELECT seen FROM paces WHERE kind = ? ORDER BY seen DESC LIMIT ?)",
                (kind, kind, keep),
            )
            ratios = self.paces(kind)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return ratios

    def paces(self, kind: str) -> builtins.list[float]:
        rows = self._con().execute("SELECT ratio FROM paces WHERE kind = ? ORDER BY seen DESC", (kind,))
        return [float(ratio) for (ratio,) in rows]

    def spend(self, day: str, caller: str, amount: float, limit: float | None) -> float | None:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute(
                "SELECT credits FROM spending WHERE day = ? AND caller = ?", (day, caller)
            ).fetchone()
            total = (0.0 if row is None else float(row[0])) + amount
            if limit is not None and amount > 0 and total > limit + 1e-9:
                con.execute("ROLLBACK")
                return None
            con.execute(
                "INSERT INTO spending (day, caller, credits) VALUES (?, ?, ?) "
                "ON CONFLICT (day, caller) DO UPDATE SET credits = excluded.credits",
                (day, caller, total),
            )
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return total

    def spending(self, day: str) -> dict[str, float]:
        rows = self._con().execute("SELECT caller, credits FROM spending WHERE day = ?", (day,))
        return {str(caller): float(credits) for caller, credits in rows}

    def close(self) -> None:
        with self._opened_lock:
            for con in self._opened:
                con.close()
            self._opened.clear()
        self._local = threading.local()


def _entry(record: JobRecord) -> Entry:
    return (record.job_id, record.status.value, record.provider, record.shoot_id or "", record.caller or "")


INLINE_UP_TO = 1 << 30
"""Records up to this size (all of them) are kept inside SQLite, read and written atomically."""


def open_cache(directory: Path, holds: str, lost: str) -> Cache:
    """A diskcache folder of records; a damaged database is a StorageError saying what to do."""
    try:
        # eviction_policy="none": diskcache otherwise culls the oldest items past its 1 GB default limit.
        # disk_min_file_size: every record inside SQLite, none in a side file. diskcache replaces a side
        # file on update and deletes the old one, so a read racing an update (another thread or
        # process) could find the file gone and answer "no such record".
        return Cache(str(directory), eviction_policy="none", disk_min_file_size=INLINE_UP_TO)
    except sqlite3.DatabaseError as exc:
        path = directory / "cache.db"
        raise StorageError(
            f"The file {path} ({holds}) is damaged: {exc}. Move it aside (mv {path} {path}.damaged; "
            f"{lost}) or restore it from a backup, then start callsheet again.",
            code="store_damaged",
            retryable=False,
        ) from None


def _set_file_aside(path: Path) -> Path:
    """Rename a damaged database file (and its journal files) out of the way; returns `path`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(source.with_name(f"{source.name}.damaged-{stamp}"))
    log.warning("%s was damaged; it was set aside and is being rebuilt from the records", path)
    return path


class DiskShoots:
    """Shoot records as JSON in their own diskcache folder (process-safe, like the job store)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._cache = open_cache(directory, "shoot records", "the shoots in it are lost")

    @blocking("The shoot store")
    def get(self, shoot_id: str) -> ShootRecord | None:
        return self._load(shoot_id)

    @blocking("The shoot store", writes=True)
    def put(self, record: ShootRecord) -> None:
        self._cache.set(f"shoot:{record.shoot_id}", record.model_dump_json(), retry=True)

    @blocking("The shoot store", writes=True)
    def update(self, shoot_id: str, change: ShootChange) -> ShootRecord | None:
        with self._cache.transact(retry=True):
            current = self._load(shoot_id)
            if current is None:
                return None
            changed = change(current)
            if changed is None:
                return current
            self._cache.set(f"shoot:{shoot_id}", changed.model_dump_json(), retry=True)
            return changed

    @blocking("The shoot store")
    def list(
        self,
        *,
        status: ShootStatus | None = None,
        caller: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[builtins.list[ShootRecord], str | None]:
        out: builtins.list[ShootRecord] = []
        for key in self._cache.iterkeys(reverse=True):
            shoot_id = str(key).removeprefix("shoot:")
            if cursor is not None and shoot_id >= cursor:
                continue
            record = self._load(shoot_id)
            if record is None or (status is not None and record.status is not status):
                continue
            if caller is not None and record.caller != caller:
                continue
            if len(out) == limit:
                return out, out[-1].shoot_id
            out.append(record)
        return out, None

    def close(self) -> None:
        self._cache.close()

    def _load(self, shoot_id: str) -> ShootRecord | None:
        key = f"shoot:{shoot_id}"
        raw = self._cache.get(key)
        if raw is None:
            return None
        try:
            return ShootRecord.model_validate_json(cast(str, raw))
        except (ValidationError, ValueError, TypeError):
            set_aside(self.directory.parent, "shoot", shoot_id, raw)
            self._cache.delete(key)
            return None
