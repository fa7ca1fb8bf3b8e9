"""The job engine against the FASHN emulator: idempotency, restarts, limits, failures, cancel, outputs."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from server.config import Settings
from server.engine import Engine
from server.errors import InputError
from server.models import JobStatus
from server.policy import HTTP
from server.providers.fashn.emulator import FashnEmulator, FashnFaults
from server.store import DiskStore
from tests.conftest import FAST_POLL, TIME_SCALE, sandbox_services

pytestmark = pytest.mark.anyio


async def finish(svc, job_id: str, seconds: float = 10.0):  # type: ignore[no-untyped-def]
    result = await svc.engine.wait([job_id], wait_seconds=seconds)
    assert not result.pending, f"job {job_id} did not finish: {result.jobs[0].status}"
    return result.jobs[0]


def tryon(model: Path, garment: Path, **extra: object) -> dict[str, object]:
    return {"model_image": str(model), "product_image": str(garment), **extra}


async def test_job_succeeds_with_downloaded_outputs(settings, emulator, model_photo, garment) -> None:
    async with sandbox_services(settings, emulator) as svc:
        job = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        assert job.status is JobStatus.QUEUED
        done = await finish(svc, job.job_id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.sandbox is True
    assert done.credits_used == 2
    (out,) = done.outputs
    assert out.uri == f"callsheet://jobs/{job.job_id}/outputs/0"
    path = Path(out.path)
    assert path.is_absolute() and path.is_file()
    assert path.is_relative_to(settings.media_dir)
    assert out.mime_type == "image/png" and out.width and out.height
    assert out.source_url and out.source_url.startswith("https://")
    assert done.status_calls <= 4


async def test_same_file_content_under_another_name_is_the_same_job(
    settings, emulator, model_photo, garment
) -> None:
    copy = garment.with_name("copy.png")
    copy.write_bytes(garment.read_bytes())
    async with sandbox_services(settings, emulator) as svc:
        first = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        second = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, copy))
        assert second.job_id == first.job_id


async def test_failed_job_does_not_hold_the_key(settings, emulator, model_photo) -> None:
    args = {"prompt": "model [sandbox:fail=PoseError]"}
    async with sandbox_services(settings, emulator) as svc:
        job = await svc.engine.submit("fashn", "model_create", args)
        done = await finish(svc, job.job_id)
        assert done.status is JobStatus.FAILED
        assert done.error is not None and done.error.code == "pose_error" and not done.error.retryable
        assert "pose" in done.error.message.lower()
        assert done.credits_used == 0
        repeat = await svc.engine.submit("fashn", "model_create", args)
        assert repeat.job_id != job.job_id


async def test_burst_of_twenty_queues_without_429(settings, model_photo, garment) -> None:
    emulator = FashnEmulator(time_scale=TIME_SCALE)
    async with sandbox_services(settings, emulator) as svc:
        jobs = [
            await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment, seed=i))
            for i in range(20)
        ]
        result = await svc.engine.wait([j.job_id for j in jobs], wait_seconds=30)
    assert not result.pending
    assert all(j.status is JobStatus.SUCCEEDED for j in result.jobs)
    assert emulator.stats.sent_429 == 0
    assert emulator.stats.max_in_flight <= 6
    assert emulator.stats.run_calls == 20


async def test_transient_5xx_on_run_and_status_are_retried(settings, model_photo, garment) -> None:
    emulator = FashnEmulator(
        time_scale=TIME_SCALE, faults=FashnFaults(run_errors=[500, 503], status_errors=[502])
    )
    async with sandbox_services(settings, emulator) as svc:
        job = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        done = await finish(svc, job.job_id)
    assert done.status is JobStatus.SUCCEEDED
    assert emulator.stats.run_calls == 3
    assert len(emulator.stats.predictions) == 1


async def test_dropped_connection_after_accept_is_submission_lost(settings, model_photo, garment) -> None:
    emulator = FashnEmulator(time_scale=TIME_SCALE, faults=FashnFaults(run_drop_after_accept=1))
    async with sandbox_services(settings, emulator) as svc:
        job = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        done = await finish(svc, job.job_id)
        assert done.status is JobStatus.FAILED
        assert done.error is not None and done.error.code == "submission_lost"
        assert emulator.stats.run_calls == 1  # never resent
        retry = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        assert retry.job_id != job.job_id  # a lost submission does not hold the key


async def test_unparseable_success_reply_is_submission_lost(settings, model_photo, garment) -> None:
    emulator = FashnEmulator(time_scale=TIME_SCALE, faults=FashnFaults(run_malformed=1))
    async with sandbox_services(settings, emulator) as svc:
        job = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        done = await finish(svc, job.job_id)
    assert done.error is not None and done.error.code == "submission_lost"
    assert emulator.stats.run_calls == 1


@pytest.mark.parametrize(
    ("faults", "code"),
    [
        (FashnFaults(credits=0), "insufficient_credits"),
        (FashnFaults(credits=0, out_of_credits_as_429=True), "insufficient_credits"),
        (FashnFaults(run_errors=[400]), "invalid_request"),
        (FashnFaults(run_errors=[500] * 10), "provider_unavailable"),
    ],
)
async def test_submission_errors_fail_the_job_with_a_clear_code(
    settings, model_photo, garment, faults: FashnFaults, code: str
) -> None:
    emulator = FashnEmulator(time_scale=TIME_SCALE, faults=faults)
    async with sandbox_services(settings, emulator) as svc:
        job = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        done = await finish(svc, job.job_id)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == code, done.error
    assert len(emulator.stats.predictions) == 0


async def test_cancel_reaches_the_provider(settings, model_photo, garment) -> None:
    emulator = FashnEmulator(time_scale=0.05)
    async with sandbox_services(settings, emulator) as svc:
        job = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        with anyio.fail_after(5):
            while (await svc.engine.get(job.job_id)).provider_job_id is None:
                await anyio.sleep(0.005)
        canceled, note = await svc.engine.cancel(job.job_id)
        assert canceled.status is JobStatus.CANCELED
        assert "FASHN" in note or "fashn" in note
        again, note2 = await svc.engine.cancel(job.job_id)
        assert again.status is JobStatus.CANCELED and "already" in note2
    assert emulator.stats.cancel_calls == 1
    (prediction,) = emulator.stats.predictions.values()
    assert prediction.canceled_at is not None and prediction.refunded


async def test_base64_outputs_are_saved(settings, emulator, model_photo, garment) -> None:
    async with sandbox_services(settings, emulator) as svc:
        job = await svc.engine.submit(
            "fashn", "tryon_max", tryon(model_photo, garment, return_base64=True, num_images=2)
        )
        done = await finish(svc, job.job_id)
    assert done.status is JobStatus.SUCCEEDED
    assert len(done.outputs) == 2
    assert all(o.source_url is None and Path(o.path).is_file() for o in done.outputs)
    assert done.outputs[0].sha256 != "" and done.outputs[0].bytes > 0


async def test_earlier_output_chains_into_the_next_job(settings, emulator, model_photo, garment) -> None:
    async with sandbox_services(settings, emulator) as svc:
        cast = await finish(svc, (await svc.engine.submit("fashn", "model_create", {"prompt": "a"})).job_id)
        job = await svc.engine.submit(
            "fashn", "tryon_max", {"model_image": cast.outputs[0].uri, "product_image": str(garment)}
        )
        done = await finish(svc, job.job_id)
    assert done.status is JobStatus.SUCCEEDED
    sent = next(p for p in emulator.stats.predictions.values() if p.model_name == "tryon-max")
    assert str(sent.inputs["model_image"]).startswith("data:image/png;base64,")


async def test_bad_input_stores_nothing(settings: Settings, emulator, garment) -> None:
    async with sandbox_services(settings, emulator) as svc:
        with pytest.raises(InputError) as err:
            await svc.engine.submit(
                "fashn", "tryon_max", {"model_image": "/etc/passwd", "product_image": str(garment)}
            )
        assert "model_image" in str(err.value)
        with pytest.raises(InputError):
            await svc.engine.submit("fashn", "tryon_max", {"model_image": str(garment), "colour": "red"})
        records, _ = await svc.engine.list_jobs()
    assert records == []
    assert emulator.stats.run_calls == 0


async def test_two_engines_on_one_store_drive_each_job_once(settings, model_photo, garment) -> None:
    emulator = FashnEmulator(time_scale=TIME_SCALE)
    async with sandbox_services(settings, emulator) as a, sandbox_services(settings, emulator) as b:
        jobs = [
            await a.engine.submit("fashn", "tryon_max", tryon(model_photo, garment, seed=i)) for i in range(4)
        ]
        await b.engine.resume()  # b tries to adopt a's jobs; the leases say no
        repeat = await b.engine.submit("fashn", "tryon_max", tryon(model_photo, garment, seed=0))
        assert repeat.job_id == jobs[0].job_id
        result = await a.engine.wait([j.job_id for j in jobs], wait_seconds=10)
    assert not result.pending
    assert emulator.stats.run_calls == 4
    assert all(n <= 4 for n in emulator.stats.status_calls_by_id.values())


async def test_cancel_from_another_process_stops_a_queued_job(settings, model_photo, garment) -> None:
    emulator = FashnEmulator(time_scale=TIME_SCALE * 5)
    async with sandbox_services(settings, emulator) as a, sandbox_services(settings, emulator) as b:
        jobs = [
            await a.engine.submit("fashn", "tryon_max", tryon(model_photo, garment, seed=i)) for i in range(7)
        ]
        await anyio.sleep(0.02)
        assert (await b.engine.get(jobs[-1].job_id)).status is JobStatus.QUEUED
        canceled, _ = await b.engine.cancel(jobs[-1].job_id)  # b does not drive it: a does
        assert canceled.status is JobStatus.CANCELED
        result = await a.engine.wait([j.job_id for j in jobs[:-1]], wait_seconds=10)
        assert not result.pending
        await anyio.sleep(0.05)
        assert (await a.engine.get(jobs[-1].job_id)).status is JobStatus.CANCELED
    assert emulator.stats.run_calls == 6


def flaky(app, failures: dict[str, list[type[Exception]]]):  # type: ignore[no-untyped-def]
    """Wrap an emulator: raise the given httpx errors on the next requests to a path prefix."""
    import httpx

    async def wrapped(scope, receive, send):  # type: ignore[no-untyped-def]
        for prefix, errors in failures.items():
            if scope["type"] == "http" and scope["path"].startswith(prefix) and errors:
                raise errors.pop(0)("injected", request=httpx.Request(scope["method"], "http://x"))
        await app(scope, receive, send)

    return wrapped


async def test_connect_errors_and_status_timeouts_are_retried(settings, model_photo, garment) -> None:
    import httpx

    emulator = FashnEmulator(time_scale=TIME_SCALE)
    app = flaky(
        emulator.app,
        {"/v1/run": [httpx.ConnectError, httpx.ConnectTimeout], "/v1/status": [httpx.ReadTimeout]},
    )
    async with sandbox_services(settings, emulator, sandbox_apps={"fashn": app}) as svc:
        job = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        done = await finish(svc, job.job_id)
    assert done.status is JobStatus.SUCCEEDED
    assert len(emulator.stats.predictions) == 1


async def test_read_timeout_on_run_is_never_resent(settings, model_photo, garment) -> None:
    import httpx

    emulator = FashnEmulator(time_scale=TIME_SCALE)
    app = flaky(emulator.app, {"/v1/run": [httpx.ReadTimeout]})
    async with sandbox_services(settings, emulator, sandbox_apps={"fashn": app}) as svc:
        job = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        done = await finish(svc, job.job_id)
    assert done.error is not None and done.error.code == "submission_lost"
    assert emulator.stats.run_calls == 0  # the injected timeout stood for a request that may have landed


async def test_leases_are_renewed_while_a_job_runs_longer_than_their_ttl(
    settings, model_photo, garment, caplog: pytest.LogCaptureFixture
) -> None:
    """A try-on takes 0.4-2.4 s here, the lease 0.3 s: the engine renews it (counted at the store, not
    timed) and drives the job to its end alone."""
    emulator = FashnEmulator(time_scale=0.02)

    class CountingStore:
        def __init__(self, inner: DiskStore) -> None:
            self.inner = inner
            self.leases: list[tuple[str, str]] = []

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        async def acquire_leases(self, job_ids: list[str], owner: str, ttl: float) -> list[str]:
            self.leases += [(job_id, owner) for job_id in job_ids]
            return await self.inner.acquire_leases(job_ids, owner, ttl)

    async with sandbox_services(settings, emulator, start_engine=False) as svc:
        store = CountingStore(svc.engine.store)
        engine = Engine(store=store, media=svc.media, providers=svc.providers, poll=FAST_POLL, lease_ttl=0.3)  # type: ignore[arg-type]
        async with engine.running():
            job = await engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
            done = (await engine.wait([job.job_id], wait_seconds=20)).jobs[0]
    assert done.status is JobStatus.SUCCEEDED
    assert store.leases.count((job.job_id, engine.lease_holder)) >= 2  # taken, then renewed
    assert emulator.stats.run_calls == 1
    assert "lost the lease" not in caplog.text


async def trickle(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """A provider that accepts the request, then answers one byte at a time and never finishes."""
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    while True:
        await send({"type": "http.response.body", "body": b" ", "more_body": True})
        await anyio.sleep(0.01)


async def test_a_provider_that_never_finishes_answering_meets_the_request_deadline(
    settings, model_photo, garment
) -> None:
    """Per-read timeouts never fire while bytes trickle in: the whole request has a deadline (here
    120 s scaled by the sandbox's time scale), and a submission cut short may have landed."""
    async with sandbox_services(settings, FashnEmulator(), sandbox_apps={"fashn": trickle}) as svc:
        job = await svc.engine.submit("fashn", "tryon_max", tryon(model_photo, garment))
        done = await finish(svc, job.job_id)
        deadline = svc.providers["fashn"].http.deadline(HTTP)
    assert deadline == pytest.approx(120 * TIME_SCALE)
    assert done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "submission_lost"
    assert f"did not finish answering within {deadline:g} s" in done.error.message
