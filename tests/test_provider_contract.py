"""One contract for every provider: each (adapter, emulator) pair submits, polls, succeeds, fails
with the provider's failure, meets a wrong key, a 429 with Retry-After and a 5xx, survives a
restart mid-job without paying twice, cancels where the provider can, and charges in the sandbox
exactly what the estimate said, for every operation and a spread of arguments.

A provider joins by one `Pair` below (the fake fifth provider of `tests/fake_provider/` too)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from mcp import Client

from server.app import create_app
from server.config import Settings
from server.errors import AuthError
from server.models import Job, JobError, JobRecord, JobStatus
from server.providers import REGISTRY
from server.providers.autotoon.emulator import AutoToonEmulator, AutoToonFaults
from server.providers.fashn.emulator import FashnEmulator, FashnFaults
from server.providers.genapi.emulator import GenApiEmulator, GenApiFaults
from server.providers.neofashion.emulator import NeoFashionEmulator, NeoFashionFaults
from server.services import Services
from tests.conftest import FAST_POLL, FAST_RETRY, TIME_SCALE, make_settings, png_bytes, sandbox_services
from tests.fake_provider import adapter as fake
from tests.fake_provider.emulator import FakeEmulator, FakeFaults

pytestmark = pytest.mark.anyio

PUBLIC = "https://93.184.216.34"  # a literal public address: checked without DNS, never fetched
IMG = f"{PUBLIC}/look.png"
PNG = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()


@dataclass(frozen=True)
class Pair:
    """What the contract needs to know of one provider and its emulator."""

    provider: str
    emulator: Callable[..., Any]
    """The emulator class (kit options: time_scale, api_key, faults...)."""
    faults: Callable[[], Any]
    ok: tuple[str, dict[str, Any]]
    """A call that succeeds as a job the provider runs under an id (polled to its end)."""
    failing: tuple[str, dict[str, Any], str]
    """A call the provider fails, and the job's error code."""
    submissions: Callable[[Any], int]
    """How many submissions the emulator received."""
    inject: Callable[[Any, list[int]], None]
    """Answer the next submissions with these HTTP statuses."""
    inject_status: Callable[[Any, list[int]], None] | None
    """Answer the next status reads with these HTTP statuses (None: the emulator has no such knob)."""
    charged: Callable[[Any], float] | None
    """What the emulator has charged so far (None: the provider publishes no prices)."""
    can_cancel: bool
    prices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_setup: Callable[[Any], None] = lambda emu: None


