"""The shoot runner against the FASHN emulator: fan-out, references, restart, budget, cancel, sheet."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

from server.config import Settings
from server.errors import InputError
from server.models import ShootRecord, ShootStatus, StepStatus
from server.plans import ShootPlan, validate_plan
from server.providers.fashn.adapter import Fashn
from server.providers.fashn.emulator import FashnEmulator
from server.shoots import ShootRunner
from tests.conftest import TIME_SCALE, sandbox_services, tools_of

pytestmark = pytest.mark.anyio

TOOLS = tools_of(Fashn)


@asynccontextmanager
async def runner(settings: Settings, emulator: FashnEmulator) -> AsyncIterator[ShootRunner]:
    """The services' own shoot runner, with FASHN as the only provider (so its tools are TOOLS)."""
    fashn = Fashn(settings.providers["fashn"])
    async with sandbox_services(settings, emulator, providers={"fashn": fashn}) as svc:
        assert set(svc.shoots.tools) == set(TOOLS)
        yield svc.shoots


def plan_for(garments: list[Path], **extra: Any) -> dict[str, Any]:
    return {
        "name": "Spring Drop",
        "steps": [
            {
                "id": "cast",
                "tool": "fashn_model_create",
                "args": {"prompt": "editorial model, short dark hair"},
            },
            {
                "id": "tryon",
                "tool": "fashn_tryon_max",
                "for_each": [str(g) for g in garments],
                "args": {"model_image": "@cast.outputs[0]", "product_image": "@item"},
            },
            {
                "id": "crops",
                "tool": "fashn_reframe",
                "for_each": "@tryon.outputs",
                "args": {"image": "@item", "aspect_ratio": "4:5"},
            },
        ],
        **extra,
    }


async def start(r: ShootRunner, data: dict[str, Any]) -> ShootRecord:
    plan, validation = validate_plan(data, TOOLS)
    assert plan is not None and validation.ok, validation.problems
    return await r.start(ShootPlan.model_validate(data), validation)


@pytest.fixture
def garments(settings: Settings) -> list[Path]:
    from tests.conftest import png_bytes

    paths = []
    for n, color in enumerate([(200, 30, 30), (30, 30, 200)]):
        path = settings.input_roots[0] / f"garment{n}.png"
        path.write_bytes(png_bytes(color=color))
        paths.append(path)
    return paths


async def test_fan_out_and_references_run_to_a_contact_sheet(settings, emulator, garments) -> None:
    async with runner(settings, emulator) as r:
        record = await start(r, plan_for(garments))
        done = await r.wait(record.shoot_id, 30)
        view = await r.view(done)
    assert view.status is ShootStatus.SUCCEEDED, view
    assert [s.status for s in view.steps] == [StepStatus.SUCCEEDED] * 3
    assert [len(s.jobs) for s in view.steps] == [1, 2, 2]
    tryon = view.steps[1].jobs[0]
    sent = next(p for p in emulator.stats.predictions.values() if p.model_name == "tryon-max")
    assert str(sent.inputs["model_image"]).startswith("data:image/png")  # the cast output, chained
    assert tryon.status == "succeeded"
    folder = Path(view.folder)
    assert folder.is_relative_to(settings.shoots_dir)
    names = {p.name for p in folder.iterdir()}
    assert {"cast-00-0.png", "tryon-00-0.png", "tryon-01-0.png", "crops-00-0.png", "crops-01-0.png"} <= names
    assert (folder / ".callsheet-caller").read_text() == ""  # the local user's folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["shoot"]["status"] == "succeeded" and manifest["plan"]["name"] == "Spring Drop"
    assert view.contact_sheet.path is not None
    with Image.open(view.contact_sheet.path) as sheet:
        assert sheet.width >= 1024
    page = (folder / "contact-sheet.html").read_text()
    assert page.count('<figure class="cell">') == 5 and "editorial model" in page
    assert 'class="pill s-succeeded"' in page and "<script" not in page  # the board's look, nothing to run
    assert view.credits_used == 1 + 2 * 2 + 2 * 1
    assert emulator.stats.run_calls == 5


