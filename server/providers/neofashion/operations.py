"""neo-fashion's operations and queries in one place: typed arguments, price and typical duration.

neo-fashion documents its endpoints and response envelope but not its request bodies, so the
argument names here are chosen from the document's own vocabulary (`prompt`, `persona_id`,
`model_id`, an image URL field, `aspect_ratio`, `duration`) and double as the JSON field names
(a wrong guess is corrected by giving that field a serialization alias); each operation's
endpoint is its spec's `route`.

The document publishes one price, by example: an image generation answered with
`credits_used: 50`. Every other price is callsheet's estimate and labelled so; the job's
`credits_used` always comes from what neo-fashion reports. `credits()` and `DURATIONS` are read by
both the adapter's estimate and the sandbox emulator's charge and timing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from server.providers.base import ImageRef, OperationSpec, ProviderInputs, QuerySpec, from_tables

# --- Prices (credits) and typical durations (seconds) --------------------------------------------

IMAGE_CREDITS = 50
"""From the document's example response (`credits_used: 50` for an image generation)."""
VIDEO_CREDITS_PER_5_SECONDS = 200
"""Estimate: neo-fashion publishes no video price."""
SKETCH_CREDITS = 60
"""Estimate: neo-fashion publishes no sketch-to-photo price."""
BULK_CREDITS_PER_ITEM = IMAGE_CREDITS
"""Each bulk item is one image generation."""
MAX_BULK_ITEMS = 50
"""callsheet's cap per batch (neo-fashion documents none); split larger runs into several calls."""

DURATIONS: dict[str, tuple[float, float, float, float]] = {
    # (fastest, usual from, usual to, slowest) in seconds of one generation (a 5 s clip for video)
    "image": (5, 10, 30, 60),
    "sketch_to_photo": (8, 15, 40, 75),
    "video": (40, 60, 150, 240),
}


def credits(operation: str, body: Mapping[str, Any]) -> float:
    """What one call of `operation` with this request body costs: the estimate and the sandbox's charge."""
    if operation == "bulk":
        return float(BULK_CREDITS_PER_ITEM * len(body.get("items") or []))
    if operation == "video":
        return float(VIDEO_CREDITS_PER_5_SECONDS * int(body.get("duration") or 5) // 5)
    if operation == "sketch_to_photo":
        return float(SKETCH_CREDITS)
    return float(IMAGE_CREDITS)


def typical_seconds(operation: str, body: Mapping[str, Any]) -> float:
    """The middle of one generation's usual range; a batch's items run side by side."""
    kind = "image" if operation == "bulk" else operation
    _, usual_from, usual_to, _ = DURATIONS[kind]
    seconds = (usual_from + usual_to) / 2
    return seconds * (2 if operation == "video" and body.get("duration") == 10 else 1)


IMAGE_PRICE = f"{IMAGE_CREDITS} credits per image (the price in neo-fashion's documented example)"
VIDEO_PRICE = f"{VIDEO_CREDITS_PER_5_SECONDS} credits per 5 s of video (estimate: no published price)"
SKETCH_PRICE = f"{SKETCH_CREDITS} credits per photo (estimate: no published price)"
BULK_PRICE = f"{BULK_CREDITS_PER_ITEM} credits per item, charged for every item when the batch is accepted"

IMAGE_URL_NOTE = "Image URL."
URLS_ONLY = "Images by URL only."

AspectRatio = Literal["1:1", "4:5", "3:4", "2:3", "9:16", "16:9", "4:3", "3:2"]
VideoAspectRatio = Literal["9:16", "16:9", "1:1", "4:5"]
GenerationStatus = Literal["queued", "processing", "completed", "failed"]


class NeoFashionInputs(ProviderInputs):
    """Arguments of one neo-fashion call; unknown fields are refused; the names are the wire's."""


PersonaIdField = Annotated[
    str | None,
    Field(
        min_length=1,
        description="A workspace persona (saved identity, e.g. 'per_ava'); neofashion_personas lists them.",
    ),
]
ModelIdField = Annotated[
    str | None,
    Field(
        min_length=1,
        description="A custom trained model of the workspace; neofashion_models lists them.",
    ),
]
AspectRatioField = Annotated[
    AspectRatio | None,
    Field(description="Width:height, e.g. 4:5 (PDP, feed), 9:16 (stories), 16:9 (banners)."),
]


class ImageInputs(NeoFashionInputs):
    prompt: str = Field(
        min_length=1,
        description="What to photograph: product, model, pose, setting, light, e.g. 'linen dress on a "
        "model in a sunlit courtyard'.",
    )
    image_url: ImageRef | None = Field(
        default=None,
        description="The product to feature. " + IMAGE_URL_NOTE,
    )
    persona_id: PersonaIdField = None
    model_id: ModelIdField = None
    aspect_ratio: AspectRatioField = None


class BulkItem(ImageInputs):
    """One image: neofashion_image's arguments."""


class BulkInputs(NeoFashionInputs):
    items: list[BulkItem] = Field(
        min_length=1,
        max_length=MAX_BULK_ITEMS,
        description="The images, each with neofashion_image's arguments; each item is its own job.",
    )


class VideoInputs(NeoFashionInputs):
    prompt: str = Field(
        min_length=1,
        description="Subject, motion and camera, e.g. 'model turns to show the back of the coat, slow "
        "push-in'.",
    )
    image_url: ImageRef | None = Field(
        default=None,
        description="Still to animate (the first frame). " + IMAGE_URL_NOTE,
    )
    persona_id: PersonaIdField = None
    model_id: ModelIdField = None
    aspect_ratio: VideoAspectRatio | None = Field(
        default=None,
        description="Width:height, e.g. 9:16 (reels) or 16:9.",
    )
    duration: Literal[5, 10] | None = Field(
        default=None,
        description="5 (default) or 10 seconds; 10 doubles the cost.",
    )


class SketchToPhotoInputs(NeoFashionInputs):
    sketch_url: ImageRef = Field(
        description="The sketch or flat drawing. " + IMAGE_URL_NOTE,
    )
    prompt: str | None = Field(
        default=None,
        min_length=1,
        description="Fabric, colours, model, setting, e.g. 'washed indigo denim, industrial loft'.",
    )
    persona_id: PersonaIdField = None
    model_id: ModelIdField = None
    aspect_ratio: AspectRatioField = None


class GenerationsQuery(NeoFashionInputs):
    status: GenerationStatus | None = Field(
        default=None,
        description="Only generations in this state; omit for all.",
    )
    page: int | None = Field(
        default=None,
        ge=1,
        description="Page from 1 (default, newest first); the result's next_page gives the next.",
    )
    limit: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Generations per page (default 20).",
    )


