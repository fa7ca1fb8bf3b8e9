"""The engine's own decisions, against a scripted provider with no HTTP at all: what is retried,
what is never resent, how jobs are followed to their end, batches, cancels, restarts."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image
from pydantic import Field

from server.config import Settings
from server.engine import Engine
from server.errors import (
    AuthError,
    BadResponse,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    TransportError,
)
from server.limiter import Limiter
from server.media import Media
from server.models import JobError, JobRecord, JobStatus, Output, RemoteOutput, utcnow
from server.policy import PACE_MIN_SEEN, Limits, PollPolicy
from server.providers.base import (
    Mode,
    OperationSpec,
    Provider,
    ProviderInputs,
    ProviderSettings,
    RemoteState,
    StatusReport,
    Submission,
)
from server.store import open_backend
from tests.conftest import FAST_RETRY

pytestmark = pytest.mark.anyio

EAGER = PollPolicy(looks=(), step=0.0, floor=0.001, ceiling=0.01)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "PNG")
    return buffer.getvalue()


class MakeInputs(ProviderInputs):
    what: str = Field(description="What to make.")


class Scripted(Provider):
    """A provider that answers from scripts: each submit and each status call takes the next step
    (an answer, or an exception to raise)."""

    name = "scripted"
    title = "Scripted"
    key_var = "SCRIPTED_KEY"
    url_var = "SCRIPTED_URL"
    default_base_url = "https://scripted.test"
    fixed_operations = (
        OperationSpec(
            "make", "Make", "Makes a thing.", MakeInputs, credits=lambda _: 2.0, seconds=lambda _: 0.01
        ),
    )

    def __init__(self, submits: list[Any], statuses: list[Any] | None = None) -> None:
        super().__init__(ProviderSettings(self.name, Mode.LIVE, self.default_base_url, self.key_var, "k"))
        self.submits = submits
        self.statuses = statuses or []
        self.sent: list[dict[str, Any]] = []
        self.polled: list[str] = []
        self.canceled: list[str] = []
        self._limiter = Limiter(self.limits())

    def limits(self) -> Limits:
        return Limits(windows={}, max_in_flight=4)

    @property
    def limiter(self) -> Limiter:
        return self._limiter

    @property
    def time_scale(self) -> float:
        return 1.0

    async def save_outputs(self, media: Media, job: JobRecord, outputs: list[RemoteOutput]) -> list[Output]:
        return await media.save_outputs(job, outputs, None)  # type: ignore[arg-type]  # inline only

    async def submit(
        self, operation: str, payload: dict[str, Any], *, webhook_url: str | None = None
    ) -> Submission:
        self.sent.append(payload)
        return _step(self.submits)

    async def status(self, provider_job_id: str, operation: str) -> StatusReport:
        self.polled.append(provider_job_id)
        return _step(self.statuses)

    async def cancel(self, provider_job_id: str, operation: str) -> bool:
        self.canceled.append(provider_job_id)
        return True


def _step(script: list[Any]) -> Any:
    step = script.pop(0) if len(script) > 1 else script[0]
    if isinstance(step, BaseException):
        raise step
    return step


DONE = StatusReport(RemoteState.SUCCEEDED, outputs=[RemoteOutput(data=png(), mime_type="image/png")])
ACCEPTED = Submission("p1", credits_used=2)


@pytest.fixture(params=["disk", "redis"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Every engine test runs on the embedded store and on Redis."""
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


@asynccontextmanager
async def engine(
    settings: Settings, provider: Scripted, store_url: str | None, poll: PollPolicy = EAGER
) -> AsyncIterator[Engine]:
    async with open_backend(store_url, settings.store_dir) as backend:
        book = backend.book(provider.name)
        provider._limiter = Limiter(
            provider._limiter.limits, book, backend.signals, f"limits:{provider.name}"
        )
        core = Engine(
            store=backend.jobs,
            media=Media(settings, backend.jobs),
            providers={provider.name: provider},
            signals=backend.signals,
            retry=FAST_RETRY,
            poll=poll,
        )
        async with core.running():
            yield core


