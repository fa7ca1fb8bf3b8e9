"""Configuration from the environment (argument, then env var, then default).

A provider is live when its key is set, sandbox when it has no key and sandbox mode is on,
otherwise off. Keys are held here and in the provider adapters' headers only: `describe()`
and every log line show whether a key is set, never the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args
from urllib.parse import urlsplit

from server.errors import ConfigError
from server.policy import MAX_PLAN_JOBS
from server.providers import REGISTRY
from server.providers.base import Mode, ProviderSettings
from server.store.base import public_url

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


@dataclass(frozen=True)
class Settings:
    home: Path
    providers: dict[str, ProviderSettings]
    input_roots: tuple[Path, ...]
    allow_private_urls: bool = False
    sandbox_time_scale: float = 0.05
    """Sandbox provider latencies (and the limit windows that go with them) are scaled by this."""
    log_level: LogLevel = "WARNING"
    max_plan_jobs: int = MAX_PLAN_JOBS
    """Most jobs one shoot plan may expand to: CALLSHEET_MAX_PLAN_JOBS."""
    http_tokens: tuple[str, ...] = field(default=(), repr=False)
    """CALLSHEET_HTTP_TOKEN: bearer tokens for `serve --http`, one per caller."""
    store_url: str | None = field(default=None, repr=False)
    """CALLSHEET_STORE: a Redis URL that replicas share, or None for the embedded store."""
    lease_seconds: float = 30.0
    """CALLSHEET_LEASE_SECONDS: how long a process's claim on a job or shoot lasts unrenewed, i.e. how
    soon another replica takes over the work of one that died."""
    public_url: str | None = None
    """CALLSHEET_PUBLIC_URL: where clients (and providers) reach `serve --http`, e.g. https://cs.example."""
    signing_key: str | None = field(default=None, repr=False)
    """CALLSHEET_SIGNING_KEY: the secret of signed links; required with CALLSHEET_PUBLIC_URL."""
    oauth_issuer: str | None = None
    """CALLSHEET_OAUTH_ISSUER: the authorization server whose access tokens `serve --http` accepts."""
    oauth_audience: str | None = None
    """CALLSHEET_OAUTH_AUDIENCE: the audience a token must carry (default: the public URL + /mcp)."""
    caller_credits_per_day: float | None = None
    """CALLSHEET_CALLER_CREDITS_PER_DAY: credits one caller may spend per UTC day; None: unlimited."""
    audit_log: Path | None = None
    """CALLSHEET_AUDIT_LOG as given; `audit_file` is where the trail goes."""
    toolsets: frozenset[str] | None = None
    """CALLSHEET_TOOLSETS: the groups of tools listed (`TOOLSETS`); None lists every group (a provider's
    group only while the provider is live or sandbox)."""
    sandbox_url: str | None = None
    """CALLSHEET_SANDBOX_URL: sandbox emulators served once (`python -m server.sandbox`) for every
    replica, instead of one in each process: replicas in sandbox mode then share one emulated account."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("CALLSHEET_HOME") or _user_data_dir()).expanduser()
        home = home.resolve()
        keys = {p.name: (env.get(p.key_var) or "").strip() or None for p in REGISTRY.values()}
        sandbox_flag = env.get("CALLSHEET_SANDBOX")
        sandbox = _flag(sandbox_flag) if sandbox_flag is not None else not any(keys.values())
        providers: dict[str, ProviderSettings] = {}
        for p in REGISTRY.values():
            key = keys[p.name]
            mode = Mode.LIVE if key else (Mode.SANDBOX if sandbox else Mode.OFF)
            base = (env.get(p.url_var) or p.default_base_url).strip().rstrip("/")
            if not base.startswith(("http://", "https://")):
                raise ConfigError(f"{p.url_var} must be an http(s) URL, got {base!r}.")
            options = {o.var: _positive_number(env, o.var, o.default) for o in p.options}
            providers[p.name] = ProviderSettings(p.name, mode, base, p.key_var, key, options)
        roots_env = env.get("CALLSHEET_INPUT_ROOTS")
        if roots_env:
            roots = tuple(Path(r).expanduser().resolve() for r in roots_env.split(os.pathsep) if r.strip())
        else:
            roots = (Path.home().resolve(), home)
        scale = float(env.get("CALLSHEET_SANDBOX_TIME_SCALE") or cls.sandbox_time_scale)
        store_url = (env.get("CALLSHEET_STORE") or "").strip() or None
        if store_url is not None and not store_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "CALLSHEET_STORE must be unset (the embedded store in CALLSHEET_HOME) or a Redis URL: "
                "redis://[:password@]host:port/db or rediss://...; got a value of another kind."
            )
        sandbox_url = (env.get("CALLSHEET_SANDBOX_URL") or "").strip().rstrip("/") or None
        if sandbox_url is not None and not sandbox_url.startswith(("http://", "https://")):
            raise ConfigError(f"CALLSHEET_SANDBOX_URL must be an http(s) URL, got {sandbox_url!r}.")
        lease = _positive_number(env, "CALLSHEET_LEASE_SECONDS", cls.lease_seconds)
        if lease < 1:
            raise ConfigError(f"CALLSHEET_LEASE_SECONDS must be at least 1 (seconds), got {lease:g}.")
        toolsets = _toolsets(env.get("CALLSHEET_TOOLSETS"))
        public_url = _url(env, "CALLSHEET_PUBLIC_URL")
        signing_key = (env.get("CALLSHEET_SIGNING_KEY") or "").strip() or None
        if public_url is not None and signing_key is None:
            raise ConfigError(
                "CALLSHEET_PUBLIC_URL needs CALLSHEET_SIGNING_KEY (a long random secret, the same on every "
                "replica), which signs the links served there."
            )
        oauth_issuer = _url(env, "CALLSHEET_OAUTH_ISSUER", strip_slash=False)
        oauth_audience = (env.get("CALLSHEET_OAUTH_AUDIENCE") or "").strip() or None
        if oauth_issuer is not None and public_url is None:
            raise ConfigError(
                "CALLSHEET_OAUTH_ISSUER needs CALLSHEET_PUBLIC_URL: clients find the authorization "
                "server from <public URL>/.well-known/oauth-protected-resource/mcp, and tokens are for "
                "<public URL>/mcp."
            )
        if oauth_issuer is not None and oauth_audience is None:
            oauth_audience = f"{public_url}/mcp"
        level = (env.get("CALLSHEET_LOG_LEVEL") or cls.log_level).upper()
        if level not in get_args(LogLevel):
            raise ConfigError(f"CALLSHEET_LOG_LEVEL must be one of {', '.join(get_args(LogLevel))}.")
        return cls(
            home=home,
            providers=providers,
            input_roots=roots,
            allow_private_urls=_flag(env.get("CALLSHEET_ALLOW_PRIVATE_URLS")),
            sandbox_time_scale=scale,
            log_level=cast(LogLevel, level),
            max_plan_jobs=_positive_int(env, "CALLSHEET_MAX_PLAN_JOBS", cls.max_plan_jobs),
            http_tokens=tuple(
                t.strip() for t in (env.get("CALLSHEET_HTTP_TOKEN") or "").split(",") if t.strip()
            ),
            store_url=store_url,
            lease_seconds=lease,
            sandbox_url=sandbox_url,
            toolsets=toolsets,
            caller_credits_per_day=_positive_number(env, "CALLSHEET_CALLER_CREDITS_PER_DAY", 0) or None,
            audit_log=Path(env["CALLSHEET_AUDIT_LOG"]).expanduser()
            if env.get("CALLSHEET_AUDIT_LOG")
            else None,
            public_url=public_url,
            signing_key=signing_key,
            oauth_issuer=oauth_issuer,
            oauth_audience=oauth_audience,
        )

    def lists(self, group: str) -> bool:
        """Whether the tools of `group` (a provider's name, jobs, shoots or account) are listed."""
        return self.toolsets is None or group in self.toolsets

    def describe(self) -> dict[str, object]:
        """Everything `callsheet doctor` shows; key values are never included."""
        return {
            "home": str(self.home),
            "input_roots": [str(r) for r in self.input_roots],
            "allow_private_urls": self.allow_private_urls,
            "store": self.store_where,
            "toolsets": "every group" if self.toolsets is None else ", ".join(sorted(self.toolsets)),
            "caller_credits_per_day": self.caller_credits_per_day,
            "audit_log": str(self.audit_file),
            "public_url": self.public_url,
            "oauth": None
            if self.oauth_issuer is None
            else {"issuer": self.oauth_issuer, "audience": self.oauth_audience},
            "providers": {
                name: {"mode": p.mode.value, "base_url": p.base_url, "key_set": p.api_key is not None}
                for name, p in self.providers.items()
            },
        }

    def secrets(self) -> list[str]:
        """Every configured secret (provider keys, bearer tokens): what `Redactor` removes from texts."""
        keys = [p.api_key for p in self.providers.values() if p.api_key]
        password = urlsplit(self.store_url).password if self.store_url else None
        signing = [self.signing_key] if self.signing_key else []
        return [*keys, *self.http_tokens, *([password] if password else []), *signing]

    @property
    def store_where(self) -> str:
        """Where the store is, as people may see it (a Redis URL without its password)."""
        return f"embedded, in {self.store_dir}" if self.store_url is None else public_url(self.store_url)

    @property
    def audit_file(self) -> Path:
        """Where one JSON line per action that spends or cancels goes (CALLSHEET_AUDIT_LOG)."""
        return self.audit_log or self.home / "audit.jsonl"

    @property
    def media_dir(self) -> Path:
        return self.home / "media"

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def shoots_dir(self) -> Path:
        return self.home / "shoots"


TOOLSETS = (*REGISTRY, "jobs", "shoots", "account")
"""The groups CALLSHEET_TOOLSETS chooses from: each provider's tools, then callsheet's own."""


def _toolsets(raw: str | None) -> frozenset[str] | None:
    if raw is None or not raw.strip():
        return None
    chosen = frozenset(g.strip().lower() for g in raw.split(",") if g.strip())
    unknown = sorted(chosen - set(TOOLSETS))
    if unknown:
        raise ConfigError(
            f"CALLSHEET_TOOLSETS names unknown group(s) {', '.join(unknown)}; "
            f"the groups are {', '.join(TOOLSETS)} (comma-separated)."
        )
    return chosen


def _url(env: Mapping[str, str], name: str, *, strip_slash: bool = True) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not raw.startswith(("http://", "https://")) or not urlsplit(raw).netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}.")
    return raw.rstrip("/") if strip_slash else raw


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}.") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw}.")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}.")
    return value


def _user_data_dir() -> str:
    """The per-user data folder of this OS (platformdirs knows each; loaded only when it is needed)."""
    import platformdirs

    return platformdirs.user_data_dir("callsheet")