PAIRS = [
    Pair(
        provider="fashn",
        emulator=FashnEmulator,
        faults=FashnFaults,
        ok=("model_create", {"prompt": "an editorial model"}),
        failing=("model_create", {"prompt": "a model [sandbox:fail=PoseError]"}, "pose_error"),
        submissions=lambda emu: emu.stats.run_calls,
        inject=lambda emu, statuses: emu.faults.run_errors.extend(statuses),
        inject_status=lambda emu, statuses: emu.faults.status_errors.extend(statuses),
        charged=lambda emu: FashnFaults().credits - emu.faults.credits,
        can_cancel=True,
        prices=[
            ("tryon_max", {"model_image": IMG, "product_image": IMG}),
            ("tryon_max", {"model_image": IMG, "product_image": IMG, "resolution": "4k", "num_images": 2}),
            ("tryon_v1_6", {"model_image": IMG, "garment_image": IMG, "num_samples": 3}),
            ("product_to_model", {"product_image": IMG, "resolution": "2k"}),
            ("product_to_model", {"product_image": IMG, "face_reference": IMG, "num_images": 2}),
            ("face_to_model", {"face_image": IMG, "generation_mode": "quality", "num_images": 3}),
            ("model_create", {"prompt": "p", "resolution": "2k", "face_reference": IMG}),
            ("model_swap", {"model_image": IMG, "generation_mode": "fast", "resolution": "4k"}),
            ("edit", {"image": IMG, "prompt": "red", "generation_mode": "quality"}),
            ("reframe", {"image": IMG, "aspect_ratio": "9:16", "num_images": 2}),
            ("background_change", {"image": IMG, "prompt": "beach", "resolution": "2k"}),
            ("background_remove", {"image": IMG}),
            ("image_to_video", {"image": IMG}),
            ("image_to_video", {"image": IMG, "resolution": "720p", "duration": 10}),
            ("packshot", {"product_image": IMG, "resolution": "4k", "generation_mode": "balanced"}),
        ],
    ),
    Pair(
        provider="autotoon",
        emulator=AutoToonEmulator,
        faults=AutoToonFaults,
        ok=("video", {"image_url": IMG}),
        failing=("video", {"image_url": IMG}, "video_failed"),
        fail_setup=lambda emu: setattr(emu.faults, "video_failures", 1),
        submissions=lambda emu: emu.stats.generation_calls(),
        inject=lambda emu, statuses: emu.faults.generate_errors.extend(statuses),
        inject_status=lambda emu, statuses: emu.faults.status_errors.extend(statuses),
        charged=lambda emu: AutoToonFaults().credits - emu.faults.credits,
        can_cancel=False,
        prices=[
            ("editorial", {"model_id": "clx9abc123def456", "clothing_image_urls": [IMG]}),
            ("variations", {"base_image_url": IMG, "style": "surreal-product-hero"}),
            ("relight", {"base_image_url": IMG, "lighting": "neon"}),
            ("upscale", {"image_url": IMG, "scale": 2}),
            ("video", {"image_url": IMG}),
        ],
    ),
    Pair(
        provider="neofashion",
        emulator=lambda **kw: NeoFashionEmulator(sync_seconds=0, image_long_side=64, **kw),
        faults=NeoFashionFaults,
        ok=("image", {"prompt": "a linen dress"}),
        failing=("image", {"prompt": "a linen dress [sandbox:fail]"}, "provider_error"),
        submissions=lambda emu: emu.stats.generate_calls,
        inject=lambda emu, statuses: emu.faults.submit_errors.extend(statuses),
        inject_status=lambda emu, statuses: emu.faults.read_errors.extend(statuses),
        charged=lambda emu: NeoFashionFaults().credits - emu.balance(),
        can_cancel=False,
        prices=[
            ("image", {"prompt": "a dress", "image_url": IMG, "aspect_ratio": "4:5"}),
            ("video", {"prompt": "a turn", "duration": 10}),
            ("video", {"prompt": "a turn"}),
            ("sketch_to_photo", {"sketch_url": IMG}),
            ("bulk", {"items": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}]}),
        ],
    ),
    Pair(
        provider="genapi",
        emulator=GenApiEmulator,
        faults=GenApiFaults,
        ok=("generate", {"tool": "fashion_swap", "images": {"clothes": PNG, "person": PNG}}),
        failing=(
            "generate",
            {"tool": "default", "images": {"image": PNG}, "fields": {"note": "[sandbox:error]"}},
            "generation_error",
        ),
        submissions=lambda emu: emu.stats.generate_calls,
        inject=lambda emu, statuses: emu.faults.generate_errors.extend(statuses),
        inject_status=lambda emu, statuses: emu.faults.status_errors.extend(statuses),
        charged=None,
        can_cancel=False,
    ),
    Pair(
        provider="fake",
        emulator=FakeEmulator,
        faults=FakeFaults,
        ok=("render", {"prompt": "a hat", "image": IMG}),
        failing=("render", {"prompt": "a hat [sandbox:fail]"}, "render_failed"),
        submissions=lambda emu: emu.stats.submissions,
        inject=lambda emu, statuses: emu.faults.submit_errors.extend(statuses),
        inject_status=None,
        charged=lambda emu: FakeFaults().credits - emu.faults.credits,
        can_cancel=True,
        prices=[("render", {"prompt": "a", "size": "small"}), ("render", {"prompt": "b", "size": "large"})],
    ),
]