async def run(core: Engine, what: str = "a thing") -> JobRecord:
    job = await core.submit("scripted", "make", {"what": what})
    result = await core.wait([job.job_id], wait_seconds=10)
    assert not result.pending
    return result.jobs[0]


async def test_a_job_is_followed_through_its_states_to_a_stored_output(
    settings: Settings, store_url: str | None
) -> None:
    provider = Scripted(
        [ACCEPTED], [StatusReport(RemoteState.PENDING), StatusReport(RemoteState.RUNNING), DONE]
    )
    async with engine(settings, provider, store_url) as core:
        done = await run(core)
    assert done.status is JobStatus.SUCCEEDED and done.credits_used == 2 == done.credits_estimate
    assert done.status_calls == 3 and provider.polled == ["p1"] * 3
    assert Path(done.outputs[0].path).read_bytes() == png()
    assert provider.sent == [{"what": "a thing"}]


@pytest.mark.parametrize(
    "refusal",
    [
        RateLimited("slow down", retry_after=0.01),
        ProviderUnavailable("down for a moment"),
        TransportError("connection refused", maybe_sent=False),
    ],
)
async def test_a_submission_surely_not_accepted_is_sent_again(
    settings: Settings, store_url: str | None, refusal: Exception
) -> None:
    provider = Scripted([refusal, refusal, ACCEPTED], [DONE])
    async with engine(settings, provider, store_url) as core:
        done = await run(core)
    assert done.status is JobStatus.SUCCEEDED and len(provider.sent) == 3


@pytest.mark.parametrize(
    "unknown",
    [
        TransportError("read timeout after sending", maybe_sent=True),
        BadResponse("the answer cannot be parsed"),
    ],
)
async def test_a_submission_that_may_have_landed_is_never_sent_again(
    settings: Settings, store_url: str | None, unknown: Exception
) -> None:
    provider = Scripted([unknown, ACCEPTED], [DONE])
    async with engine(settings, provider, store_url) as core:
        done = await run(core)
    assert done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "submission_lost" and "may have been charged" in done.error.message
    assert len(provider.sent) == 1


async def test_a_refusal_of_the_input_fails_at_once_with_its_code(
    settings: Settings, store_url: str | None
) -> None:
    provider = Scripted([ProviderRejected("no such garment", provider_code="BAD_INPUT")])
    async with engine(settings, provider, store_url) as core:
        done = await run(core)
    assert done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "invalid_request" and not done.error.retryable
    assert len(provider.sent) == 1


async def test_status_errors_are_tolerated_but_a_refused_key_ends_the_job(
    settings: Settings, store_url: str | None
) -> None:
    flaky = Scripted([ACCEPTED], [ProviderUnavailable("blip"), ProviderUnavailable("blip"), DONE])
    async with engine(settings, flaky, store_url) as core:
        assert (await run(core)).status is JobStatus.SUCCEEDED
    refused = Scripted([ACCEPTED], [AuthError("key revoked")])
    async with engine(settings, refused, store_url) as core:
        done = await run(core, "another thing")
    assert done.status is JobStatus.FAILED and done.error is not None and done.error.code == "unauthorized"


async def test_a_synchronous_answer_ends_the_job_without_polling(
    settings: Settings, store_url: str | None
) -> None:
    provider = Scripted([Submission("p9", credits_used=2, done=DONE)])
    async with engine(settings, provider, store_url) as core:
        done = await run(core)
    assert done.status is JobStatus.SUCCEEDED and provider.polled == []


