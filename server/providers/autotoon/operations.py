"""Auto Toon's operations in one place: typed inputs, wire names, price estimates and timings.

Arguments are the field names of `provider-docs/autotoon-editorial-api.txt` in snake_case
(`clothingImageUrls` -> `clothing_image_urls`); each field's serialization alias is Auto Toon's
camelCase name, and `nest` puts the two flattened objects back (`style` -> `styleData.style`,
`background` -> `backgroundData.background`). Optional fields default to `None` so that only what
the user set is sent and Auto Toon applies its own defaults.

The document publishes no price table (its 402 example says `"required": 3`) and no timings:
`CREDITS` and `DURATIONS` are estimates, labelled as such wherever a user reads them; the adapter's
estimate and the sandbox emulator's charge and timing both read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import AliasGenerator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from server.models import credits_text
from server.providers.base import ImageRef, OperationSpec, ProviderInputs

URL_ONLY = "Image URL."

AiModel = Literal[
    "gemini-3-pro-image-preview",
    "gemini-3.1-flash-image-preview",
    "bytedance/seedream-4.5",
    "bytedance/seedream-5-lite",
]
Lighting = Literal[
    "golden-hour", "blue-hour", "studio-soft", "dramatic", "neon", "natural-window", "backlit", "moonlight"
]
VariationStyle = Literal["fashion-editorial", "surreal-product-hero"]
VariationMode = Literal["user-model", "scratch-model"]

# --- The one table of price estimates (credits per call) and typical durations (seconds) ---------
# Estimates: Auto Toon publishes no prices; its 402 example asks for 3 credits.
CREDITS: dict[str, float] = {
    "editorial": 3,
    "variations": 3,  # per set of variations (the example returns three images)
    "relight": 2,
    "upscale": 1,
    "video": 5,
}
PRICE_NOTE = "estimate: no published prices"
DURATIONS: dict[str, tuple[float, float]] = {
    "editorial": (20, 40),
    "variations": (30, 60),
    "relight": (15, 30),
    "upscale": (8, 15),
    "video": (60, 120),
}
"""Seconds one call usually takes (estimates): the image calls answer when done, the video is polled."""

NESTED = {"style": "styleData", "mode": "styleData", "background": "backgroundData"}
"""Arguments Auto Toon takes inside an object: argument -> the object it goes in."""


def nest(body: Mapping[str, Any]) -> dict[str, Any]:
    """A request body with the flattened arguments put back into their objects (`styleData`...)."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in NESTED:
            out.setdefault(NESTED[name], {})[name] = value
        else:
            out[name] = value
    return out


def _url(purpose: str) -> str:
    return f"{purpose} {URL_ONLY}"


class AutoToonInputs(ProviderInputs):
    """Inputs of one Auto Toon operation; unknown fields are refused; sent in camelCase."""

    model_config = ConfigDict(alias_generator=AliasGenerator(serialization_alias=to_camel))


class InlineModel(AutoToonInputs):
    """A model passed inline, with its own clothing."""

    model_id: str = Field(
        min_length=1,
        description="ID of the model this entry describes (autotoon_models).",
    )
    clothing_image_urls: list[ImageRef] = Field(
        min_length=1, description=_url("Clothing for this model, one image per item.")
    )
    image_url: ImageRef | None = Field(default=None, description=_url("Reference photo of the model."))
    prompt: str | None = Field(default=None, description="This model or how they wear the clothing.")
    character_sheet_url: ImageRef | None = Field(
        default=None,
        description=_url("Character sheet (several views) for a consistent identity."),
    )


class EditorialInputs(AutoToonInputs):
    model_id: str | None = Field(
        default=None,
        min_length=1,
        description="A saved model's ID (autotoon_models). Give model_id or models.",
    )
    models: list[InlineModel] | None = Field(
        default=None,
        min_length=1,
        description="Models passed inline instead of model_id.",
    )
    clothing_image_urls: list[ImageRef] | None = Field(
        default=None,
        min_length=1,
        description=_url("Clothing to wear, one image per item; needed with model_id."),
    )
    ai_model: AiModel | None = Field(
        default=None,
        description="Default gemini-3-pro-image-preview (best); the flash model is faster.",
    )
    makeup_analysis: str | None = Field(
        default=None, description="Makeup, e.g. 'natural glam, bold red lip'."
    )
    hairstyle_analysis: str | None = Field(
        default=None, description="Hairstyle, e.g. 'slicked-back low bun'."
    )
    style: str | None = Field(
        default=None,
        description="Style preset, e.g. 'editorial-vogue', 'street-style', 'minimalist-clean'.",
    )
    background: str | None = Field(
        default=None,
        description="Background preset, e.g. 'studio-white', 'urban-city', 'nature-garden'.",
    )
    prompt_modifier: str | None = Field(
        default=None,
        description="Creative direction, e.g. 'cinematic lighting, shallow depth of field'.",
    )
    brand_analysis: str | None = Field(
        default=None,
        description="Brand guidelines, e.g. 'minimalist luxury'.",
    )

    @model_validator(mode="after")
    def _one_model_source(self) -> EditorialInputs:
        if self.model_id is None and self.models is None:
            raise ValueError("give model_id (a saved model, see autotoon_models) or models (inline)")
        if self.model_id is not None and self.models is not None:
            raise ValueError("give model_id or models, not both")
        if self.models is None and self.clothing_image_urls is None:
            raise ValueError("clothing_image_urls is required with model_id")
        return self


