"""FASHN's twelve models in one place: typed inputs, the one price table, typical durations.

Every model runs through FASHN's one `/run` endpoint with `{"model_name", "inputs"}`; what
differs is the inputs, the price and how long a prediction takes. The inputs classes refuse
unknown fields and out-of-range values so a bad call fails at the tool, before anything is
stored or charged. Optional fields default to `None` so that only what the user set is sent
and FASHN applies its own defaults.

`credits()` is the price table: the adapter's estimate and the sandbox emulator's charge both
read it (with the same defaults), so a rehearsal in the sandbox costs what the estimate says.
`DURATIONS` are the documented time ranges: the adapter's typical duration and the emulator's
draws both come from them.

Field names are FASHN's own (already snake_case), taken from FASHN's API reference, its
endpoints page and its SDK's typed inputs; where those disagree both forms are accepted.
Prices come from FASHN's published credit tables; where FASHN publishes none, the estimate
is labelled as such. `webhook_url` is left out on purpose: callsheet polls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from server.providers.base import ImageRef, OperationSpec, ProviderInputs, from_tables

IMAGE_REFERENCE = (
    "Image reference: an http(s) URL, a data:image/...;base64 URI, a local file path inside "
    "CALLSHEET_INPUT_ROOTS, or an earlier output callsheet://jobs/{job_id}/outputs/{n}."
)

AspectRatio = Literal["21:9", "1:1", "4:3", "3:2", "2:3", "5:4", "4:5", "3:4", "16:9", "9:16"]
Resolution = Literal["1k", "2k", "4k"]
GenerationMode = Literal["fast", "balanced", "quality"]
OutputFormat = Literal["png", "jpeg"]
FaceReferenceMode = Literal["match_base", "match_reference"]
VideoResolution = Literal["480p", "720p", "1080p"]

# --- The price table: FASHN's published prices, and callsheet's reading of its "1-5 per image" ------

TIER_CREDITS: dict[str, float] = {"1k": 1, "2k": 2, "4k": 4}
"""Credits per image by resolution for the models FASHN prices "1-5 per image"."""
QUALITY_SURCHARGE = 1.0
"""Per image in quality mode; FASHN bills an omitted generation_mode as quality above 1k."""
FACE_REFERENCE_SURCHARGE = 3.0
TRYON_MAX_CREDITS: dict[str, float] = {"1k": 2, "2k": 3, "4k": 5}
VIDEO_CREDITS: dict[str, float] = {"480p": 1, "720p": 3, "1080p": 6}
DEFAULT_RESOLUTION: Resolution = "1k"
DEFAULT_VIDEO_RESOLUTION: VideoResolution = "1080p"
FLAT_CREDITS = {"background-remove": 1.0}
"""Models priced per image whatever their options (estimate: FASHN publishes none)."""


def credits(model_name: str, inputs: Mapping[str, Any]) -> float:
    """What one `/run` of `model_name` with these inputs (wire form, FASHN's defaults where absent)
    costs: the estimate shown before a call and what the sandbox charges for it."""
    count = int(inputs.get("num_images") or 1)
    if model_name == "tryon-v1.6":
        return float(inputs.get("num_samples") or 1)
    if model_name == "image-to-video":
        per_clip = VIDEO_CREDITS[str(inputs.get("resolution") or DEFAULT_VIDEO_RESOLUTION)]
        return per_clip * (2 if inputs.get("duration") == 10 else 1)
    resolution = str(inputs.get("resolution") or DEFAULT_RESOLUTION)
    if model_name == "tryon-max":
        return TRYON_MAX_CREDITS[resolution] * count
    if model_name in FLAT_CREDITS:
        return FLAT_CREDITS[model_name] * count
    per_image = TIER_CREDITS[resolution]
    mode = inputs.get("generation_mode")
    if mode == "quality" or (mode is None and resolution != "1k"):
        per_image += QUALITY_SURCHARGE
    if inputs.get("face_reference"):
        per_image += FACE_REFERENCE_SURCHARGE
    return per_image * count


# --- Durations: FASHN's documented ranges, and what options add ------------------------------------

DURATIONS: dict[str, tuple[float, float, float, float]] = {
    # model: (fastest, usual from, usual to, slowest) in seconds, from fashn-models.md where published
    "tryon-max": (20, 30, 50, 120),
    "product-to-model": (20, 30, 50, 120),
    "face-to-model": (20, 30, 50, 120),
    "edit": (20, 30, 50, 120),
    "model-create": (10, 20, 40, 120),
    "model-swap": (10, 20, 40, 120),
    "reframe": (10, 15, 30, 60),
    "background-change": (10, 15, 30, 60),
    "packshot": (15, 20, 40, 90),
    "background-remove": (3, 4, 8, 15),
}
TRYON_V1_6_SECONDS: dict[str, tuple[float, float]] = {
    "performance": (4.5, 5.5),
    "balanced": (7.0, 9.0),
    "quality": (12.0, 17.0),
}
VIDEO_SECONDS: dict[str, float] = {"480p": 40.0, "720p": 60.0, "1080p": 90.0}
"""A 5 s clip's usual time by resolution; 10 s clips take twice as long."""


def typical_seconds(model_name: str, inputs: Mapping[str, Any]) -> float:
    """How long one prediction usually takes (the middle of its usual range, plus what options add):
    where polling starts looking."""
    if model_name == "tryon-v1.6":
        low, high = TRYON_V1_6_SECONDS[str(inputs.get("mode") or "balanced")]
        return (low + high) / 2
    if model_name == "image-to-video":
        seconds = VIDEO_SECONDS[str(inputs.get("resolution") or DEFAULT_VIDEO_RESOLUTION)]
        return seconds * (2 if inputs.get("duration") == 10 else 1)
    _, usual_from, usual_to, _ = DURATIONS[model_name]
    seconds = (usual_from + usual_to) / 2
    if inputs.get("generation_mode") == "quality":
        seconds += 15
    elif inputs.get("generation_mode") == "fast":
        seconds -= 5
    if inputs.get("resolution") == "4k":
        seconds += 15
    if inputs.get("face_reference"):
        seconds += 25  # FASHN: a face reference adds roughly 20-30 s
    return seconds + 5 * (int(inputs.get("num_images") or 1) - 1)


def _image(purpose: str) -> str:
    return f"{purpose} {IMAGE_REFERENCE}"


# Fields shared by many models, with one wording everywhere.
OutputFormatField = Annotated[
    OutputFormat | None,
    Field(
        description="Output file format: 'png' (best quality, larger) or 'jpeg' (smaller, slightly "
        "faster). FASHN's default is png. No effect on cost."
    ),
]
ReturnBase64Field = Annotated[
    bool | None,
    Field(
        description="true: FASHN returns the result inline as base64 and does not keep it on its CDN "
        "(more private; FASHN's copy expires after 60 minutes instead of 72 hours). callsheet saves the "
        "output file either way. Default false. No effect on cost."
    ),
]
SeedField = Annotated[
    int | None,
    Field(
        ge=0,
        le=2**32 - 1,
        description="Random seed, 0 to 4294967295. The same seed with the same inputs reproduces a "
        "result; change it to get a different take. Omit for FASHN's default. No effect on cost.",
    ),
]
NumImagesField = Annotated[
    int | None,
    Field(
        ge=1,
        le=4,
        description="How many images to generate in this run, 1-4 (default 1). Cost is per image, so "
        "it multiplies the credits; several takes at once raise the chance of a keeper.",
    ),
]
ResolutionField = Annotated[
    Resolution | None,
    Field(
        description="Output size: '1k' (~1 MP, default), '2k' (~4 MP, good for PDP zoom) or '4k' "
        "(~16 MP, print). Cost per image: 1 credit at 1k, 2 at 2k, 4 at 4k; higher is slower."
    ),
]
GenerationModeField = Annotated[
    GenerationMode | None,
    Field(
        description="'fast' (quickest, cheapest), 'balanced' or 'quality' (most detailed and realistic, "
        "slower, +1 credit per image). Omitted: FASHN chooses, and bills like 'quality' at 2k/4k "
        "(callsheet estimates it that way)."
    ),
]
AspectRatioField = Annotated[
    AspectRatio | None,
    Field(
        description="Output aspect ratio (width:height): one of 21:9, 1:1, 4:3, 3:2, 2:3, 5:4, 4:5, "
        "3:4, 16:9, 9:16. Omit to keep the input image's proportions. No effect on cost."
    ),
]
FaceReferenceModeField = Annotated[
    FaceReferenceMode | None,
    Field(
        description="How face_reference is applied: 'match_base' adapts the reference face to the "
        "image's own pose, style and lighting; 'match_reference' keeps the reference face (and its "
        "expression) as close as possible. Only used with face_reference. No effect on cost."
    ),
]


class FashnInputs(ProviderInputs):
    """Inputs of one FASHN model; unknown fields are refused."""


class TryonMaxInputs(FashnInputs):
    model_image: ImageRef = Field(
        description=_image(
            "Photo of the person who will wear the product; their identity, pose and styling are kept."
        )
    )
    product_image: ImageRef = Field(
        description=_image(
            "Photo of the product to put on the person: garment, shoes, hat, jewelry, bag or other "
            "wearable item (flat-lay, ghost mannequin or on another model)."
        )
    )
    prompt: str | None = Field(
        default=None,
        description="Optional short instruction on how the product is worn, e.g. 'tuck in shirt', "
        "'roll up sleeves', 'open jacket', 'remove scarf'. No effect on cost.",
    )
    resolution: Resolution | None = Field(
        default=None,
        description="Output size: '1k' (~1 MP, default), '2k' (~4 MP) or '4k' (~16 MP). Cost per image: "
        "2 credits at 1k, 3 at 2k, 5 at 4k; 4k is slower.",
    )
    generation_mode: Literal["balanced", "quality"] | None = Field(
        default=None,
        description="'balanced' or 'quality' (most detailed, takes about 20 s longer). Omit for FASHN's "
        "default. FASHN's published per-image price depends on resolution only; callsheet's estimate "
        "adds no credits for 'quality'.",
    )
    num_images: int | None = Field(
        default=None,
        ge=1,
        le=4,
        description="How many images to generate, 1-4 (default 1). Each image costs 2/3/5 credits "
        "(1k/2k/4k), so this multiplies the cost.",
    )
    aspect_ratio: AspectRatioField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


LEGACY_TRYON = "Documented for FASHN's original try-on endpoint; v1.6 may ignore it. No effect on cost."


class TryonV16Inputs(FashnInputs):
    model_image: ImageRef = Field(description=_image("Photo of the person who will wear the garment."))
    garment_image: ImageRef = Field(
        description=_image(
            "Photo of the clothing item to try on: flat-lay, ghost mannequin or worn by another model."
        )
    )
    category: Literal["auto", "tops", "bottoms", "one-pieces"] | None = Field(
        default=None,
        description="Garment type: 'tops', 'bottoms', 'one-pieces' or 'auto' (FASHN detects it; the "
        "default). Set it when auto picks the wrong part of the outfit. No effect on cost.",
    )
    garment_photo_type: Literal["auto", "flat-lay", "model"] | None = Field(
        default=None,
        description="Kind of garment photo: 'flat-lay' (flat-lay or ghost mannequin), 'model' (worn by "
        "a person) or 'auto' (detect; the default). No effect on cost.",
    )
    mode: Literal["performance", "balanced", "quality"] | None = Field(
        default=None,
        description="Speed/quality trade-off: 'performance' (~5 s, for quick tests), 'balanced' (~8 s, "
        "the default) or 'quality' (~12-17 s, for final images). Same cost in every mode.",
    )
    moderation_level: Literal["conservative", "permissive", "none"] | None = Field(
        default=None,
        description="Content moderation of the garment image: 'conservative' (also blocks underwear, "
        "swimwear, revealing outfits), 'permissive' (allows them, blocks explicit nudity; FASHN's "
        "default) or 'none'. The user stays responsible for lawful, consented use. No effect on cost.",
    )
    num_samples: int | None = Field(
        default=None,
        ge=1,
        le=4,
        description="How many images to generate, 1-4 (default 1). 1 credit per sample, so this "
        "multiplies the cost.",
    )
    segmentation_free: bool | None = Field(
        default=None,
        description="true: fit the garment without segmenting the original clothes first (better for "
        "bulky garments, keeps body shape and skin). Set false if the original garment is not fully "
        "replaced. No effect on cost.",
    )
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None
    # Options of the original try-on endpoint (FASHN's endpoints page); accepted for compatibility.
    long_top: bool | None = Field(
        default=None,
        description="true: tune for long tops such as longline shirts, tunics and coats. Default false. "
        + LEGACY_TRYON,
    )
    nsfw_filter: bool | None = Field(
        default=None,
        description="Run FASHN's NSFW filter on the inputs (default true); superseded by moderation_level. "
        + LEGACY_TRYON,
    )
    cover_feet: bool | None = Field(
        default=None,
        description="true: let long garments cover or change the feet and shoes. Default false. "
        + LEGACY_TRYON,
    )
    adjust_hands: bool | None = Field(
        default=None,
        description="true: allow changing the hands (remove gloves, take hands out of pockets, let long "
        "sleeves cover them). Default false. " + LEGACY_TRYON,
    )
    restore_background: bool | None = Field(
        default=None,
        description="true: extra steps to keep a complex original background (slower). Default false. "
        + LEGACY_TRYON,
    )
    restore_clothes: bool | None = Field(
        default=None,
        description="true: extra steps to keep the clothes that are not swapped (e.g. keep the pants "
        "when trying on a top). Default false. " + LEGACY_TRYON,
    )
    guidance_scale: float | None = Field(
        default=None,
        ge=1.5,
        le=3.0,
        description="1.5-3 (default 2): higher keeps more garment detail but risks oversaturated "
        "colours. " + LEGACY_TRYON,
    )
    timesteps: int | None = Field(
        default=None,
        ge=10,
        le=50,
        description="Diffusion steps, 10-50 (default 50); fewer is faster for simple try-ons. "
        + LEGACY_TRYON,
    )


class ProductToModelInputs(FashnInputs):
    product_image: ImageRef = Field(
        description=_image(
            "Photo of the wearable product (clothing, shoes, hat, jewelry, bag, accessory) to show on a "
            "person."
        )
    )
    prompt: str | None = Field(
        default=None,
        description="Optional direction for the person, styling and scene, e.g. 'man with tattoos', "
        "'tucked-in', 'studio background', 'professional office setting'. No effect on cost.",
    )
    image_prompt: ImageRef | None = Field(
        default=None,
        description=_image(
            "Optional inspiration image guiding pose, environment and lighting; the product stays the "
            "focus. No effect on cost."
        ),
    )
    face_reference: ImageRef | None = Field(
        default=None,
        description=_image(
            "Optional face photo: the generated person will look like this person. Adds 3 credits per "
            "image and about 25 s."
        ),
    )
    face_reference_mode: FaceReferenceModeField = None
    background_reference: ImageRef | None = Field(
        default=None,
        description=_image(
            "Optional photo of the background or location to place the person in. No effect on cost."
        ),
    )
    model_image: ImageRef | None = Field(
        default=None,
        description=_image(
            "Deprecated try-on mode: a photo of an existing person to dress in the product (prefer "
            "fashn_tryon_max for that). Cannot be combined with image_prompt, face_reference or "
            "background_reference; aspect_ratio is then ignored. No effect on cost."
        ),
    )
    aspect_ratio: AspectRatio | None = Field(
        default=None,
        description="Output aspect ratio (width:height): one of 21:9, 1:1, 4:3, 3:2, 2:3, 5:4, 4:5, 3:4, "
        "16:9, 9:16. Default: the product image's ratio; ignored with model_image. No effect on cost.",
    )
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class FaceToModelInputs(FashnInputs):
    face_image: ImageRef = Field(
        description=_image(
            "Headshot or selfie whose face, hair and skin tone become an upper-body model photo."
        )
    )
    prompt: str | None = Field(
        default=None,
        description="Optional body shape or styling guidance, e.g. 'athletic build', 'curvy figure', "
        "'slender frame'. Default: inferred from the face. No effect on cost.",
    )
    aspect_ratio: AspectRatio | None = Field(
        default=None,
        description="Output aspect ratio (width:height); the image is extended downwards. Vertical "
        "ratios work best: 1:1, 4:5, 3:4, 2:3 (default), 9:16; FASHN's SDK also lists 21:9, 4:3, 3:2, "
        "5:4, 16:9. No effect on cost.",
    )
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormat | None = Field(
        default=None,
        description="Output file format: 'png' (original quality) or 'jpeg' (smaller; FASHN's default "
        "here). No effect on cost.",
    )
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class ModelCreateInputs(FashnInputs):
    prompt: str = Field(
        description="Description of the fashion model to create: look, age, hair, clothing, pose and "
        "scene, e.g. 'full body shot, woman in a white t-shirt and dark blue biker shorts, studio'."
    )
    image_reference: ImageRef | None = Field(
        default=None,
        description=_image(
            "Optional image guiding composition and pose (say in the prompt whether to copy just the "
            "pose or the exact silhouette). The output takes its aspect ratio unless aspect_ratio is "
            "set. No effect on cost."
        ),
    )
    face_reference: ImageRef | None = Field(
        default=None,
        description=_image(
            "Optional face photo that keeps one identity across generations (model consistency without "
            "training). Adds 3 credits per image and about 25 s; FASHN may accept it only at 1k."
        ),
    )
    face_reference_mode: FaceReferenceModeField = None
    aspect_ratio: AspectRatio | None = Field(
        default=None,
        description="Output aspect ratio (width:height): one of 21:9, 1:1, 4:3, 3:2, 2:3, 5:4, 4:5, 3:4, "
        "16:9, 9:16. Overrides image_reference's proportions. 2:3 or 3:4 suit full-body fashion. "
        "No effect on cost.",
    )
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class ModelSwapInputs(FashnInputs):
    model_image: ImageRef = Field(
        description=_image(
            "Photo of a model whose outfit and pose are kept while the person (face, skin, hair) is replaced."
        )
    )
    prompt: str | None = Field(
        default=None,
        description="Who the new person should be: ethnicity, facial features, hair colour, other "
        "physical traits. Default: empty (a random new identity). No effect on cost.",
    )
    face_reference: ImageRef | None = Field(
        default=None,
        description=_image(
            "Optional face photo: the new person will look like this person. Adds 3 credits per image "
            "and about 25 s."
        ),
    )
    face_reference_mode: FaceReferenceModeField = None
    aspect_ratio: AspectRatioField = None
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class EditInputs(FashnInputs):
    image: ImageRef = Field(description=_image("Image to edit; its composition and identity are preserved."))
    prompt: str = Field(
        description="The edit to make, specific and in plain words, e.g. 'change the dress to red', "
        "'add sunglasses', 'make the background a beach sunset', 'turn the model slightly to the left'."
    )
    mask: ImageRef | None = Field(
        default=None,
        description=_image(
            "Optional black-and-white mask the size of the image: white areas are edited, black areas "
            "stay unchanged (for precise local edits). No effect on cost."
        ),
    )
    image_context: ImageRef | None = Field(
        default=None,
        description=_image(
            "Optional context image that guides the edit, e.g. the accessory or fabric to add. "
            "No effect on cost."
        ),
    )
    aspect_ratio: AspectRatioField = None
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class ReframeInputs(FashnInputs):
    image: ImageRef = Field(
        description=_image(
            "Image to reframe. FASHN decides per image whether to expand (outpaint) or crop to reach the "
            "target ratio."
        )
    )
    aspect_ratio: AspectRatio = Field(
        description="Target aspect ratio (width:height): one of 21:9, 1:1, 4:3, 3:2, 2:3, 5:4, 4:5, 3:4, "
        "16:9, 9:16. It must differ from the source's ratio (FASHN refuses a change under 2%). "
        "No effect on cost."
    )
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class BackgroundChangeInputs(FashnInputs):
    image: ImageRef = Field(
        description=_image(
            "Image whose foreground subject is kept (detected automatically) while the background is "
            "replaced."
        )
    )
    prompt: str = Field(
        description="The new background, e.g. 'beach sunset', 'modern office with large windows', "
        "'forest clearing'; it is generated and harmonised with the subject's light."
    )
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class BackgroundRemoveInputs(FashnInputs):
    image: ImageRef = Field(
        description=_image("Image whose main subject is cut out onto a transparent background (PNG).")
    )
    return_base64: ReturnBase64Field = None


class ImageToVideoInputs(FashnInputs):
    image: ImageRef = Field(description=_image("Image to animate; it becomes the first frame of the clip."))
    prompt: str | None = Field(
        default=None,
        description="Optional motion guidance. Usually best left empty so FASHN plans the motion; if "
        "used, keep it short and concrete, e.g. 'raising hand to touch face'. No effect on cost.",
    )
    negative_prompt: str | None = Field(
        default=None,
        description="Optional motion or framing to avoid, e.g. 'camera shake, zoom'. No effect on cost.",
    )
    end_image: ImageRef | None = Field(
        default=None,
        description=_image(
            "Optional last frame: the clip moves smoothly from image to end_image. Only with resolution "
            "'1080p' (the default). No effect on cost."
        ),
    )
    duration: Literal[5, 10] | None = Field(
        default=None,
        description="Clip length in seconds: 5 (default) or 10. 10 s doubles the credits and takes longer.",
    )
    resolution: VideoResolution | None = Field(
        default=None,
        description="Video resolution: '480p' (1 credit), '720p' (3 credits) or '1080p' (6 credits, "
        "the default); doubled for 10 s. Higher takes longer.",
    )
    seed: SeedField = None

    @model_validator(mode="after")
    def _end_image_needs_1080p(self) -> ImageToVideoInputs:
        if self.end_image is not None and self.resolution not in (None, "1080p"):
            raise ValueError("end_image works only with resolution '1080p': drop resolution or end_image")
        return self


class PackshotInputs(FashnInputs):
    product_image: ImageRef = Field(
        description=_image(
            "Product photo to turn into a clean commercial packshot; the product's identity and detail "
            "are kept."
        )
    )
    prompt: str | None = Field(
        default=None,
        description="Optional packshot styling, e.g. 'clean white background flat-lay', 'soft studio "
        "light on a beige pedestal', 'on a marble surface'. Empty: a sensible commercial default. "
        "No effect on cost.",
    )
    image_context: ImageRef | None = Field(
        default=None,
        description=_image(
            "Optional style reference for staging, background and lighting; it does not override the "
            "product. No effect on cost."
        ),
    )
    aspect_ratio: AspectRatioField = None
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


def _spec(operation: str, route: str, inputs: type[FashnInputs], **text: Any) -> OperationSpec:
    """One model as an operation, priced and timed from the tables above by its model name."""
    return from_tables(
        operation, inputs, key=route, credits=credits, seconds=typical_seconds, route=route, **text
    )


TIER_PRICE = (
    "1 credit per image at 1k, 2 at 2k, 4 at 4k; +1 per image in quality mode (and when generation_mode "
    "is omitted at 2k/4k)"
)
FACE_PRICE = "; +3 per image with face_reference"
ESTIMATE = " (estimate: FASHN publishes no fixed price for this model)"

_MODELS = (
    _spec(
        operation="tryon_max",
        route="tryon-max",
        inputs=TryonMaxInputs,
        title="FASHN Try-On Max",
        description=(
            "Put a product (garment, shoes, hat, jewelry, bag) onto a photo of a person with the highest "
            "fidelity: FASHN's premium try-on for publishable PDP, catalog and campaign images. Keeps the "
            "person's identity, pose and styling. Typically 20-120 s (about 40 s). Cost: 2 credits per "
            "image at 1k, 3 at 2k, 5 at 4k, times num_images. Need a person first? Cast one with "
            "fashn_model_create (or fashn_face_to_model from a headshot). For fast, cheap previews use "
            "fashn_tryon_v1_6."
        ),
        price_text="2 credits per image at 1k, 3 at 2k, 5 at 4k",
    ),
    _spec(
        operation="tryon_v1_6",
        route="tryon-v1.6",
        inputs=TryonV16Inputs,
        title="FASHN Virtual Try-On v1.6",
        description=(
            "Fast virtual try-on of one clothing item (top, bottoms or one-piece) on a photo of a person. "
            "Takes 5 s (performance), 8 s (balanced) or 12-17 s (quality). Cost: 1 credit per sample. "
            "Good for quick tests of model/garment pairs; switch to fashn_tryon_max for final, "
            "publishable images or for shoes and accessories."
        ),
        price_text="1 credit per sample",
    ),
    _spec(
        operation="product_to_model",
        route="product-to-model",
        inputs=ProductToModelInputs,
        title="FASHN Product to Model",
        description=(
            "Turn a product photo into an on-model photo: FASHN generates a new person wearing the "
            "product, optionally guided by a prompt, an inspiration image, a background photo or a face "
            "reference. Typically 20-120 s (about 40 s). Cost: 1 credit per image at 1k, 2 at 2k, 4 at "
            "4k, +1 in quality mode, +3 per image with face_reference. Use face_reference (e.g. an output "
            "of fashn_model_create) to keep one model across a range; to dress an existing person use "
            "fashn_tryon_max."
        ),
        price_text=TIER_PRICE + FACE_PRICE,
    ),
    _spec(
        operation="face_to_model",
        route="face-to-model",
        inputs=FaceToModelInputs,
        title="FASHN Face to Model",
        description=(
            "Turn a headshot or selfie into a try-on-ready upper-body model photo that keeps the face. "
            "Typically 20-120 s (about 30 s). Cost: 1 credit per image at 1k, 2 at 2k, 4 at 4k, +1 in "
            "quality mode. Chain its output into fashn_tryon_max or fashn_tryon_v1_6 as model_image."
        ),
        price_text=TIER_PRICE,
    ),
    _spec(
        operation="model_create",
        route="model-create",
        inputs=ModelCreateInputs,
        title="FASHN Model Create",
        description=(
            "Cast a fashion model from a text prompt, optionally guided by a pose/composition reference "
            "image and a face reference for a consistent identity. Typically 10-120 s (about 30 s). Cost: "
            "1 credit per image at 1k, 2 at 2k, 4 at 4k, +1 in quality mode, +3 per image with "
            "face_reference. Usually the first step of a shoot: its output becomes model_image for "
            "fashn_tryon_max, fashn_model_swap or fashn_image_to_video."
        ),
        price_text=TIER_PRICE + FACE_PRICE,
    ),
    _spec(
        operation="model_swap",
        route="model-swap",
        inputs=ModelSwapInputs,
        title="FASHN Model Swap",
        description=(
            "Replace the person in a fashion photo (face, skin tone, hair) while keeping the outfit and "
            "pose exactly, e.g. to show a look on diverse models or to localise a campaign. Typically "
            "10-120 s (about 30 s). Cost: 1 credit per image at 1k, 2 at 2k, 4 at 4k, +1 in quality mode, "
            "+3 per image with face_reference."
        ),
        price_text=TIER_PRICE + FACE_PRICE,
    ),
    _spec(
        operation="edit",
        route="edit",
        inputs=EditInputs,
        title="FASHN Edit",
        description=(
            "Edit an image with a plain-language instruction: restyle, change a colour, add an accessory, "
            "adjust the view or fix details while keeping identity and product fidelity; a mask limits "
            "the edit to an area. Typically 20-120 s (about 30 s). Cost: 1 credit per image at 1k, 2 at "
            "2k, 4 at 4k, +1 in quality mode. Use it to polish outputs of the other fashn_ tools."
        ),
        price_text=TIER_PRICE,
    ),
    _spec(
        operation="reframe",
        route="reframe",
        inputs=ReframeInputs,
        title="FASHN Reframe",
        description=(
            "Change an image's aspect ratio by intelligently expanding (outpainting) or cropping, e.g. "
            "4:5 for Instagram, 9:16 for stories, 16:9 for banners. About 30 s. Cost (estimate): 1 credit "
            "per image at 1k, 2 at 2k, 4 at 4k, +1 in quality mode. Use it to cut channel formats from a "
            "hero shot (e.g. a fashn_tryon_max output)."
        ),
        price_text=TIER_PRICE + ESTIMATE,
    ),
    _spec(
        operation="background_change",
        route="background-change",
        inputs=BackgroundChangeInputs,
        title="FASHN Background Change",
        description=(
            "Replace an image's background with one described in a prompt, keeping the subject and "
            "harmonising the light. About 30 s. Cost (estimate): 1 credit per image at 1k, 2 at 2k, 4 at "
            "4k, +1 in quality mode. Use it to place on-model shots in locations; for a transparent "
            "cut-out use fashn_background_remove."
        ),
        price_text=TIER_PRICE + ESTIMATE,
    ),
    _spec(
        operation="background_remove",
        route="background-remove",
        inputs=BackgroundRemoveInputs,
        title="FASHN Background Remove",
        description=(
            "Cut the main subject out onto a transparent background (PNG), e.g. for marketplaces or "
            "compositing. About 15 s. Cost (estimate): 1 credit per image."
        ),
        price_text="1 credit per image" + ESTIMATE,
    ),
    _spec(
        operation="image_to_video",
        route="image-to-video",
        inputs=ImageToVideoInputs,
        title="FASHN Image to Video",
        description=(
            "Animate one image into a short fashion clip (MP4) with tasteful camera work and model "
            "movement; optionally ending on end_image. 5 or 10 s long; takes from about a minute to "
            "several minutes (longer for 10 s and 1080p). Cost: 1 credit at 480p, 3 at 720p, 6 at 1080p "
            "(the default), doubled for 10 s. Animate a finished still, e.g. a fashn_tryon_max output."
        ),
        price_text="1 credit per video at 480p, 3 at 720p, 6 at 1080p (default); doubled for 10 s",
    ),
    _spec(
        operation="packshot",
        route="packshot",
        inputs=PackshotInputs,
        title="FASHN Packshot",
        description=(
            "Turn a product photo into a clean commercial packshot (studio-style product image), "
            "optionally styled by a prompt or a style reference image. About 30 s. Cost (estimate): "
            "1 credit per image at 1k, 2 at 2k, 4 at 4k, +1 in quality mode. Clean packshots also make "
            "better product_image inputs for fashn_product_to_model and fashn_tryon_max."
        ),
        price_text=TIER_PRICE + ESTIMATE,
    ),
)

OPERATIONS: dict[str, OperationSpec] = {spec.operation: spec for spec in _MODELS}
"""Every FASHN model, keyed by operation (the tool name without `fashn_`)."""