async def test_a_failure_at_the_provider_keeps_its_error_and_the_charge_it_reports(
    settings: Settings, store_url: str | None
) -> None:
    """A failure costs what the provider says it cost; when it says nothing, what it charged on
    acceptance stands."""
    error = JobError(code="pose_error", message="no pose found", retryable=False)
    refunded = Scripted([ACCEPTED], [StatusReport(RemoteState.FAILED, error=error, credits_used=0)])
    async with engine(settings, refunded, store_url) as core:
        done = await run(core)
    assert done.status is JobStatus.FAILED and done.error == error and done.credits_used == 0
    silent = Scripted([ACCEPTED], [StatusReport(RemoteState.FAILED, error=error)])
    async with engine(settings, silent, store_url) as core:
        done = await run(core, "another thing")
    assert done.status is JobStatus.FAILED and done.credits_used == 2


async def test_a_batch_ends_when_its_items_have_keeping_the_good_outputs(
    settings: Settings, store_url: str | None
) -> None:
    failed = StatusReport(RemoteState.FAILED, error=JobError(code="x", message="x", retryable=True))
    batch = Submission("b1", credits_used=6, children=("c1", "c2", "c3"), child_operation="make")
    provider = Scripted([batch], [DONE, failed, DONE])
    async with engine(settings, provider, store_url) as core:
        done = await run(core)
    assert done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "batch_incomplete" and len(done.children) == 3
    assert len(done.outputs) == 2 and all(
        o.uri.startswith(f"callsheet://jobs/{done.job_id}/") for o in done.outputs
    )


async def test_cancel_before_sending_sends_nothing_and_after_sending_cancels_at_the_provider(
    settings: Settings, store_url: str | None
) -> None:
    provider = Scripted([ACCEPTED], [StatusReport(RemoteState.RUNNING)])
    provider._limiter = Limiter(Limits(windows={}, max_in_flight=1))  # the second job waits for a slot
    async with engine(settings, provider, store_url) as core:
        running = await core.submit("scripted", "make", {"what": "a thing"})
        with anyio.fail_after(10):
            while (await core.get(running.job_id)).provider_job_id is None:
                await anyio.sleep(0.001)
        waiting = await core.submit("scripted", "make", {"what": "another thing"})
        unsent, unsent_note = await core.cancel(waiting.job_id)
        sent, note = await core.cancel(running.job_id)
    assert unsent.status is JobStatus.CANCELED and "nothing was charged" in unsent_note
    assert sent.status is JobStatus.CANCELED and note == "Canceled at scripted too."
    assert provider.sent == [{"what": "a thing"}] and provider.canceled == ["p1"]


async def test_a_job_left_mid_send_by_a_crash_is_never_resent(
    settings: Settings, store_url: str | None
) -> None:
    """The server stopped between sending and storing the provider's id: it may have been charged."""
    now = utcnow()
    record = JobRecord(
        job_id="j0000000001crash",
        provider="scripted",
        operation="make",
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
        key="k",
        payload={"what": "a thing"},
        submit_started_at=now,
    )
    async with open_backend(store_url, settings.store_dir) as backend:
        await backend.jobs.put(record)
    provider = Scripted([ACCEPTED], [DONE])
    async with engine(settings, provider, store_url) as core:  # resumes it at start
        result = await core.wait([record.job_id], wait_seconds=10)
    (done,) = result.jobs
    assert done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "submission_lost" and provider.sent == []
    assert "charged" in done.error.message and "force" in done.error.message


@dataclass(frozen=True)
class Looking(PollPolicy):
    """Looks every `every` s and notes the typical duration each look was placed from."""

    every: float = 0.02
    typicals: list[float] = field(default_factory=list)

    def next_look(
        self, typical: float, elapsed: float, planned: int, pace: float = 1.0
    ) -> tuple[float, bool]:
        self.typicals.append(typical)
        return self.every, False