async def test_a_contact_sheet_that_cannot_be_drawn_is_noted_and_the_runner_goes_on(
    settings, emulator, garments, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawing fails in a way no one foresaw (a fault put into the drawer): the shoot still ends with
    its outputs and a note, and the next shoot runs; before, the error ended the server."""
    import server.shoots

    def broken(*_: Any) -> None:
        raise RuntimeError("a drawing library fault")

    monkeypatch.setattr(server.shoots, "write_contact_sheet", broken)
    async with runner(settings, emulator) as r:
        first = await r.wait((await start(r, plan_for(garments))).shoot_id, 30)
        second = await r.wait((await start(r, plan_for(garments, name="Again"))).shoot_id, 30)
    for done in (first, second):
        assert done.status is ShootStatus.SUCCEEDED, done
        assert "contact sheet could not be drawn" in (done.note or "")


async def test_restart_mid_shoot_submits_nothing_twice(settings, garments) -> None:
    emulator = FashnEmulator(time_scale=TIME_SCALE * 5)
    async with runner(settings, emulator) as r:
        record = await start(r, plan_for(garments))
        with anyio.fail_after(10):
            while not (await r.get(record.shoot_id)).steps[1].job_ids:
                await anyio.sleep(0.01)
    async with runner(settings, emulator) as r:
        done = await r.wait(record.shoot_id, 30)
    assert done.status is ShootStatus.SUCCEEDED
    assert emulator.stats.run_calls == 5


async def test_budget_stops_before_crossing(settings, emulator, garments) -> None:
    # cast 1 + try-ons 2 each = 5 against a budget of 4. shoot_validate refuses such a plan; the
    # runner must hold the line anyway (e.g. when real outputs outnumber the estimate).
    data = {**plan_for(garments), "steps": plan_for(garments)["steps"][:2], "budget_credits": 4}
    _, validation = validate_plan(data, TOOLS)
    assert [p.field for p in validation.problems] == ["budget_credits"]
    async with runner(settings, emulator) as r:
        record = await r.start(ShootPlan.model_validate(data), validation)
        done = await r.wait(record.shoot_id, 30)
    assert done.status is ShootStatus.OVER_BUDGET
    assert done.note is not None and "budget" in done.note
    assert emulator.stats.run_calls == 2
    assert sum(p.credits for p in emulator.stats.predictions.values()) <= 4


async def test_a_failed_step_skips_its_dependents_but_not_the_rest(settings, emulator, garments) -> None:
    data = {
        "name": "mixed",
        "steps": [
            {"id": "bad", "tool": "fashn_model_create", "args": {"prompt": "x [sandbox:fail=PoseError]"}},
            {
                "id": "after",
                "tool": "fashn_reframe",
                "args": {"image": "@bad.outputs[0]", "aspect_ratio": "1:1"},
            },
            {"id": "good", "tool": "fashn_model_create", "args": {"prompt": "independent"}},
        ],
    }
    async with runner(settings, emulator) as r:
        record = await start(r, data)
        done = await r.wait(record.shoot_id, 30)
    states = {s.id: s.status for s in done.steps}
    assert states == {"bad": StepStatus.FAILED, "after": StepStatus.SKIPPED, "good": StepStatus.SUCCEEDED}
    assert done.status is ShootStatus.PARTIAL


async def test_cancel(settings, garments) -> None:
    emulator = FashnEmulator(time_scale=0.05)
    async with runner(settings, emulator) as r:
        record = await start(r, plan_for(garments))
        await anyio.sleep(0.1)
        canceled = await r.cancel(record.shoot_id)
        assert canceled.status is ShootStatus.CANCELED
        await anyio.sleep(0.1)
        assert (await r.get(record.shoot_id)).status is ShootStatus.CANCELED
    assert emulator.stats.run_calls <= 1


async def test_output_dir_outside_the_roots_is_refused(settings, emulator, garments) -> None:
    async with runner(settings, emulator) as r:
        plan = ShootPlan.model_validate({**plan_for(garments), "output_dir": "/etc/callsheet"})
        with pytest.raises(InputError, match="output_dir"):
            r.folder_for(plan, "s1")
        inside = ShootPlan.model_validate(
            {**plan_for(garments), "output_dir": str(settings.input_roots[0] / "out")}
        )
        assert r.folder_for(inside, "s1").is_relative_to(settings.input_roots[0])


async def test_no_api_key_reaches_the_shoot_folder(tmp_path: Path, garments) -> None:
    import httpx

    from server.policy import PollPolicy
    from tests.conftest import make_settings

    secret = "fa-SECRET-shoot-4242"
    emulator = FashnEmulator(time_scale=TIME_SCALE, api_key=secret)
    live = make_settings(
        tmp_path / "live-home",
        garments[0].parent,
        FASHN_API_KEY=secret,
        FASHN_BASE_URL="http://fashn.test/v1",
    )
    # Live mode: real typical durations, so poll at once and often against the fast emulator.
    options = {
        "live_transport": httpx.ASGITransport(app=emulator.app),
        "poll": PollPolicy(floor=0.01, ceiling=0.05),
    }
    async with sandbox_services(live, emulator, **options) as svc:
        record = await start(svc.shoots, plan_for(garments))
        done = await svc.shoots.wait(record.shoot_id, 30)
    assert done.status is ShootStatus.SUCCEEDED
    folder = Path(done.folder)
    for path in folder.iterdir():
        assert secret.encode() not in path.read_bytes(), path.name


async def test_the_job_cap_holds_while_the_shoot_runs(settings, emulator) -> None:
    """When outputs turn out more than planned, the runner keeps to CALLSHEET_MAX_PLAN_JOBS too."""
    capped = dataclasses.replace(settings, max_plan_jobs=3)
    data = {
        "name": "fan-out",
        "steps": [
            {"id": "cast", "tool": "fashn_model_create", "args": {"prompt": "a model", "num_images": 3}},
            {
                "id": "crops",
                "tool": "fashn_reframe",
                "for_each": "@cast.outputs",
                "args": {"image": "@item", "aspect_ratio": "4:5"},
            },
        ],
    }
    async with runner(capped, emulator) as r:
        record = await start(r, data)  # validated against the default cap, started under a cap of 3
        done = await r.wait(record.shoot_id, 30)
    cast, crops = done.steps
    assert cast.status is StepStatus.SUCCEEDED and len(cast.job_ids) == 1
    assert crops.status is StepStatus.FAILED and crops.job_ids == []
    assert crops.note is not None and "past the cap of 3" in crops.note
    assert emulator.stats.run_calls == 1


async def test_a_step_is_repeated_with_the_steps_after_it_that_did_not_succeed(
    settings, emulator, garments
) -> None:
    """tryon fails (the sandbox's failure marker in its prompt), so crops is skipped. Repeating tryon
    runs it and crops again: its failed jobs are sent again (a failed job holds no key), cast is left
    alone. Repeating cast with force makes a fresh, paid cast, and the steps after it that did not
    succeed run on it."""
    data = plan_for(garments)
    data["steps"][1]["args"]["prompt"] = "tuck in [sandbox:fail=PoseError]"
    async with runner(settings, emulator) as r:
        record = await start(r, data)
        with pytest.raises(InputError, match="still running"):
            await r.repeat_step(record.shoot_id, "tryon")
        first = await r.wait(record.shoot_id, 30)
        assert first.status is ShootStatus.PARTIAL
        assert [s.status for s in first.steps] == [
            StepStatus.SUCCEEDED,
            StepStatus.FAILED,
            StepStatus.SKIPPED,
        ]
        with pytest.raises(InputError, match=r"no step 'polish'.*cast, tryon, crops"):
            await r.repeat_step(record.shoot_id, "polish")
        sent = emulator.stats.run_calls  # cast 1 + tryon 2 = 3

        again = await r.repeat_step(record.shoot_id, "tryon")
        assert again.status is ShootStatus.RUNNING
        assert [s.job_ids == [] for s in again.steps] == [False, True, True]
        second = await r.wait(record.shoot_id, 30)
        assert [s.status for s in second.steps] == [
            StepStatus.SUCCEEDED,
            StepStatus.FAILED,
            StepStatus.SKIPPED,
        ]
        assert emulator.stats.run_calls == sent + 2  # both try-ons sent again
        assert second.steps[0].job_ids == first.steps[0].job_ids  # cast untouched

        forced = await r.repeat_step(record.shoot_id, "cast", force=True)
        assert forced.steps[0].force and not forced.steps[1].force
        third = await r.wait(record.shoot_id, 30)
        assert third.steps[0].status is StepStatus.SUCCEEDED
        assert third.steps[0].job_ids != first.steps[0].job_ids  # a fresh, paid generation
        assert emulator.stats.run_calls == sent + 2 + 1 + 2  # the new cast, then the try-ons on it