@pytest.fixture(autouse=True)
def fake_provider_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The fifth provider is one line in the registry (here only, for the tests)."""
    monkeypatch.setitem(REGISTRY, fake.Fake.name, fake.Fake)
    yield


@pytest.fixture(params=PAIRS, ids=[p.provider for p in PAIRS])
def pair(request: pytest.FixtureRequest) -> Pair:
    result: Pair = request.param
    return result


@pytest.fixture
def contract_settings(tmp_path: Any, fake_provider_registered: None) -> Settings:
    (tmp_path / "inputs").mkdir()
    return make_settings(tmp_path / "home", tmp_path / "inputs")


@asynccontextmanager
async def running(settings: Settings, pair: Pair, emulator: Any, **options: Any) -> AsyncIterator[Services]:
    async with sandbox_services(
        settings, FashnEmulator(time_scale=TIME_SCALE), sandbox_apps={pair.provider: emulator.app}, **options
    ) as svc:
        yield svc


async def finish(svc: Services, job: JobRecord, seconds: float = 20.0) -> JobRecord:
    result = await svc.engine.wait([job.job_id], wait_seconds=seconds)
    assert not result.pending, f"job {job.job_id} did not finish: {result.jobs[0].status}"
    return result.jobs[0]


class TestProviderContract:
    async def test_a_call_is_submitted_polled_and_downloaded(
        self, contract_settings: Settings, pair: Pair
    ) -> None:
        emu = pair.emulator(time_scale=TIME_SCALE, faults=pair.faults())
        operation, args = pair.ok
        async with running(contract_settings, pair, emu) as svc:
            job = await svc.engine.submit(pair.provider, operation, args)
            assert job.status is JobStatus.QUEUED
            done = await finish(svc, job)
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert done.sandbox and done.provider_job_id and done.outputs
        assert all(o.path.startswith(str(contract_settings.media_dir)) and o.bytes > 0 for o in done.outputs)
        assert pair.submissions(emu) == 1
        if pair.charged is not None:
            assert done.credits_used == done.credits_estimate == pair.charged(emu)

    async def test_an_identical_call_is_one_job_and_force_pays_again(
        self, contract_settings: Settings, pair: Pair
    ) -> None:
        emu = pair.emulator(time_scale=TIME_SCALE, faults=pair.faults())
        operation, args = pair.ok
        async with running(contract_settings, pair, emu) as svc:
            first = await svc.engine.submit(pair.provider, operation, args)
            again = await svc.engine.submit(pair.provider, operation, dict(args))  # while it runs
            await finish(svc, first)
            after = await svc.engine.submit(pair.provider, operation, args)
            assert again.job_id == first.job_id == after.job_id and after.status is JobStatus.SUCCEEDED
            assert pair.submissions(emu) == 1
            forced = await svc.engine.submit(pair.provider, operation, args, force=True)
            assert forced.job_id != first.job_id
            await finish(svc, forced)
        assert pair.submissions(emu) == 2

    async def test_a_failure_at_the_provider_is_a_failed_job(
        self, contract_settings: Settings, pair: Pair
    ) -> None:
        emu = pair.emulator(time_scale=TIME_SCALE, faults=pair.faults())
        pair.fail_setup(emu)
        operation, args, code = pair.failing
        async with running(contract_settings, pair, emu) as svc:
            done = await finish(svc, await svc.engine.submit(pair.provider, operation, args))
        assert done.status is JobStatus.FAILED and done.error is not None
        assert done.error.code == code, done.error
        assert done.error.message and done.outputs == []

    async def test_a_wrong_key_fails_at_once_as_unauthorized(
        self, contract_settings: Settings, pair: Pair
    ) -> None:
        """As a failed job, or (for a provider that must ask before it can prepare a call, like the
        Generation API for its tools) as the call's own error with nothing stored."""
        emu = pair.emulator(time_scale=TIME_SCALE, faults=pair.faults(), api_key="another-key")
        operation, args = pair.ok
        async with running(contract_settings, pair, emu) as svc:
            try:
                job = await svc.engine.submit(pair.provider, operation, args)
            except AuthError as exc:
                error = JobError(code=exc.code, message=exc.message, retryable=exc.retryable)
                assert (await svc.engine.list_jobs())[0] == []
            else:
                done = await finish(svc, job)
                assert done.status is JobStatus.FAILED and done.error is not None
                error = done.error
        assert error.code == "unauthorized" and not error.retryable
        assert REGISTRY[pair.provider].key_var in error.message  # says which variable to check
        assert pair.submissions(emu) <= 1  # refused, never retried

    async def test_429_and_5xx_are_retried_and_paid_once(
        self, contract_settings: Settings, pair: Pair
    ) -> None:
        emu = pair.emulator(time_scale=TIME_SCALE, faults=pair.faults())
        pair.inject(emu, [429, 503])
        if pair.inject_status is not None:
            pair.inject_status(emu, [503, 429])
        operation, args = pair.ok
        async with running(contract_settings, pair, emu) as svc:
            done = await finish(svc, await svc.engine.submit(pair.provider, operation, args))
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert pair.submissions(emu) == 3  # two refused, one accepted
        if pair.charged is not None:
            assert pair.charged(emu) == done.credits_estimate

    async def test_a_restart_mid_job_finishes_it_without_resubmitting(
        self, contract_settings: Settings, pair: Pair
    ) -> None:
        emu = pair.emulator(time_scale=TIME_SCALE * 10, faults=pair.faults())
        operation, args = pair.ok
        async with running(contract_settings, pair, emu) as svc:
            job = await svc.engine.submit(pair.provider, operation, args)
            with anyio.fail_after(10):
                while (await svc.engine.get(job.job_id)).provider_job_id is None:
                    await anyio.sleep(0.005)
            stopped = await svc.engine.get(job.job_id)
        assert stopped.status in (JobStatus.SUBMITTED, JobStatus.RUNNING)  # left unfinished
        async with running(contract_settings, pair, emu) as svc:  # resumes every unfinished job
            done = await finish(svc, job)
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert done.provider_job_id == stopped.provider_job_id
        assert pair.submissions(emu) == 1

    async def test_cancel_stops_the_job_at_the_provider_where_it_can(
        self, contract_settings: Settings, pair: Pair
    ) -> None:
        emu = pair.emulator(time_scale=TIME_SCALE * 50, faults=pair.faults())
        operation, args = pair.ok
        async with running(contract_settings, pair, emu) as svc:
            job = await svc.engine.submit(pair.provider, operation, args)
            with anyio.fail_after(10):
                while (await svc.engine.get(job.job_id)).provider_job_id is None:
                    await anyio.sleep(0.005)
            canceled, note = await svc.engine.cancel(job.job_id)
            later = await finish(svc, job, 1)
        assert canceled.status is JobStatus.CANCELED and later.status is JobStatus.CANCELED
        if pair.can_cancel:
            assert note == f"Canceled at {pair.provider} too."
        else:
            assert "no way to cancel" in note

    async def test_the_sandbox_charges_what_the_estimate_says(
        self, contract_settings: Settings, pair: Pair
    ) -> None:
        if pair.charged is None:
            pytest.skip(f"{pair.provider} publishes no prices: nothing to compare")
        emu = pair.emulator(time_scale=TIME_SCALE, faults=pair.faults())
        async with running(contract_settings, pair, emu) as svc:
            for operation, args in pair.prices:
                before = pair.charged(emu)
                done = await finish(svc, await svc.engine.submit(pair.provider, operation, args))
                assert done.status is JobStatus.SUCCEEDED, (operation, args, done.error)
                assert done.credits_estimate is not None
                assert pair.charged(emu) - before == done.credits_estimate, (operation, args)
        operations = {spec.operation for spec in svc.providers[pair.provider].operations()}
        assert {operation for operation, _ in pair.prices} == operations  # every operation is priced


