"""Account tools: what each provider is (mode, limits, prices) and what it has left (credits)."""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from server.errors import ProviderError
from tools.common import QUERY, caller, services, tool_errors
from tools.surface import publish


class ProviderInfo(BaseModel):
    name: str = Field(description="Provider name, the prefix of its tools.")
    mode: str = Field(description="live (key set), sandbox (emulated, free) or off (tools not listed).")
    base_url: str = Field(description="Base URL requests go to (the emulator's in sandbox mode).")
    limits: dict[str, str] = Field(description="Rate and concurrency limits callsheet keeps to.")
    prices: dict[str, str] = Field(description="Credit cost per tool.")


class ProvidersResult(BaseModel):
    providers: list[ProviderInfo] = Field(description="Every provider callsheet knows, in any mode.")


class CreditBalance(BaseModel):
    provider: str = Field(description="Provider name.")
    credits: float | None = Field(description="Credits left, when the provider reports a number.")
    detail: dict[str, object] = Field(default_factory=dict, description="The provider's own breakdown.")
    sandbox: bool = Field(description="True for a sandbox (emulated) balance.")
    error: str | None = Field(default=None, description="Why the balance could not be read.")


class CallerDay(BaseModel):
    day: str = Field(description="The UTC day, YYYY-MM-DD.")
    used: float = Field(description="Credits you spent today through callsheet (estimates until jobs end).")
    limit: float | None = Field(description="CALLSHEET_CALLER_CREDITS_PER_DAY; null: no limit.")
    left: float | None = Field(description="What is left today; null: no limit.")
    resets_at: str = Field(description="When the day resets (00:00 UTC).")


class CreditsResult(BaseModel):
    balances: list[CreditBalance] = Field(description="One entry per provider that is live or sandbox.")
    you: CallerDay | None = Field(default=None, description="Your own spending today, against your budget.")


@tool_errors
async def providers(ctx: Context) -> ProvidersResult:
    """Each provider's mode (live, sandbox, off), the limits callsheet keeps to, and its price list."""
    svc = services(ctx)
    out = []
    for name, conf in svc.settings.providers.items():
        adapter = svc.providers.get(name)
        limits: dict[str, str] = {}
        if adapter is not None:
            lim = adapter.limiter.limits
            limits = {
                kind: ", ".join(f"{w.limit} per {w.period:g} s" for w in ws)
                for kind, ws in lim.windows.items()
            }
            if lim.max_in_flight:
                limits["in_flight"] = f"{lim.max_in_flight} jobs at once"
        out.append(
            ProviderInfo(
                name=name,
                mode=conf.mode.value,
                base_url=conf.base_url,
                limits=limits,
                prices=adapter.price_list() if adapter is not None else {},
            )
        )
    return ProvidersResult(providers=out)


@tool_errors
async def credits(ctx: Context) -> CreditsResult:
    """Credit balance of every live or sandbox provider, and your own spending today (costs nothing)."""
    svc = services(ctx)
    balances = []
    for name, adapter in svc.providers.items():
        try:
            balance = await adapter.balance()
        except ProviderError as exc:
            balances.append(
                CreditBalance(provider=name, credits=None, sandbox=adapter.sandbox, error=exc.message)
            )
            continue
        balances.append(
            CreditBalance(
                provider=name, credits=balance.credits, detail=balance.detail, sandbox=adapter.sandbox
            )
        )
    ledger = svc.engine.ledger
    you = None if ledger is None else CallerDay(**(await ledger.usage(caller(ctx).id)).as_json())
    return CreditsResult(balances=balances, you=you)


def register_account_tools(app: MCPServer) -> None:
    publish(app, providers, title="Providers, limits and prices", annotations=QUERY)
    publish(app, credits, title="Credit balances", annotations=QUERY)
