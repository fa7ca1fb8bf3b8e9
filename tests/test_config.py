"""Provider modes from the environment, and which tools a server lists in each case."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from server.app import create_app
from server.config import Mode, Settings
from server.errors import ConfigError

pytestmark = pytest.mark.anyio

PREFIXES = ("fashn_", "autotoon_", "neofashion_", "genapi_")


def settings_with(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"CALLSHEET_HOME": str(tmp_path / "home"), **env})


def test_no_key_at_all_means_sandbox_for_everyone(tmp_path: Path) -> None:
    s = settings_with(tmp_path)
    assert {p.mode for p in s.providers.values()} == {Mode.SANDBOX}


def test_one_key_makes_that_provider_live_and_the_others_off(tmp_path: Path) -> None:
    s = settings_with(tmp_path, AUTOTOON_API_KEY="toon_x")
    modes = {name: p.mode for name, p in s.providers.items()}
    assert modes == {"fashn": Mode.OFF, "autotoon": Mode.LIVE, "neofashion": Mode.OFF, "genapi": Mode.OFF}
    s = settings_with(tmp_path, AUTOTOON_API_KEY="toon_x", CALLSHEET_SANDBOX="1")
    assert s.providers["fashn"].mode is Mode.SANDBOX and s.providers["autotoon"].mode is Mode.LIVE
    assert "toon_x" not in repr(s) and "toon_x" not in str(s.describe())


def test_base_urls_keep_their_prefix_and_bad_values_are_named(tmp_path: Path) -> None:
    s = settings_with(tmp_path, FASHN_BASE_URL="http://127.0.0.1:9000/fashn/v1/")
    assert s.providers["fashn"].base_url == "http://127.0.0.1:9000/fashn/v1"
    with pytest.raises(ConfigError, match="FASHN_BASE_URL"):
        settings_with(tmp_path, FASHN_BASE_URL="ftp://x")
    with pytest.raises(ConfigError, match="NEOFASHION_RATE_PER_MINUTE"):
        settings_with(tmp_path, NEOFASHION_RATE_PER_MINUTE="fast")


def test_the_store_lease_and_shared_sandbox_settings(tmp_path: Path) -> None:
    s = settings_with(tmp_path)
    assert s.store_url is None and s.lease_seconds == 30 and s.sandbox_url is None
    assert s.store_where == f"embedded, in {s.store_dir}"
    s = settings_with(
        tmp_path,
        CALLSHEET_STORE="rediss://user:pa55word@redis.internal:6380/3",
        CALLSHEET_LEASE_SECONDS="5",
        CALLSHEET_SANDBOX_URL="http://127.0.0.1:9100/",
    )
    assert s.store_url == "rediss://user:pa55word@redis.internal:6380/3" and s.lease_seconds == 5
    assert s.sandbox_url == "http://127.0.0.1:9100"
    assert s.store_where == "rediss://user:***@redis.internal:6380/3" == s.describe()["store"]
    assert "pa55word" in s.secrets() and "pa55word" not in repr(s)
    for bad, named in [
        ({"CALLSHEET_STORE": "postgres://db/1"}, "CALLSHEET_STORE"),
        ({"CALLSHEET_LEASE_SECONDS": "0.5"}, "CALLSHEET_LEASE_SECONDS"),
        ({"CALLSHEET_LEASE_SECONDS": "soon"}, "CALLSHEET_LEASE_SECONDS"),
        ({"CALLSHEET_SANDBOX_URL": "127.0.0.1:9100"}, "CALLSHEET_SANDBOX_URL"),
    ]:
        with pytest.raises(ConfigError, match=named):
            settings_with(tmp_path, **bad)


async def test_listed_tools_follow_the_modes(tmp_path: Path) -> None:
    async with Client(create_app(settings_with(tmp_path))) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert all(any(n.startswith(p) for n in names) for p in PREFIXES)
    async with Client(create_app(settings_with(tmp_path, FASHN_API_KEY="fa-x"))) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert any(n.startswith("fashn_") for n in names)
    assert not any(n.startswith(("autotoon_", "neofashion_", "genapi_")) for n in names)


async def test_the_plan_job_cap_comes_from_the_environment(tmp_path: Path) -> None:
    assert settings_with(tmp_path).max_plan_jobs == 500
    with pytest.raises(ConfigError, match="CALLSHEET_MAX_PLAN_JOBS"):
        settings_with(tmp_path, CALLSHEET_MAX_PLAN_JOBS="lots")
    app = create_app(settings_with(tmp_path, CALLSHEET_MAX_PLAN_JOBS="2"))
    steps = [{"id": f"s{n}", "tool": "fashn_model_create", "args": {"prompt": "a model"}} for n in range(3)]
    async with Client(app) as client:
        result = await client.call_tool("shoot_validate", {"plan": {"name": "three", "steps": steps}})
    problems = (result.structured_content or {})["problems"]
    assert [p["step"] for p in problems] == ["s2"] and "past the cap of 2" in problems[0]["message"]


def test_hosted_settings_are_checked_and_the_audience_follows_the_public_url(tmp_path: Path) -> None:
    base = {"CALLSHEET_HOME": str(tmp_path)}
    key = "k" * 40
    hosted = Settings.from_env(
        {
            **base,
            "CALLSHEET_PUBLIC_URL": "https://cs.example/",
            "CALLSHEET_SIGNING_KEY": key,
            "CALLSHEET_OAUTH_ISSUER": "https://sso.example/realms/acme",
        }
    )
    assert hosted.public_url == "https://cs.example" and hosted.oauth_audience == "https://cs.example/mcp"
    assert key in hosted.secrets() and key not in repr(hosted) and key not in str(hosted.describe())
    own = Settings.from_env(
        {
            **base,
            "CALLSHEET_PUBLIC_URL": "https://cs.example",
            "CALLSHEET_SIGNING_KEY": key,
            "CALLSHEET_OAUTH_ISSUER": "https://sso.example/",
            "CALLSHEET_OAUTH_AUDIENCE": "api://callsheet",
        }
    )
    assert own.oauth_issuer == "https://sso.example/"  # kept exactly: issuers compare as strings
    assert own.oauth_audience == "api://callsheet"  # an identity provider's own audience form
    for env, problem in (
        ({"CALLSHEET_PUBLIC_URL": "https://cs.example"}, "needs CALLSHEET_SIGNING_KEY"),
        ({"CALLSHEET_OAUTH_ISSUER": "https://sso.example"}, "needs CALLSHEET_PUBLIC_URL"),
        ({"CALLSHEET_OAUTH_ISSUER": "sso.example"}, "CALLSHEET_OAUTH_ISSUER must be an http"),
        ({"CALLSHEET_PUBLIC_URL": "cs.example", "CALLSHEET_SIGNING_KEY": "x"}, "PUBLIC_URL must be an http"),
    ):
        with pytest.raises(ConfigError, match=problem):
            Settings.from_env({**base, **env})