async def test_polls_follow_the_pace_learned_from_jobs_seen_and_every_replica_shares_it(
    settings: Settings, store_url: str | None
) -> None:
    """ "make" is documented at 0.01 s; each job is seen running twice and done at the third look, so
    it took at least 0.05 s (looks 0.02 s apart): five times the documented duration or more."""
    running = StatusReport(RemoteState.RUNNING)
    documented = 0.01
    script = [running, running, DONE] * (PACE_MIN_SEEN + 2)
    provider = Scripted([ACCEPTED], script)
    looks = Looking()
    async with engine(settings, provider, store_url, looks) as core:
        for n in range(PACE_MIN_SEEN):
            await run(core, f"thing {n}")
        assert looks.typicals == [documented] * 3 * PACE_MIN_SEEN  # as documented until enough were seen
        looks.typicals.clear()
        await run(core, "one more")
    assert min(looks.typicals) >= 5 * documented

    replica = Looking()  # another replica (or this one restarted) polls by what was learned
    async with engine(settings, provider, store_url, replica) as core:
        await run(core, "on another replica")
    assert min(replica.typicals) >= 5 * documented


class Held(Scripted):
    """Each job's provider id is what it makes; a job whose id is in `held` runs until let go."""

    def __init__(self) -> None:
        super().__init__([ACCEPTED])
        self.held: set[str] = set()

    async def submit(
        self, operation: str, payload: dict[str, Any], *, webhook_url: str | None = None
    ) -> Submission:
        self.sent.append(payload)
        return Submission(payload["what"], credits_used=2)

    async def status(self, provider_job_id: str, operation: str) -> StatusReport:
        self.polled.append(provider_job_id)
        return StatusReport(RemoteState.RUNNING) if provider_job_id in self.held else DONE


class ReadsByTask:
    """The job store, counting the reads each task makes."""

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs
        self.reads: dict[int, int] = {}

    async def get(self, job_id: str) -> JobRecord | None:
        task = anyio.get_current_task().id
        self.reads[task] = self.reads.get(task, 0) + 1
        record: JobRecord | None = await self.jobs.get(job_id)
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.jobs, name)


async def test_a_waiter_is_woken_by_its_own_jobs_only_and_takes_their_changes_from_the_writes(
    settings: Settings, store_url: str | None
) -> None:
    provider = Held()
    provider.held.add("mine")
    async with open_backend(store_url, settings.store_dir) as backend:
        provider._limiter = Limiter(
            provider._limiter.limits, backend.book("scripted"), backend.signals, "limits:scripted"
        )
        jobs = ReadsByTask(backend.jobs)
        core = Engine(
            store=jobs,  # type: ignore[arg-type]  # the store, counted
            media=Media(settings, backend.jobs),
            providers={"scripted": provider},
            signals=backend.signals,
            retry=FAST_RETRY,
            poll=EAGER,
        )
        core.reread_seconds = 3600.0  # no safety-net re-read here: only wake-ups move the waiter
        async with core.running(), anyio.create_task_group() as tg:
            mine = await core.submit("scripted", "make", {"what": "mine"})
            with anyio.fail_after(10):
                while (await core.get(mine.job_id)).status is not JobStatus.RUNNING:
                    await anyio.sleep(0.002)
            reports: list[str] = []
            waiter: dict[str, Any] = {}

            async def wait_for_mine() -> None:
                waiter["task"] = anyio.get_current_task().id

                async def progress(share: float, message: str) -> None:
                    reports.append(message)

                waiter["result"] = await core.wait([mine.job_id], wait_seconds=3600, on_progress=progress)

            tg.start_soon(wait_for_mine)
            others = [await run(core, f"other {n}") for n in range(5)]  # each written four times or more
            assert [o.status for o in others] == [JobStatus.SUCCEEDED] * 5
            assert len(reports) == 1  # reported once, at the start: no other job's change woke it
            provider.held.clear()
        result = waiter["result"]
    assert [j.status for j in result.jobs] == [JobStatus.SUCCEEDED] and result.jobs[0].outputs
    assert jobs.reads[waiter["task"]] == 1  # its first read; then the records its job's changes wrote
