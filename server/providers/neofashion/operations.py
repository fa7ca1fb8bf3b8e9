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

IMAGE_URL_NOTE = (
    "neo-fashion takes images by URL only: give a public http(s) URL, or an earlier callsheet output "
    "(callsheet://jobs/{job_id}/outputs/{n}) that still has its provider URL. Local files and data: URIs "
    "are refused: upload the file somewhere public first."
)

AspectRatio = Literal["1:1", "4:5", "3:4", "2:3", "9:16", "16:9", "4:3", "3:2"]
VideoAspectRatio = Literal["9:16", "16:9", "1:1", "4:5"]
GenerationStatus = Literal["queued", "processing", "completed", "failed"]


class NeoFashionInputs(ProviderInputs):
    """Arguments of one neo-fashion call; unknown fields are refused; the names are the wire's."""


PersonaIdField = Annotated[
    str | None,
    Field(
        min_length=1,
        description="Optional id of a workspace persona (a saved model identity, e.g. 'per_ava') to appear "
        "in the result; neofashion_personas lists them. No effect on cost.",
    ),
]
ModelIdField = Annotated[
    str | None,
    Field(
        min_length=1,
        description="Optional id of a custom trained model of this workspace (e.g. a brand's product or "
        "style model); neofashion_models lists them and their training status. No effect on cost.",
    ),
]
AspectRatioField = Annotated[
    AspectRatio | None,
    Field(
        description="Output aspect ratio (width:height): 1:1, 4:5 (PDP, Instagram feed), 3:4, 2:3, 9:16 "
        "(stories), 16:9 (banners), 4:3 or 3:2. Omit for neo-fashion's default. No effect on cost."
    ),
]


class ImageInputs(NeoFashionInputs):
    prompt: str = Field(
        min_length=1,
        description="What to photograph, in plain words: product, model, pose, setting, light and mood, "
        "e.g. 'linen shirt dress on a model walking through a sunlit courtyard, soft morning light'.",
    )
    image_url: ImageRef | None = Field(
        default=None,
        description="Optional photo of the product (garment, shoes, bag, accessory) to feature. "
        + IMAGE_URL_NOTE,
    )
    persona_id: PersonaIdField = None
    model_id: ModelIdField = None
    aspect_ratio: AspectRatioField = None


class BulkItem(ImageInputs):
    """One image of a batch: the same arguments as neofashion_image."""


class BulkInputs(NeoFashionInputs):
    items: list[BulkItem] = Field(
        min_length=1,
        max_length=MAX_BULK_ITEMS,
        description=f"The images to generate, 1-{MAX_BULK_ITEMS} items, each with the arguments of "
        "neofashion_image: prompt (required), image_url, persona_id, model_id, aspect_ratio. "
        f"Each item costs {BULK_CREDITS_PER_ITEM} credits and becomes its own job.",
    )


class VideoInputs(NeoFashionInputs):
    prompt: str = Field(
        min_length=1,
        description="The clip to make: subject, motion and camera, e.g. 'model turns slowly to show the "
        "back of the coat, gentle push-in, studio light'.",
    )
    image_url: ImageRef | None = Field(
        default=None,
        description="Optional still to animate (it becomes the first frame), e.g. an earlier "
        "neofashion_image output. " + IMAGE_URL_NOTE,
    )
    persona_id: PersonaIdField = None
    model_id: ModelIdField = None
    aspect_ratio: VideoAspectRatio | None = Field(
        default=None,
        description="Video aspect ratio: 9:16 (stories, reels), 16:9, 1:1 or 4:5. Omit for neo-fashion's "
        "default. No effect on cost.",
    )
    duration: Literal[5, 10] | None = Field(
        default=None,
        description=f"Clip length in seconds: 5 (default) or 10. Estimated {VIDEO_CREDITS_PER_5_SECONDS} "
        "credits per 5 s, so 10 s doubles the cost and takes longer.",
    )


