"""Errors keep their message in both protocol eras: not-found resources, prompts without their
arguments, and tool arguments that are missing, unknown or invalid, for every tool."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, TextContent
from PIL import Image, ImageChops, ImageDraw

from server.app import create_app
from server.config import Settings
from server.contact_sheet import HEADER_AT, LINE_HEIGHT, header_font, header_lines, render
from server.models import JobRecord, JobStatus, new_job_id, utcnow
from server.plans import ShootPlan
from server.shoots import ContactSheet, Shoot, ShootStatus
from tests.test_mcp_tools import connect, job_of, text

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_reading_what_does_not_exist_is_not_found_with_its_message(
    settings: Settings, emulator, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(settings, emulator, mode) as client:
        made = await client.call_tool("fashn_model_create", {"prompt": "a model", "wait_seconds": 20})
        job = job_of(made)
        for uri, named in [
            ("callsheet://jobs/j-nope", "j-nope"),
            ("callsheet://jobs/j-nope/outputs/0", "j-nope"),
            (f"callsheet://jobs/{job.job_id}/outputs/7", "no output 7"),
            ("callsheet://shoots/s-nope", "s-nope"),
            ("callsheet://shoots/s-nope/contact-sheet", "s-nope"),
        ]:
            with pytest.raises(MCPError) as info:
                await client.read_resource(uri)
            assert info.value.code == INVALID_PARAMS, (uri, info.value.code)
            assert named.lower() in info.value.message.lower(), (uri, info.value.message)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_prompt_without_its_arguments_or_unknown_is_invalid_params(
    settings: Settings, emulator, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(settings, emulator, mode) as client:
        with pytest.raises(MCPError) as missing:
            await client.get_prompt("ecommerce_pdp", {"brand": "Maison"})
        with pytest.raises(MCPError) as unknown:
            await client.get_prompt("wedding_catalog", {})
        with pytest.raises(MCPError) as none:
            await client.get_prompt("model_casting", {})
        with pytest.raises(MCPError) as extra:
            await client.get_prompt("lookbook", {"brand": "Maison", "products": "a.png", "colour": "red"})
        ok = await client.get_prompt("ecommerce_pdp", {"brand": "Maison", "products": "dress.png"})
    assert missing.value.code == INVALID_PARAMS and "products" in missing.value.message
    assert "brand" not in missing.value.message
    assert unknown.value.code == INVALID_PARAMS and "wedding_catalog" in unknown.value.message
    assert "ecommerce_pdp" in unknown.value.message  # the ones there are
    assert none.value.code == INVALID_PARAMS and "brand, persona" in none.value.message
    assert extra.value.code == INVALID_PARAMS and "no argument colour" in extra.value.message
    assert "brand, products, mood" in extra.value.message  # the ones it has
    assert ok.messages and "Maison" in str(ok.messages[0].content)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


BAD_CALLS: list[tuple[str, dict[str, object], list[str]]] = [
    # (tool, arguments, what the message must name)
    ("job_status", {}, ["job_id", "required"]),
    ("job_status", {"job_id": "x", "wait": 10}, ["wait", "unknown", "job_id"]),
    ("job_wait", {"job_ids": "j1", "wait_seconds": 99}, ["job_ids", "wait_seconds"]),
    ("job_wait", {"job_ids": ["j1"], "until": "some"}, ["until"]),
    ("job_cancel", {"id": "j1"}, ["id", "unknown"]),
    ("jobs_list", {"limit": 0}, ["limit"]),
    ("jobs_list", {"status": "done"}, ["status"]),
    ("shoot_status", {"shoot_id": "s1", "wait_seconds": -1}, ["wait_seconds"]),
    ("shoot_cancel", {}, ["shoot_id", "required"]),
    ("shoots_list", {"cursor": 5}, ["cursor"]),
    ("shoot_validate", {}, ["plan", "required"]),
    ("shoot_start", {"plan": {"name": "x", "steps": []}, "confirm": "maybe"}, ["confirm"]),
    ("fashn_model_create", {"prompt": "a model", "wait_seconds": 99}, ["wait_seconds"]),
    ("fashn_model_create", {"prompt": "a model", "force": "yes please"}, ["force"]),
    ("providers", {"verbose": True}, ["verbose", "unknown"]),
]


@pytest.mark.parametrize(("tool", "args", "named"), BAD_CALLS)
async def test_bad_arguments_of_any_tool_are_named_with_the_fix(
    settings: Settings, emulator, mode: str, tool: str, args: dict[str, object], named: list[str]
) -> None:
    async with connect(settings, emulator, mode) as client:
        result = await client.call_tool(tool, args)
    message = text(result)
    assert result.is_error, message
    assert "[invalid_input]" in message and "pydantic" not in message, message
    for word in named:
        assert word in message, (word, message)


async def test_small_texts_say_what_happened_once_and_in_good_english(settings: Settings, emulator) -> None:
    async with connect(settings, emulator, "auto") as client:
        made = await client.call_tool("fashn_model_create", {"prompt": "a model", "wait_seconds": 20})
        assert "1 credit." in text(made) and "1 credits" not in text(made)
        started = await client.call_tool("fashn_model_create", {"prompt": "another", "wait_seconds": 0})
        canceled = await client.call_tool("job_cancel", {"job_id": job_of(started).job_id})
    message = text(canceled)
    sentences = [s for s in message.split(". ") if "cancel" in s.lower()]
    assert len(sentences) == len(set(sentences)), message


def test_a_queued_job_shows_no_progress_of_a_running_one(settings: Settings) -> None:
    from server.engine import Engine

    now = utcnow()
    waiting = JobRecord(
        job_id=new_job_id(),
        provider="autotoon",
        operation="editorial",
        status=JobStatus.QUEUED,
        created_at=datetime(2020, 1, 1, tzinfo=UTC),
        updated_at=now,
        typical_seconds=30,
    )
    sending = waiting.model_copy(update={"submit_started_at": datetime(2020, 1, 1, tzinfo=UTC)})
    engine = Engine(store=None, media=None, providers={})  # type: ignore[arg-type]
    assert engine.progress(waiting) == 0.0
    assert engine.progress(sending) <= 0.05  # a synchronous call in flight for years is still queued


def ended_shoot(name: str) -> Shoot:
    """A succeeded shoot with no outputs, for drawing its contact sheet's header."""
    now = utcnow()
    return Shoot(
        shoot_id="s1",
        name=name,
        status=ShootStatus.SUCCEEDED,
        steps=[],
        credits_used=1,
        credits_estimate=1,
        progress=1,
        folder="/tmp",
        contact_sheet=ContactSheet(path=None, html=None, uri="callsheet://shoots/s1/contact-sheet"),
        created_at=now,
        updated_at=now,
    )


