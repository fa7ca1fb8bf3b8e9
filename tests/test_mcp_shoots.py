"""Shoot tools, shoot resources and prompts through an in-memory MCP client, in both protocol eras."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp_types import ElicitRequestParams, ElicitResult, PromptReference, TextContent
from PIL import Image

from server.app import create_app
from server.config import Settings
from server.providers.fashn.emulator import FashnEmulator
from tests.conftest import FAST_POLL, FAST_RETRY, png_bytes

pytestmark = pytest.mark.anyio

PROMPTS = {
    "ecommerce_pdp",
    "lookbook",
    "editorial_story",
    "campaign_launch",
    "model_casting",
    "social_cutdowns",
}


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def connect(settings: Settings, emulator: FashnEmulator, mode: str, **kw: Any) -> AsyncIterator[Client]:
    app = create_app(settings, sandbox_apps={"fashn": emulator.app}, retry=FAST_RETRY, poll=FAST_POLL)
    async with Client(app, mode=mode, **kw) as client:
        yield client


def text(result: Any) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def plan(settings: Settings, n_garments: int = 2, **extra: Any) -> dict[str, Any]:
    garments = []
    for i in range(n_garments):
        path = settings.input_roots[0] / f"g{i}.png"
        path.write_bytes(png_bytes(color=(40 * i, 100, 200)))
        garments.append(str(path))
    return {
        "name": "two providers",
        "steps": [
            {"id": "cast", "tool": "fashn_model_create", "args": {"prompt": "editorial model"}},
            {
                "id": "tryon",
                "tool": "fashn_tryon_max",
                "for_each": garments,
                "args": {"model_image": "@cast.outputs[0]", "product_image": "@item"},
            },
            {
                "id": "swap",
                "tool": "genapi_generate",
                "args": {
                    "tool": "fashion_swap",
                    "images": {"person": "@cast.outputs[0]", "clothes": garments[0]},
                },
            },
        ],
        **extra,
    }


async def test_shoot_across_two_providers_runs_to_a_contact_sheet(settings, emulator, mode) -> None:
    async with connect(settings, emulator, mode) as client:
        checked = await client.call_tool("shoot_validate", {"plan": plan(settings)})
        assert checked.structured_content is not None and checked.structured_content["ok"], text(checked)
        assert checked.structured_content["waves"] == [["cast"], ["swap", "tryon"]]
        started = await client.call_tool("shoot_start", {"plan": plan(settings)})
        assert not started.is_error, text(started)
        shoot_id = started.structured_content["shoot_id"]  # type: ignore[index]
        status = None
        for _ in range(20):
            status = await client.call_tool("shoot_status", {"shoot_id": shoot_id, "wait_seconds": 5})
            if status.structured_content and status.structured_content["status"] != "running":
                break
        assert status is not None and status.structured_content is not None
        shoot = status.structured_content
        assert shoot["status"] == "succeeded", text(status)
        assert {s["id"]: len(s["jobs"]) for s in shoot["steps"]} == {"cast": 1, "tryon": 2, "swap": 1}
        assert {j["provider"] for s in shoot["steps"] for j in s["jobs"]} == {"fashn", "genapi"}
        sheet = await client.read_resource(f"callsheet://shoots/{shoot_id}/contact-sheet")
        image = Image.open(io.BytesIO(base64.b64decode(sheet.contents[0].blob)))  # type: ignore[union-attr]
        assert image.format == "PNG"
        manifest = await client.read_resource(f"callsheet://shoots/{shoot_id}")
        assert '"status": "succeeded"' in manifest.contents[0].text  # type: ignore[union-attr]
        listed = await client.call_tool("shoots_list", {})
        assert [s["shoot_id"] for s in listed.structured_content["shoots"]] == [shoot_id]  # type: ignore[index]


async def test_invalid_plan_is_refused_with_every_problem(settings, emulator, mode) -> None:
    bad = {
        "name": "bad",
        "output_dir": "/etc/shoots",
        "steps": [
            {"id": "a", "tool": "fashn_nope", "args": {}},
            {"id": "b", "tool": "fashn_reframe", "args": {"image": "@zzz.outputs[0]", "aspect_ratio": "4:5"}},
        ],
    }
    async with connect(settings, emulator, mode) as client:
        checked = await client.call_tool("shoot_validate", {"plan": bad})
        started = await client.call_tool("shoot_start", {"plan": bad, "confirm": True})
    fields = {(p["step"], p["field"]) for p in checked.structured_content["problems"]}  # type: ignore[index]
    assert {("a", "tool"), ("b", "image"), (None, "output_dir")} <= fields
    assert started.is_error and "fashn_nope" in text(started) and "output_dir" in text(started)
    assert emulator.stats.run_calls == 0


async def test_an_expensive_shoot_needs_confirmation(settings, emulator, mode) -> None:
    expensive = plan(settings, n_garments=12)  # 1 + 12 x 2 = 25 credits, above the threshold
    async with connect(settings, emulator, mode) as client:
        refused = await client.call_tool("shoot_start", {"plan": expensive})
        assert refused.is_error and "confirm: true" in text(refused)
        assert emulator.stats.run_calls == 0
        started = await client.call_tool("shoot_start", {"plan": expensive, "confirm": True})
        assert not started.is_error, text(started)
        await client.call_tool("shoot_cancel", {"shoot_id": started.structured_content["shoot_id"]})  # type: ignore[index]


@pytest.mark.parametrize("answer", ["accept", "decline"])
async def test_elicitation_asks_the_user_for_the_price(settings, emulator, mode, answer: str) -> None:
    asked: list[str] = []

    async def on_elicit(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        if answer == "accept":
            return ElicitResult(action="accept", content={"start": True})
        return ElicitResult(action="decline")

    async with connect(settings, emulator, mode, elicitation_callback=on_elicit) as client:
        result = await client.call_tool("shoot_start", {"plan": plan(settings, n_garments=12)})
        if answer == "accept":
            assert not result.is_error, text(result)
            await client.call_tool("shoot_cancel", {"shoot_id": result.structured_content["shoot_id"]})  # type: ignore[index]
        else:
            assert result.is_error
    assert asked and "credits" in asked[0]


async def test_prompts_are_listed_rendered_and_completed(settings, emulator, mode) -> None:
    async with connect(settings, emulator, mode) as client:
        listed = {p.name: p for p in (await client.list_prompts()).prompts}
        assert set(listed) >= PROMPTS
        assert any(a.name == "brand" and a.required for a in listed["lookbook"].arguments or [])
        for name in PROMPTS:
            args = {
                a.name: "Maison Test" if a.name == "brand" else "x"
                for a in listed[name].arguments or []
                if a.required
            }
            got = await client.get_prompt(name, args)
            body = " ".join(m.content.text for m in got.messages if isinstance(m.content, TextContent))
            assert "Maison Test" in body and "shoot_validate" in body and "shoot_start" in body, name
            assert "{" not in body.replace("{{", "").split("callsheet://")[0] or name == "social_cutdowns"
        done = await client.complete(
            PromptReference(type="ref/prompt", name="lookbook"), {"name": "lighting", "value": "go"}
        )
        assert done.completion.values == ["golden-hour"]
        ratios = await client.complete(
            PromptReference(type="ref/prompt", name="social_cutdowns"),
            {"name": "aspect_ratio", "value": "9:16, 4"},
        )
        assert ratios.completion.values == ["9:16, 4:5", "9:16, 4:3"]


async def test_validation_checks_the_balance(settings, mode) -> None:
    from server.providers.fashn.emulator import FashnFaults

    poor = FashnEmulator(time_scale=0.002, faults=FashnFaults(credits=3))
    async with connect(settings, poor, mode) as client:
        checked = await client.call_tool("shoot_validate", {"plan": plan(settings)})
    problems = checked.structured_content["problems"]  # type: ignore[index]
    assert [p["field"] for p in problems] == ["balance.fashn"]
    assert "3 credits" in problems[0]["message"]
