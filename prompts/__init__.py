"""Art-direction prompts: editable templates (`prompts/*.md`) with typed arguments and completion.

Each template teaches the assistant the craft of one kind of shoot, names the callsheet tools to
use, and ends with the plan -> validate -> price -> confirm -> start routine. An art director edits
the `.md` files; `{name}` placeholders are filled from the prompt's arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument
from mcp_types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)
from pydantic import Field

TEMPLATES = Path(__file__).parent

LIGHTING = [
    "golden-hour",
    "blue-hour",
    "studio-soft",
    "dramatic",
    "neon",
    "natural-window",
    "backlit",
    "moonlight",
]
BACKGROUNDS = ["studio-white", "light-grey seamless", "urban-city", "nature-garden", "beach", "loft interior"]
STYLES = ["editorial-vogue", "street-style", "minimalist-clean"]
ASPECT_RATIOS = ["1:1", "4:5", "3:4", "2:3", "9:16", "16:9", "21:9", "4:3", "3:2", "5:4"]
CHANNELS = [
    "instagram-feed",
    "instagram-stories",
    "tiktok",
    "youtube",
    "web-banner",
    "amazon",
    "zalando",
    "shopify",
    "out-of-home",
]
MOODS = ["quiet luxury", "playful", "raw and cinematic", "sunlit optimism", "dark romantic", "clean minimal"]

COMPLETIONS: dict[str, list[str]] = {
    "lighting": LIGHTING,
    "background": BACKGROUNDS,
    "style": STYLES,
    "aspect_ratio": ASPECT_RATIOS,
    "channels": CHANNELS,
    "mood": MOODS,
}

Brand = Annotated[str, Field(description="Brand name and one line about its style.")]
Products = Annotated[
    str,
    Field(description="Garment or product images (paths, URLs or callsheet:// outputs), comma-separated."),
]
Audience = Annotated[str, Field(description="Who the images are for (age, style, market).")]
Mood = Annotated[str, Field(description="The mood in a few words (completion offers ideas).")]
Channels = Annotated[
    str, Field(description="Where the images go, comma-separated (completion offers channels).")
]
Lighting = Annotated[str, Field(description="Light preset or description (completion offers presets).")]
Background = Annotated[str, Field(description="Background or location (completion offers presets).")]
Aspect = Annotated[str, Field(description="Aspect ratio(s), comma-separated, e.g. 4:5, 9:16.")]
Budget = Annotated[str, Field(description="Credits the shoot may spend, e.g. 100.")]


def render(name: str, **args: str) -> str:
    """Fill a template; a placeholder without a value is left visible rather than failing."""
    text = (TEMPLATES / f"{name}.md").read_text()
    return text.format_map(_Keep(args))


class _Keep(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def ecommerce_pdp(
    brand: Brand,
    products: Products,
    audience: Audience = "adult shoppers of the brand",
    channels: Channels = "shopify, amazon",
    background: Background = "studio-white",
    aspect_ratio: Aspect = "4:5",
    budget_credits: Budget = "100",
) -> str:
    """Product detail page set: one consistent model, front/back/detail views, clean background,
    marketplace aspect ratios; ends in a validated, priced shoot plan."""
    return render("ecommerce_pdp", **locals())


def lookbook(
    brand: Brand,
    products: Products,
    mood: Mood = "quiet luxury",
    background: Background = "loft interior",
    lighting: Lighting = "natural-window",
    aspect_ratio: Aspect = "4:5",
    budget_credits: Budget = "120",
) -> str:
    """A coherent series of looks on one cast model, one location and one light."""
    return render("lookbook", **locals())


def editorial_story(
    brand: Brand,
    concept: Annotated[str, Field(description="The story in a sentence.")],
    products: Products,
    mood: Mood = "raw and cinematic",
    background: Background = "urban-city",
    lighting: Lighting = "golden-hour",
    budget_credits: Budget = "200",
) -> str:
    """A narrative spread: concept, locations, styling, hair and make-up, light, poses."""
    return render("editorial_story", **locals())


def campaign_launch(
    brand: Brand,
    products: Products,
    audience: Audience = "the brand's core customers",
    mood: Mood = "sunlit optimism",
    channels: Channels = "instagram-feed, instagram-stories, tiktok, web-banner",
    lighting: Lighting = "golden-hour, studio-soft, dramatic",
    budget_credits: Budget = "250",
) -> str:
    """Hero image, variations, relight moods, a short video and channel cut-downs."""
    return render("campaign_launch", **locals())


def model_casting(
    brand: Brand,
    persona: Annotated[str, Field(description="The brand persona the cast must embody.")],
    audience: Audience = "the brand's customers",
    cast_size: Annotated[str, Field(description="How many models to cast, e.g. 4.")] = "4",
    budget_credits: Budget = "60",
) -> str:
    """Create or swap models to match a brand persona and a diverse cast, with consistent identity."""
    return render("model_casting", **locals())


def social_cutdowns(
    brand: Brand,
    sources: Annotated[str, Field(description="Images to cut down (callsheet:// outputs, paths, URLs).")],
    aspect_ratio: Aspect = "9:16, 4:5, 1:1",
    channels: Channels = "instagram-stories, instagram-feed, tiktok",
    budget_credits: Budget = "40",
) -> str:
    """9:16, 4:5 and 1:1 versions of existing outputs, with channel safe zones."""
    return render("social_cutdowns", **locals())


PROMPTS: list[Callable[..., str]] = [
    ecommerce_pdp,
    lookbook,
    editorial_story,
    campaign_launch,
    model_casting,
    social_cutdowns,
]


def complete(argument: str, typed: str) -> list[str]:
    """Suggestions for an enumerable argument, matching what is typed (after the last comma)."""
    options = COMPLETIONS.get(argument, [])
    head, _, last = typed.rpartition(",")
    prefix = (head + ", ") if head else ""
    return [prefix + o for o in options if o.startswith(last.strip().lower())]


TITLES = {
    "ecommerce_pdp": "E-commerce product pages",
    "lookbook": "Lookbook",
    "editorial_story": "Editorial story",
    "campaign_launch": "Campaign launch",
    "model_casting": "Model casting",
    "social_cutdowns": "Social cut-downs",
}
"""What a client shows for each prompt (its name is what the assistant sends)."""


def register_prompts(app: MCPServer) -> None:
    """Every argument of a prompt is text, described in its signature: the SDK's prompt decorator would
    build a pydantic model of each to find that out (8 ms of every start); the server checks what a
    client sends (`server.app._ArgumentCheck`)."""
    for fn in PROMPTS:
        arguments = [
            PromptArgument(
                name=name,
                description=param.annotation.__metadata__[0].description,
                required=param.default is inspect.Parameter.empty,
            )
            for name, param in inspect.signature(fn, eval_str=True).parameters.items()
        ]
        prompt = Prompt(
            name=fn.__name__, title=TITLES[fn.__name__], description=fn.__doc__, arguments=arguments, fn=fn
        )
        app._prompt_manager.add_prompt(prompt)

    @app.completion()  # type: ignore[no-untyped-call, untyped-decorator]  # the SDK's decorator is untyped
    async def completion(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if not isinstance(ref, PromptReference):
            return None
        values = complete(argument.name, argument.value)
        return Completion(values=values[:100], total=len(values), has_more=len(values) > 100)