class SketchToPhotoInputs(NeoFashionInputs):
    sketch_url: ImageRef = Field(
        description="The design sketch or flat drawing to turn into a campaign-quality photo. "
        + IMAGE_URL_NOTE,
    )
    prompt: str | None = Field(
        default=None,
        min_length=1,
        description="Optional direction for the photo: fabric, colours, model, setting, e.g. 'in washed "
        "indigo denim, on a model in an industrial loft'. No effect on cost.",
    )
    persona_id: PersonaIdField = None
    model_id: ModelIdField = None
    aspect_ratio: AspectRatioField = None


class GenerationsQuery(NeoFashionInputs):
    status: GenerationStatus | None = Field(
        default=None,
        description="Only generations in this state: queued, processing, completed or failed. Omit for all.",
    )
    page: int | None = Field(
        default=None,
        ge=1,
        description="Page number, from 1 (the default; newest generations first). The result's next_page "
        "says which page to ask for next.",
    )
    limit: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Generations per page, 1-100 (default 20).",
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
            "Generate one product photo with neo-fashion.ai from a prompt, optionally featuring a product "
            "photo (image_url), a workspace persona (persona_id) or a custom trained model (model_id). "
            f"Typically 10-40 s. Cost: {IMAGE_CREDITS} credits per image (the price in neo-fashion's "
            "documented example), debited when the generation starts and refunded automatically if "
            "neo-fashion's AI provider fails. For many images at once use neofashion_bulk; animate a "
            "result with neofashion_video."
        ),
        price_text=IMAGE_PRICE,
    ),
    _spec(
        operation="video",
        route="/generate/video",
        inputs=VideoInputs,
        title="neo-fashion Fashion Video",
        description=(
            "Generate a short fashion video (MP4) with neo-fashion.ai from a prompt, optionally animating "
            "a still (image_url), with a persona or custom model. 5 or 10 s long; takes one to several "
            f"minutes. Cost (estimate, no published price): {VIDEO_CREDITS_PER_5_SECONDS} credits per 5 s "
            "(400 for 10 s), refunded automatically if neo-fashion's AI provider fails. Needs a plan that "
            "includes video: a FORBIDDEN answer means the plan lacks it."
        ),
        price_text=VIDEO_PRICE,
    ),
    _spec(
        operation="bulk",
        route="/generate/bulk",
        inputs=BulkInputs,
        title="neo-fashion Bulk Generation",
        description=(
            "Generate many product photos in one asynchronous neo-fashion.ai batch: each item takes the "
            "arguments of neofashion_image and becomes its own job (listed in the batch job's outputs as "
            f"they finish). Cost: {BULK_CREDITS_PER_ITEM} credits per item, all debited when the batch is "
            "accepted; items that fail at neo-fashion's AI provider are refunded. The batch job ends when "
            "every item has: failed with batch_incomplete if any item failed, keeping the others' outputs. "
            f"Up to {MAX_BULK_ITEMS} items per call; check the total and the balance (credits) first."
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
            "optionally directed by a prompt, a persona or a custom model. Typically 15-45 s. Cost "
            f"(estimate, no published price): {SKETCH_CREDITS} credits per photo, refunded automatically "
            "if neo-fashion's AI provider fails."
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
                "List this workspace's neo-fashion generations, newest first, one page at a time: id, type, "
                "status, prompt, output_url, credits_used, error. Optional filter by status. Read-only, "
                "costs nothing. Generations made through callsheet are also jobs (jobs_list, job_status); "
                "this shows what the workspace did elsewhere too."
            ),
        ),
        QuerySpec(
            name="personas",
            inputs=NoArguments,
            title="neo-fashion Personas",
            description=(
                "List the workspace's personas (saved model identities) with their ids, to pass as "
                "persona_id to neofashion_image, neofashion_video, neofashion_bulk items or "
                "neofashion_sketch_to_photo for a consistent face across a shoot. Read-only, costs nothing."
            ),
        ),
        QuerySpec(
            name="models",
            inputs=NoArguments,
            title="neo-fashion Custom Models",
            description=(
                "List the workspace's custom trained models (id, name, status) to pass as model_id; only "
                "models whose status is ready can be used. Read-only, costs nothing."
            ),
        ),
    )
}