def drawn_as_typed(sheet: Image.Image, text: str, at: tuple[int, int]) -> bool:
    """Whether the sheet shows exactly `text` in the header font at `at` (nothing dropped or added)."""
    font = header_font()
    _, _, right, bottom = font.getbbox(text)
    drawn = sheet.crop((at[0], at[1], at[0] + right + 2, at[1] + bottom + 2))
    expected = Image.new("RGB", drawn.size, "white")
    ImageDraw.Draw(expected).text((0, 0), text, fill="black", font=font)
    return ImageChops.difference(drawn, expected).getbbox() is None


def test_the_contact_sheet_header_draws_the_name_as_typed() -> None:
    name = "spring-drop -- SS26 / look 1"
    font = header_font()
    for char in "-/ ":
        assert font.getlength(char) > 0, char  # the font has every character the name uses
    assert font.getbbox("-")[2] > font.getbbox("-")[0]  # and draws ink for a hyphen
    _, png = render(ended_shoot(name), {})
    with Image.open(io.BytesIO(png)) as sheet:
        assert drawn_as_typed(sheet.convert("RGB"), name, HEADER_AT)  # exactly the name, nothing dropped


def test_a_long_shoot_name_is_drawn_whole_on_lines_that_fit() -> None:
    """The longest name a plan allows, with a word longer than a line: every character is drawn, in
    order, and no line runs under the status or off the sheet."""
    name = "Spring-summer 2026 lookbook for the linen capsule " + "x" * 50
    assert len(name) == ShootPlan.model_fields["name"].metadata[1].max_length  # type: ignore[attr-defined]
    font = header_font()
    lines = header_lines(name, font, 300)
    assert len(lines) > 2 and all(font.getlength(line) <= 300 for line in lines)
    assert "".join(lines).replace(" ", "") == name.replace(" ", "")  # nothing dropped, in order
    _, png = render(ended_shoot(name), {})
    with Image.open(io.BytesIO(png)) as sheet:
        drawn = sheet.convert("RGB")
    status_left = drawn.width - 12 - font.getlength("succeeded | 1 credit")
    for k, line in enumerate(header_lines(name, font, status_left - 2 * HEADER_AT[0] - 24)):
        assert HEADER_AT[0] + font.getbbox(line)[2] < status_left
        assert drawn_as_typed(drawn, line, (HEADER_AT[0], HEADER_AT[1] + k * LINE_HEIGHT)), line


async def test_an_unknown_tool_is_still_the_sdks_answer(settings: Settings, emulator) -> None:
    async with Client(create_app(settings)) as client:
        result = await client.call_tool("fashn_teleport", {})
    assert result.is_error and "fashn_teleport" in " ".join(
        c.text for c in result.content if isinstance(c, TextContent)
    )