class NoArguments(NeoFashionInputs):
    """A query that takes no arguments."""


# --- The operation table ------------------------------------------------------------------------


def _spec(operation: str, route: str, inputs: type[NeoFashionInputs], **text: Any) -> OperationSpec:
    return from_tables(
        operation, inputs, key=operation, credits=credits, seconds=typical_seconds, route=route, **text
    )


_OPERATIONS = (
    _spec(
        operation="image",
        route="/generate/image",
        inputs=ImageInputs,
        title="neo-fashion Product Photo",
        description=(
            "Generate a product photo with neo-fashion.ai from a prompt, optionally featuring a product "
            "photo, a workspace persona or a custom trained model. About 10-40 s. "
            f"Cost: {IMAGE_CREDITS} credits per image (neo-fashion's documented example), refunded if its "
            "AI provider fails. Many at once: neofashion_bulk; animate with neofashion_video. " + URLS_ONLY
        ),
        price_text=IMAGE_PRICE,
    ),
    _spec(
        operation="video",
        route="/generate/video",
        inputs=VideoInputs,
        title="neo-fashion Fashion Video",
        description=(
            "Generate a 5 or 10 s fashion video (MP4) with neo-fashion.ai from a prompt, optionally "
            "animating a still, with a persona or custom model. One to several minutes. Cost (estimate): "
            f"{VIDEO_CREDITS_PER_5_SECONDS} credits per 5 s, refunded if its AI provider fails. Needs a "
            "plan with video (FORBIDDEN otherwise). " + URLS_ONLY
        ),
        price_text=VIDEO_PRICE,
    ),
    _spec(
        operation="bulk",
        route="/generate/bulk",
        inputs=BulkInputs,
        title="neo-fashion Bulk Generation",
        description=(
            f"Up to {MAX_BULK_ITEMS} product photos in one neo-fashion.ai batch; each item "
            "(neofashion_image's arguments) becomes its own job, listed in the batch job's outputs. "
            f"Cost: {BULK_CREDITS_PER_ITEM} credits per item, debited when accepted, refunded for failed "
            "items. The batch fails as batch_incomplete if any item failed, keeping the others' outputs. "
            + URLS_ONLY
        ),
        price_text=BULK_PRICE,
    ),
    _spec(
        operation="sketch_to_photo",
        route="/sketch-to-photo",
        inputs=SketchToPhotoInputs,
        title="neo-fashion Sketch to Photo",
        description=(
            "Turn a design sketch or flat drawing into a campaign-quality photo with neo-fashion.ai, "
            "optionally directed by a prompt, a persona or a custom model. About 15-45 s. Cost "
            f"(estimate): {SKETCH_CREDITS} credits per photo, refunded if its AI provider fails. " + URLS_ONLY
        ),
        price_text=SKETCH_PRICE,
    ),
)

OPERATIONS: dict[str, OperationSpec] = {op.operation: op for op in _OPERATIONS}
"""Every neo-fashion generation operation, keyed by operation (the tool name without `neofashion_`)."""


QUERIES: dict[str, QuerySpec] = {
    q.name: q
    for q in (
        QuerySpec(
            name="generations",
            inputs=GenerationsQuery,
            title="neo-fashion Generations",
            description=(
                "This workspace's neo-fashion generations, newest first, a page at a time (also those "
                "made outside callsheet). Costs nothing."
            ),
        ),
        QuerySpec(
            name="personas",
            inputs=NoArguments,
            title="neo-fashion Personas",
            description=(
                "The workspace's personas (saved model identities): their ids are the persona_id of the "
                "neofashion_ tools, for one face across a shoot. Costs nothing."
            ),
        ),
        QuerySpec(
            name="models",
            inputs=NoArguments,
            title="neo-fashion Custom Models",
            description=(
                "The workspace's custom trained models (id, name, status): a ready one's id is a "
                "model_id. Costs nothing."
            ),
        ),
    )
}