async def test_a_registered_provider_reaches_the_assistant_with_no_other_change(
    contract_settings: Settings,
) -> None:
    """The fake fifth provider, registered and nothing else: its tool is listed with its schema and
    price, runs in the sandbox to a stored output, `providers` reports it, shoot plans price it."""
    app = create_app(contract_settings, retry=FAST_RETRY, poll=FAST_POLL)
    async with Client(app) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        render = tools["fake_render"]
        assert {"prompt", "image", "size", "wait_seconds", "force"} <= set(render.input_schema["properties"])
        assert render.input_schema["required"] == ["prompt"] and "1 credit" in (render.description or "")
        result = await client.call_tool("fake_render", {"prompt": "a hat", "size": "large"})
        assert not result.is_error and result.structured_content is not None
        job = Job.model_validate(result.structured_content)
        assert job.status == "succeeded" and job.sandbox and job.credits_used == 3
        listed = await client.call_tool("providers", {})
        plan = {"name": "hats", "steps": [{"id": "hat", "tool": "fake_render", "args": {"prompt": "a hat"}}]}
        checked = await client.call_tool("shoot_validate", {"plan": plan})
    assert checked.structured_content is not None and checked.structured_content["ok"]
    assert checked.structured_content["estimate"]["by_provider"] == {"fake": 1}
    assert listed.structured_content is not None
    assert "fake" in {p["name"] for p in listed.structured_content["providers"]}
