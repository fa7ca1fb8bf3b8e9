"""The fake provider's one operation, its price table and its durations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from server.providers.base import ImageRef, ProviderInputs, from_tables

PRICES = {"small": 1.0, "large": 3.0}
DURATIONS = {"small": (2.0, 4.0), "large": (4.0, 8.0)}


def credits(operation: str, body: Mapping[str, Any]) -> float:
    return PRICES[str(body.get("size") or "small")]


def typical_seconds(operation: str, body: Mapping[str, Any]) -> float:
    return sum(DURATIONS[str(body.get("size") or "small")]) / 2


class RenderInputs(ProviderInputs):
    prompt: str = Field(description="What to render.")
    image: ImageRef | None = Field(default=None, description="An optional reference image (URL).")
    size: Literal["small", "large"] | None = Field(default=None, description="small (1 credit) or large (3).")


RENDER = from_tables(
    "render",
    RenderInputs,
    key="render",
    credits=credits,
    seconds=typical_seconds,
    title="Fake render",
    description="Render a picture. Cost: 1 credit small, 3 large.",
    price_text="1 credit small, 3 large",
    route="/renders",
)
