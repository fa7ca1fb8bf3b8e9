"""One contract for every store backend, run on real resources: a temporary folder for the embedded
store, a real redis-server for Redis. A new backend joins by adding a param to the `backend` fixture.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.models import (
    JobError,
    JobRecord,
    JobStatus,
    Output,
    ShootRecord,
    ShootStatus,
    StepState,
    new_job_id,
)
from server.store import Backend, DiskStore, LeaseLost, Store, open_backend

# Marked at collection time (not only by conftest after collection): anyio's late marking replaces
# each test's parameters, which would drop the `store` backends and the parametrized cases.
pytestmark = pytest.mark.anyio

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_job(job_id: str | None = None, status: JobStatus = JobStatus.QUEUED, **fields: Any) -> JobRecord:
    values: dict[str, Any] = {
        "job_id": job_id or new_job_id(),
        "provider": "fashn",
        "operation": "tryon_max",
        "status": status,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return JobRecord(**values)


@pytest.fixture(params=["disk", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    async with open_backend(url, tmp_path / "store") as opened:
        yield opened


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.jobs


async def put_many(store: Store, n: int, **fields: Any) -> list[JobRecord]:
    records = [make_job(**fields) for _ in range(n)]
    for r in records:
        await store.put(r)
    return records


async def all_pages(store: Store, limit: int, **filters: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list(limit=limit, cursor=cursor, **filters)
        pages.append([r.job_id for r in page])
        if cursor is None:
            return pages
        assert len(pages) < 100, "cursor never ends"


class TestStoreContract:
    async def test_round_trip(self, store: Store) -> None:
        record = make_job(
            status=JobStatus.FAILED,
            updated_at=T0 + timedelta(seconds=5),
            submit_started_at=T0 + timedelta(seconds=1),
            outputs=[
                Output(
                    uri="callsheet://jobs/x/outputs/0",
                    path="/tmp/x.png",
                    source_url="https://cdn.example/x.png",
                    mime_type="image/png",
                    width=768,
                    height=1024,
                    bytes=1234,
                    sha256="ab" * 32,
                )
            ],
            error=JobError(code="image_load_error", message="Could not load the image.", retryable=False),
            request={"model_image": "https://example.com/a.png", "nested": {"n": [1, 2.5, None]}},
            provider_job_id="p-123",
            credits_used=1.0,
            shoot_id="s1",
            caller="alice",
        )
        await store.put(record)
        loaded = await store.get(record.job_id)
        assert loaded == record
        assert loaded is not None and loaded.created_at.tzinfo is not None

    async def test_put_replaces(self, store: Store) -> None:
        record = make_job()
        await store.put(record)
        await store.put(record.model_copy(update={"status": JobStatus.RUNNING, "progress": 0.5}))
        loaded = await store.get(record.job_id)
        assert loaded is not None and loaded.status == JobStatus.RUNNING and loaded.progress == 0.5

    async def test_unknown_id(self, store: Store) -> None:
        assert await store.get("j-nope") is None

    async def test_add_stores_a_new_job_holding_its_key(self, store: Store) -> None:
        first, second = make_job(key="k"), make_job(key="k")
        assert await store.add(first) == first
        assert await store.add(first) == first  # the holder added again
        assert await store.add(second) == first  # a repeat: the earlier job, nothing stored
        assert await store.get(second.job_id) is None
        assert await store.holder("k") == first
        assert [r.job_id for r in await store.unfinished()] == [first.job_id]

    @pytest.mark.parametrize("status", [JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SUCCEEDED])
    async def test_a_live_or_succeeded_holder_keeps_its_key(self, store: Store, status: JobStatus) -> None:
        holder, other = make_job(key="k"), make_job(key="k")
        await store.add(holder)
        moved = await store.update(holder.job_id, lambda r: r.model_copy(update={"status": status}))
        assert await store.add(other) == moved

    @pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELED])
    async def test_a_failed_or_canceled_holder_is_replaced(self, store: Store, status: JobStatus) -> None:
        holder, other, third = make_job(key="k"), make_job(key="k"), make_job(key="k")
        await store.add(holder)
        await store.update(holder.job_id, lambda r: r.model_copy(update={"status": status}))
        assert await store.add(other) == other
        assert await store.add(third) == other
        assert await store.holder("k") == other
        assert await store.holder("no such key") is None

    async def test_force_always_stores_the_new_job(self, store: Store) -> None:
        holder, other = make_job(key="k", status=JobStatus.SUCCEEDED), make_job(key="k")
        await store.add(holder)
        assert await store.add(other, force=True) == other
        assert await store.add(make_job(key="k")) == other
        assert await store.get(holder.job_id) == holder  # kept, it just no longer holds the key

    async def test_add_can_take_the_new_jobs_lease_in_the_same_step(self, store: Store) -> None:
        job = make_job(key="k")
        assert await store.add(job, holder="a", ttl=30) == job
        assert await store.acquire_leases([job.job_id], "b", ttl=30) == []
        assert await store.acquire_leases([job.job_id], "a", ttl=30) == [job.job_id]
        repeat = make_job(key="k")
        assert await store.add(repeat, holder="b", ttl=30) == job  # nothing stored, no lease taken
        assert await store.acquire_leases([repeat.job_id], "c", ttl=30) == [repeat.job_id]

    async def test_keys_are_independent(self, store: Store) -> None:
        a, b = make_job(key="k1"), make_job(key="k2")
        assert await store.add(a) == a and await store.add(b) == b

    async def test_list_newest_first_with_cursor_paging(self, store: Store) -> None:
        records = await put_many(store, 25)
        newest_first = sorted((r.job_id for r in records), reverse=True)
        pages = await all_pages(store, limit=10)
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [i for p in pages for i in p] == newest_first

    async def test_list_exact_multiple_has_no_empty_last_page(self, store: Store) -> None:
        records = await put_many(store, 25)
        pages = await all_pages(store, limit=5)
        assert [len(p) for p in pages] == [5] * 5
        assert [i for p in pages for i in p] == sorted((r.job_id for r in records), reverse=True)
        page, cursor = await store.list(limit=25)
        assert len(page) == 25 and cursor is None

    async def test_list_empty(self, store: Store) -> None:
        assert await store.list() == ([], None)

    async def test_list_default_limit(self, store: Store) -> None:
        await put_many(store, 25)
        page, cursor = await store.list()
        assert len(page) == 20 and cursor == page[-1].job_id

    async def test_list_real_ids_sort_by_creation_time(self, store: Store) -> None:
        old = make_job(job_id=new_job_id())
        await anyio.sleep(0.005)
        new = make_job(job_id=new_job_id())
        await store.put(new)
        await store.put(old)
        page, _ = await store.list()
        assert [r.job_id for r in page] == [new.job_id, old.job_id]

    @pytest.mark.parametrize(
        ("field", "match", "other"),
        [
            ("status", JobStatus.SUCCEEDED, JobStatus.RUNNING),
            ("provider", "autotoon", "fashn"),
            ("shoot_id", "s1", "s2"),
            ("caller", "alice", "bob"),
        ],
    )
    async def test_list_filters(self, store: Store, field: str, match: Any, other: Any) -> None:
        wanted = await put_many(store, 7, **{field: match})
        await put_many(store, 8, **{field: other})
        await put_many(store, 3)  # defaults (no shoot or caller)
        pages = await all_pages(store, limit=3, **{field: match})
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [i for p in pages for i in p] == sorted((r.job_id for r in wanted), reverse=True)

    async def test_list_combined_filters(self, store: Store) -> None:
        hit = make_job(caller="alice", shoot_id="s1", status=JobStatus.SUCCEEDED)
        await store.put(hit)
        await store.put(make_job(caller="alice", shoot_id="s1"))
        await store.put(make_job(caller="bob", shoot_id="s1", status=JobStatus.SUCCEEDED))
        page, cursor = await store.list(caller="alice", shoot_id="s1", status=JobStatus.SUCCEEDED)
        assert page == [hit] and cursor is None

    async def test_unfinished_tracks_status(self, store: Store) -> None:
        a, b, c = make_job(), make_job(status=JobStatus.SUBMITTED), make_job(status=JobStatus.SUCCEEDED)
        for r in (a, b, c):
            await store.put(r)
        assert {r.job_id for r in await store.unfinished()} == {a.job_id, b.job_id}
        await store.put(a.model_copy(update={"status": JobStatus.RUNNING}))
        await store.put(b.model_copy(update={"status": JobStatus.FAILED}))
        unfinished = await store.unfinished()
        assert [(r.job_id, r.status) for r in unfinished] == [(a.job_id, JobStatus.RUNNING)]
        await store.put(a.model_copy(update={"status": JobStatus.CANCELED}))
        assert await store.unfinished() == []

    async def test_lease_acquire_renew_refuse_release(self, store: Store) -> None:
        assert await store.acquire_leases(["j1"], "a", ttl=30)
        assert await store.acquire_leases(["j1"], "a", ttl=30)  # renew
        assert not await store.acquire_leases(["j1"], "b", ttl=30)
        assert await store.acquire_leases(["j2"], "b", ttl=30)  # leases are per job
        await store.release_leases(["j1"], "b")  # not the holder: no effect
        assert not await store.acquire_leases(["j1"], "b", ttl=30)
        await store.release_leases(["j1", "j2"], "a")
        assert await store.acquire_leases(["j1"], "b", ttl=30)

    async def test_leases_are_taken_and_given_back_many_at_once(self, store: Store) -> None:
        names = [f"j{n}" for n in range(1200)]  # more than one round trip's worth
        assert await store.acquire_leases(["j7"], "b", ttl=30) == ["j7"]
        held = await store.acquire_leases(names, "a", ttl=30)
        assert held == [name for name in names if name != "j7"]
        assert await store.acquire_leases(names, "a", ttl=30) == held  # renewed, all at once
        await store.release_leases(names, "a")
        assert await store.acquire_leases(names, "c", ttl=30) == held  # j7 is still b's

    async def test_lease_expires_unless_renewed(self, store: Store) -> None:
        assert await store.acquire_leases(["j1"], "a", ttl=0.2)
        assert await store.acquire_leases(["j2"], "a", ttl=0.2)
        assert await store.acquire_leases(["j2"], "a", ttl=30)  # renewal extends the expiry
        assert not await store.acquire_leases(["j1"], "b", ttl=0.2)
        await anyio.sleep(0.3)
        assert await store.acquire_leases(["j1"], "b", ttl=30)
        assert not await store.acquire_leases(["j1"], "a", ttl=30)
        assert not await store.acquire_leases(["j2"], "b", ttl=30)

    async def test_filtered_pages_skip_many_other_jobs(self, store: Store) -> None:
        wanted = await put_many(store, 3, provider="genapi", status=JobStatus.FAILED)
        await put_many(store, 150, provider="genapi", status=JobStatus.SUCCEEDED)
        await put_many(store, 150, provider="fashn", status=JobStatus.FAILED)
        pages = await all_pages(store, limit=2, provider="genapi", status=JobStatus.FAILED)
        assert [i for p in pages for i in p] == sorted((r.job_id for r in wanted), reverse=True)

    async def test_update_applies_the_change_to_the_stored_record(self, store: Store) -> None:
        job = make_job()
        await store.put(job)
        running = await store.update(job.job_id, lambda r: r.model_copy(update={"status": JobStatus.RUNNING}))
        assert running is not None and running.status is JobStatus.RUNNING
        unchanged = await store.update(job.job_id, lambda r: None)
        assert unchanged == running == await store.get(job.job_id)
        assert await store.update("j-nope", lambda r: r) is None
        assert [r.job_id for r in (await store.list(status=JobStatus.RUNNING))[0]] == [job.job_id]
        assert (await store.list(status=JobStatus.QUEUED))[0] == []

    async def test_concurrent_updates_lose_nothing(self, store: Store) -> None:
        job = make_job()
        await store.put(job)

        async def count() -> None:
            await store.update(
                job.job_id, lambda r: r.model_copy(update={"status_calls": r.status_calls + 1})
            )

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(count)
        stored = await store.get(job.job_id)
        assert stored is not None and stored.status_calls == 40

    async def test_a_write_by_a_holder_that_lost_the_lease_is_refused(self, store: Store) -> None:
        """Fencing: once another process holds the job's lease, the old holder can write nothing."""
        job = make_job()
        await store.put(job)
        assert await store.acquire_leases([job.job_id], "a", ttl=0.2)
        running = await store.update(
            job.job_id, lambda r: r.model_copy(update={"status_calls": 1}), holder="a"
        )
        assert running is not None and running.status_calls == 1
        await anyio.sleep(0.3)  # a's lease lapses...
        assert await store.acquire_leases([job.job_id], "b", ttl=30)  # ...and b takes it
        with pytest.raises(LeaseLost):
            await store.update(job.job_id, lambda r: r.model_copy(update={"status_calls": 99}), holder="a")
        stored = await store.update(
            job.job_id, lambda r: r.model_copy(update={"status_calls": 2}), holder="b"
        )
        assert stored is not None and stored.status_calls == 2
        with pytest.raises(LeaseLost):  # nobody holds the lease of this one
            await store.update(job.job_id + "x", lambda r: r, holder="a")
        # A writer without a lease (a cancel from a tool) is never fenced.
        canceled = await store.update(
            job.job_id, lambda r: r.model_copy(update={"status": JobStatus.CANCELED})
        )
        assert canceled is not None and canceled.status is JobStatus.CANCELED

    async def test_an_expired_lease_nobody_took_still_fences_for_its_holder(self, store: Store) -> None:
        job = make_job()
        await store.put(job)
        assert await store.acquire_leases([job.job_id], "a", ttl=0.1)
        await anyio.sleep(0.2)
        stored = await store.update(
            job.job_id, lambda r: r.model_copy(update={"status_calls": 3}), holder="a"
        )
        assert stored is not None and stored.status_calls == 3

    async def test_two_handles_race_for_keys_and_leases(self, backend: Backend, tmp_path: Path) -> None:
        """Two connections to one store (as two replicas have): each key and each lease has one winner."""
        url = None if isinstance(backend.jobs, DiskStore) else backend.where
        async with open_backend(url, tmp_path / "store") as other:
            stores = [backend.jobs, other.jobs]
            outcomes: dict[tuple[int, int], tuple[str | None, bool]] = {}

            async def contend(n: int) -> None:
                for i in range(20):
                    holder = await stores[n].add(make_job(key=f"key-{i}"))
                    leased = bool(await stores[n].acquire_leases([f"job-{i}"], f"p{n}", ttl=60))
                    outcomes[(n, i)] = (holder.job_id, leased)

            async with anyio.create_task_group() as tg:
                tg.start_soon(contend, 0)
                tg.start_soon(contend, 1)
        for i in range(20):
            assert outcomes[(0, i)][0] == outcomes[(1, i)][0], f"round {i}"
            assert outcomes[(0, i)][1] + outcomes[(1, i)][1] == 1, f"round {i}"

    async def test_spending_holds_a_limit_under_racing_handles(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        """Two handles (two replicas) spend 1 credit 40 times at once against a limit of 25: exactly 25
        are accepted; a refund always goes through; each day and caller has its own total."""
        store = backend.jobs
        url = None if isinstance(store, DiskStore) else backend.where
        async with open_backend(url, tmp_path / "store") as other:
            answers: list[float | None] = []

            async def spend(handle: Store) -> None:
                answers.append(await handle.spend("2026-12-07", "ann", 1.0, 25.0))

            async with anyio.create_task_group() as tg:
                for n in range(40):
                    tg.start_soon(spend, store if n % 2 else other.jobs)
            assert sum(a is not None for a in answers) == 25
            assert sorted(a for a in answers if a is not None) == pytest.approx(
                [float(n) for n in range(1, 26)]
            )
            assert await other.jobs.spend("2026-12-07", "ann", -2.5, 25.0) == pytest.approx(22.5)
            assert await store.spend("2026-12-07", "ann", 3.0, 25.0) is None  # 25.5 would cross it
            assert await store.spend("2026-12-07", "bob", 3.0, 25.0) == pytest.approx(3.0)
            assert await store.spend("2026-12-08", "ann", 3.0, None) == pytest.approx(3.0)
            assert await other.jobs.spending("2026-12-07") == pytest.approx({"ann": 22.5, "bob": 3.0})
            assert await store.spending("2026-12-06") == {}

    async def test_paces_keep_the_newest_per_kind_for_every_handle(
        self, backend: Backend, tmp_path: Path
    ) -> None:
        """What one replica learns of a provider's pace, another reads; only the newest `keep` stay."""
        store = backend.jobs
        assert await store.paces("fashn/tryon-max") == []
        for n in range(7):
            kept = await store.learn_pace("fashn/tryon-max", 0.5 + n / 10, keep=5)
        assert kept == pytest.approx([1.1, 1.0, 0.9, 0.8, 0.7])
        await store.learn_pace("autotoon/relight", 2.0, keep=5)
        url = None if isinstance(store, DiskStore) else backend.where
        async with open_backend(url, tmp_path / "store") as other:
            assert await other.jobs.paces("fashn/tryon-max") == pytest.approx(kept)
            assert await other.jobs.paces("autotoon/relight") == [2.0]
            assert await other.jobs.learn_pace("fashn/tryon-max", 0.25, keep=5) == pytest.approx(
                [0.25, 1.1, 1.0, 0.9, 0.8]
            )


def shoot(status: ShootStatus = ShootStatus.RUNNING, **fields: Any) -> ShootRecord:
    values: dict[str, Any] = {
        "shoot_id": "s" + new_job_id()[1:],
        "name": "spring",
        "status": status,
        "plan": {"name": "spring", "steps": []},
        "steps": [StepState(id="cast")],
        "folder": "/tmp/spring",
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return ShootRecord(**values)


class TestShootStoreContract:
    async def test_round_trip_update_and_unknown(self, backend: Backend) -> None:
        record = shoot(caller="alice", credits_estimate=12.5)
        await backend.shoots.put(record)
        assert await backend.shoots.get(record.shoot_id) == record
        assert await backend.shoots.get("s-nope") is None
        ended = await backend.shoots.update(
            record.shoot_id, lambda r: r.model_copy(update={"status": ShootStatus.CANCELED})
        )
        assert ended is not None and ended.status is ShootStatus.CANCELED
        assert await backend.shoots.get(record.shoot_id) == ended
        assert await backend.shoots.update("s-nope", lambda r: r) is None

    async def test_concurrent_step_changes_lose_nothing(self, backend: Backend) -> None:
        record = shoot(steps=[StepState(id=f"s{n}") for n in range(10)])
        await backend.shoots.put(record)

        async def add_job(n: int) -> None:
            def change(r: ShootRecord) -> ShootRecord:
                steps = [
                    s.model_copy(update={"job_ids": [f"j{n}"]}) if s.id == f"s{n}" else s for s in r.steps
                ]
                return r.model_copy(update={"steps": steps})

            await backend.shoots.update(record.shoot_id, change)

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(add_job, n)
        stored = await backend.shoots.get(record.shoot_id)
        assert stored is not None and [s.job_ids for s in stored.steps] == [[f"j{n}"] for n in range(10)]

    async def test_list_newest_first_filtered_with_cursor(self, backend: Backend) -> None:
        made = [
            shoot(status=ShootStatus.RUNNING if n % 2 else ShootStatus.SUCCEEDED, caller=f"c{n % 3}")
            for n in range(9)
        ]
        for r in made:
            await backend.shoots.put(r)
        newest = sorted(made, key=lambda r: r.shoot_id, reverse=True)
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page, cursor = await backend.shoots.list(limit=4, cursor=cursor)
            seen += [r.shoot_id for r in page]
            if cursor is None:
                break
        assert seen == [r.shoot_id for r in newest]
        running, _ = await backend.shoots.list(status=ShootStatus.RUNNING, limit=20)
        assert [r.shoot_id for r in running] == [
            r.shoot_id for r in newest if r.status is ShootStatus.RUNNING
        ]
        mine, _ = await backend.shoots.list(status=ShootStatus.RUNNING, caller="c1", limit=20)
        expected = [r.shoot_id for r in newest if r.status is ShootStatus.RUNNING and r.caller == "c1"]
        assert [r.shoot_id for r in mine] == expected and expected


class TestDiskStore:
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[DiskStore]:
        opened = DiskStore(tmp_path / "store")
        yield opened
        opened.close()

    async def test_values_are_json_text(self, store: Store, tmp_path: Path) -> None:
        record = make_job()
        await store.put(record)
        assert isinstance(store, DiskStore)
        raw = store._jobs.get(record.job_id)
        assert isinstance(raw, str) and JobRecord.model_validate_json(raw) == record

    async def test_survives_reopen(self, store: Store, tmp_path: Path) -> None:
        record = make_job()
        await store.put(record)
        reopened = DiskStore(tmp_path / "store")
        try:
            assert await reopened.get(record.job_id) == record
            assert [r.job_id for r in await reopened.unfinished()] == [record.job_id]
        finally:
            reopened.close()

    async def test_catalog_is_built_for_a_folder_without_one(self, store: Store, tmp_path: Path) -> None:
        """A data folder from before the catalog (or whose catalog was lost) is catalogued on open."""
        running = make_job(status=JobStatus.RUNNING, shoot_id="s1")
        done = make_job(status=JobStatus.SUCCEEDED, provider="autotoon")
        for r in (running, done):
            await store.put(r)
        store.close()
        for leftover in (tmp_path / "store").glob("catalog.sqlite3*"):
            leftover.unlink()
        reopened = DiskStore(tmp_path / "store")
        try:
            assert [r.job_id for r in await reopened.unfinished()] == [running.job_id]
            assert (await reopened.list(provider="autotoon"))[0] == [done]
            assert (await reopened.list(shoot_id="s1"))[0] == [running]
        finally:
            reopened.close()

    async def test_stale_rows_from_a_crash_are_skipped_and_healed(self, store: Store) -> None:
        """A crash between a put's new row and its record leaves an extra row: never a wrong answer."""
        assert isinstance(store, DiskStore)
        job = make_job(status=JobStatus.RUNNING)
        await store.put(job)
        await store.put(job.model_copy(update={"status": JobStatus.SUCCEEDED}))
        store._catalog.add((job.job_id, "running", "fashn", "", ""))  # the row of a state it left
        ghost = make_job(status=JobStatus.QUEUED)
        store._catalog.add((ghost.job_id, "queued", "fashn", "", ""))  # a row whose record never landed
        assert await store.unfinished() == []
        assert await store.list(status=JobStatus.RUNNING) == ([], None)
        page, _ = await store.list()
        assert [r.job_id for r in page] == [job.job_id]
        assert store._catalog.with_status(frozenset(JobStatus)) == [job.job_id]  # healed: one row left


# --- several processes on one folder ----------------------------------------------------------

ROUNDS = 50


def _contend(directory: str, name: str, start: Any, results: Any) -> None:
    """Child process: race the others to add a job under the same keys, and for the same leases."""

    async def main() -> list[tuple[str | None, bool]]:
        store = DiskStore(Path(directory))
        try:
            start.wait(timeout=30)
            outcomes: list[tuple[str | None, bool]] = []
            for i in range(ROUNDS):
                holder = await store.add(make_job(key=f"key-{i}"))
                leased = bool(await store.acquire_leases([f"job-{i}"], name, ttl=60))
                outcomes.append((holder.job_id, leased))
            return outcomes
        finally:
            store.close()

    results.put(anyio.run(main))


def test_processes_race_for_keys_and_leases(tmp_path: Path) -> None:
    n = 2  # one per core on small CI machines; spawning dominates the time, the race itself is fast
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(n)
    results = ctx.Queue()
    directory = str(tmp_path / "store")
    DiskStore(Path(directory)).close()  # create the caches once, before the race
    procs = [ctx.Process(target=_contend, args=(directory, f"p{i}", start, results)) for i in range(n)]
    for p in procs:
        p.start()
    per_process = [results.get(timeout=30) for _ in range(n)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    results.close()
    results.join_thread()

    for i in range(ROUNDS):
        # Every process sees the same holder (its own id if it won), and exactly one gets the lease.
        assert len({outcomes[i][0] for outcomes in per_process}) == 1, f"round {i}"
        assert sum(outcomes[i][1] for outcomes in per_process) == 1, f"round {i}"


async def test_records_and_catalogs_from_before_the_caller_rename_still_work(tmp_path: Path) -> None:
    """Records once called the caller `owner`, and the catalog had an `owner` column: both are read."""
    import sqlite3

    from diskcache import Cache

    job = make_job(caller="alice")
    old = job.model_dump(mode="json")
    old["owner"] = old.pop("caller")
    (tmp_path / "store").mkdir()
    cache = Cache(str(tmp_path / "store" / "jobs"))
    cache.set(job.job_id, json.dumps(old))
    cache.close()
    con = sqlite3.connect(tmp_path / "store" / "catalog.sqlite3")
    con.executescript(
        "CREATE TABLE entries (job_id TEXT, status TEXT, provider TEXT, shoot_id TEXT, owner TEXT);"
        "CREATE TABLE leases (job_id TEXT PRIMARY KEY, owner TEXT, expires REAL);"
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('entries', '1');"
    )
    con.close()
    store = DiskStore(tmp_path / "store")
    try:
        page, _ = await store.list(caller="alice")
        assert [r.job_id for r in page] == [job.job_id] and page[0].caller == "alice"
        assert await store.acquire_leases([job.job_id], "engine-1", 30)
    finally:
        store.close()