class VariationsInputs(AutoToonInputs):
    base_image_url: ImageRef = Field(description=_url("The hero image (e.g. an autotoon_editorial output)."))
    style: VariationStyle | None = Field(
        default=None,
        description="fashion-editorial (default): new angles, poses, crops; surreal-product-hero: the "
        "product from clothing_image_urls as a surreal hero.",
    )
    mode: VariationMode | None = Field(
        default=None,
        description="With fashion-editorial: user-model (default) keeps the face from model_image_urls; "
        "scratch-model invents one.",
    )
    model_image_urls: list[ImageRef] | None = Field(
        default=None, min_length=1, description=_url("Reference photos of the model, for consistency.")
    )
    clothing_image_urls: list[ImageRef] | None = Field(
        default=None,
        min_length=1,
        description=_url("Product or clothing images (the hero subject for surreal-product-hero)."),
    )
    aspect_ratio: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]{0,2}:[1-9][0-9]{0,2}$",
        description="Width:height, e.g. '9:16', '4:5', '1:1'.",
    )

    @model_validator(mode="after")
    def _mode_needs_fashion_editorial(self) -> VariationsInputs:
        if self.mode is not None:
            if self.style == "surreal-product-hero":
                raise ValueError("mode applies only to style 'fashion-editorial': drop mode or style")
            self.style = "fashion-editorial"  # styleData needs its style key; this is Auto Toon's default
        return self


class RelightInputs(AutoToonInputs):
    base_image_url: ImageRef = Field(description=_url("The image to relight."))
    lighting: Lighting | None = Field(
        default=None, description="Preset mood. Give lighting and/or light_position."
    )
    light_position: str | None = Field(
        default=None,
        min_length=1,
        description="Light direction, e.g. 'above-left at 45 degrees'.",
    )
    light_color: str | None = Field(default=None, description="Light colour, e.g. 'warm amber' or '#FF9500'.")
    ai_model: str | None = Field(
        default=None,
        min_length=1,
        description="Image model; Auto Toon chooses when omitted.",
    )

    @model_validator(mode="after")
    def _lighting_or_position(self) -> RelightInputs:
        if self.lighting is None and self.light_position is None:
            raise ValueError("give lighting (a preset) or light_position (a custom direction), or both")
        return self


class UpscaleInputs(AutoToonInputs):
    image_url: ImageRef = Field(description=_url("The image to upscale."))
    scale: float | None = Field(
        default=None,
        gt=1,
        le=8,
        description="Factor above 1, at most 8 (e.g. 2 or 4); omit to let Auto Toon choose.",
    )


class VideoInputs(AutoToonInputs):
    image_url: ImageRef = Field(description=_url("The editorial image to animate."))


class ModelsQuery(AutoToonInputs):
    """`autotoon_models` takes no arguments."""


def _spec(operation: str, path: str, inputs: type[AutoToonInputs], **text: Any) -> OperationSpec:
    unit = "per set of variations" if operation == "variations" else "per call"
    return OperationSpec(
        operation=operation,
        route=path,
        inputs=inputs,
        credits=lambda _: CREDITS[operation],
        seconds=lambda _: sum(DURATIONS[operation]) / 2,
        price_text=f"about {credits_text(CREDITS[operation])} {unit} ({PRICE_NOTE})",
        answers_at_once=operation != "video",
        **text,
    )


def _cost(operation: str) -> str:
    unit = " per set" if operation == "variations" else ""
    return f"Cost: about {credits_text(CREDITS[operation])}{unit} (estimate)."


_URL_NOTE = "Images by URL only."

_OPERATIONS = (
    _spec(
        operation="editorial",
        path="/api/fashion-editorial/generate",
        inputs=EditorialInputs,
        title="Auto Toon Fashion Editorial",
        description=(
            "Generate an editorial fashion photo: Auto Toon dresses a model (saved, by model_id, or "
            "inline models) in the given clothing, with optional style and background presets, makeup, "
            "hair, direction and brand guidelines. Typically 20-40 s. "
            + _cost("editorial")
            + " "
            + _URL_NOTE
            + " Then: autotoon_variations, _relight, _upscale or _video."
        ),
    ),
    _spec(
        operation="variations",
        path="/api/fashion-editorial/variations",
        inputs=VariationsInputs,
        title="Auto Toon Campaign Variations",
        description=(
            "Make a set of campaign variations (new angles, poses and crops, or a surreal product-hero "
            "treatment) from one hero image, e.g. for social, ads and lookbooks; returns several images. "
            "Typically 30-60 s. " + _cost("variations") + " " + _URL_NOTE
        ),
    ),
    _spec(
        operation="relight",
        path="/api/fashion-editorial/relight",
        inputs=RelightInputs,
        title="Auto Toon Relight",
        description=(
            "Relight an existing fashion image with a preset mood (golden-hour, neon, studio-soft...) "
            "and/or a custom light direction and colour. Typically 15-30 s. "
            + _cost("relight")
            + " "
            + _URL_NOTE
        ),
    ),
    _spec(
        operation="upscale",
        path="/api/fashion-editorial/upscale",
        inputs=UpscaleInputs,
        title="Auto Toon Upscale",
        description=(
            "Upscale a fashion image to a higher resolution, keeping fabric texture and skin detail; the "
            "last step before print or PDP zoom. Typically 8-15 s. " + _cost("upscale") + " " + _URL_NOTE
        ),
    ),
    _spec(
        operation="video",
        path="/api/fashion-editorial/video/generate",
        inputs=VideoInputs,
        title="Auto Toon Editorial Video",
        description=(
            "Turn a fashion editorial image into a short video clip (MP4). Runs as a job at Auto Toon "
            "that callsheet polls; typically one to two minutes, so expect to call job_wait. "
            + _cost("video")
            + " "
            + _URL_NOTE
        ),
    ),
)

OPERATIONS: dict[str, OperationSpec] = {op.operation: op for op in _OPERATIONS}
"""Every Auto Toon operation, keyed by operation (the tool name without `autotoon_`)."""
