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

IMAGE_REFERENCE = "Image reference."

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
    Field(description="png (default) or jpeg."),
]
ReturnBase64Field = Annotated[
    bool | None,
    Field(description="true: FASHN keeps no copy on its CDN (more private)."),
]
SeedField = Annotated[
    int | None,
    Field(
        ge=0,
        le=2**32 - 1,
        description="Same seed and inputs reproduce a result.",
    ),
]
NumImagesField = Annotated[
    int | None,
    Field(
        ge=1,
        le=4,
        description="Images to make (default 1); cost is per image.",
    ),
]
ResolutionField = Annotated[
    Resolution | None,
    Field(description="1k (default), 2k or 4k: 1/2/4 credits per image."),
]
GenerationModeField = Annotated[
    GenerationMode | None,
    Field(
        description="quality: most detail, +1 credit per image. Omitted: FASHN bills it as quality at 2k/4k."
    ),
]
AspectRatioField = Annotated[
    AspectRatio | None,
    Field(description="Default: the input image's ratio."),
]
FaceReferenceModeField = Annotated[
    FaceReferenceMode | None,
    Field(
        description="match_base adapts the face to the image's pose and light; match_reference keeps it "
        "closer."
    ),
]


class FashnInputs(ProviderInputs):
    """Inputs of one FASHN model; unknown fields are refused."""


class TryonMaxInputs(FashnInputs):
    model_image: ImageRef = Field(
        description=_image("The person who will wear the product (identity, pose and styling kept).")
    )
    product_image: ImageRef = Field(
        description=_image(
            "The product: garment, shoes, hat, jewelry or bag (flat-lay, ghost mannequin or worn)."
        )
    )
    prompt: str | None = Field(
        default=None,
        description="How it is worn, e.g. 'tuck in shirt', 'roll up sleeves', 'open jacket'.",
    )
    resolution: Resolution | None = Field(
        default=None,
        description="1k (default), 2k or 4k: 2/3/5 credits per image; 4k is slower.",
    )
    generation_mode: Literal["balanced", "quality"] | None = Field(
        default=None,
        description="quality: most detail, about 20 s longer (same price). Omit for FASHN's default.",
    )
    num_images: int | None = Field(
        default=None,
        ge=1,
        le=4,
        description="Images to make (default 1); cost is per image.",
    )
    aspect_ratio: AspectRatioField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class TryonV16Inputs(FashnInputs):
    model_image: ImageRef = Field(description=_image("The person who will wear the garment."))
    garment_image: ImageRef = Field(
        description=_image("The garment: flat-lay, ghost mannequin or worn by another model.")
    )
    category: Literal["auto", "tops", "bottoms", "one-pieces"] | None = Field(
        default=None,
        description="Part of the outfit to replace; auto (default) detects it.",
    )
    garment_photo_type: Literal["auto", "flat-lay", "model"] | None = Field(
        default=None,
        description="flat-lay (or ghost mannequin), model (worn) or auto (default).",
    )
    mode: Literal["performance", "balanced", "quality"] | None = Field(
        default=None,
        description="performance ~5 s, balanced ~8 s (default), quality ~12-17 s.",
    )
    moderation_level: Literal["conservative", "permissive", "none"] | None = Field(
        default=None,
        description="conservative also blocks underwear and swimwear; permissive (default) only nudity.",
    )
    num_samples: int | None = Field(
        default=None,
        ge=1,
        le=4,
        description="Images to make (default 1), 1 credit each.",
    )
    segmentation_free: bool | None = Field(
        default=None,
        description="true: fit without segmenting the old clothes (bulky garments).",
    )
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None
    # Options of the original try-on endpoint (FASHN's endpoints page); accepted for compatibility.
    long_top: bool | None = Field(
        default=None,
        description="Tune for longline tops and coats.",
    )
    nsfw_filter: bool | None = Field(
        default=None,
        description="FASHN's NSFW filter (default true).",
    )
    cover_feet: bool | None = Field(
        default=None,
        description="Let long garments cover the feet.",
    )
    adjust_hands: bool | None = Field(
        default=None,
        description="Allow changing hands (gloves, pockets, sleeves).",
    )
    restore_background: bool | None = Field(
        default=None,
        description="Keep a complex background (slower).",
    )
    restore_clothes: bool | None = Field(
        default=None,
        description="Keep the clothes not swapped.",
    )
    guidance_scale: float | None = Field(
        default=None,
        ge=1.5,
        le=3.0,
        description="Default 2; higher keeps detail, risks oversaturation.",
    )
    timesteps: int | None = Field(
        default=None,
        ge=10,
        le=50,
        description="Diffusion steps (default 50); fewer is faster.",
    )


class ProductToModelInputs(FashnInputs):
    product_image: ImageRef = Field(
        description=_image("The product (clothing, shoes, hat, jewelry, bag) to show on a person.")
    )
    prompt: str | None = Field(
        default=None,
        description="Person, styling and scene, e.g. 'man with tattoos', 'tucked-in', 'studio background'.",
    )
    image_prompt: ImageRef | None = Field(
        default=None,
        description=_image("Inspiration for pose, setting and light."),
    )
    face_reference: ImageRef | None = Field(
        default=None,
        description=_image("Face the person will have: +3 credits per image, about 25 s more."),
    )
    face_reference_mode: FaceReferenceModeField = None
    background_reference: ImageRef | None = Field(
        default=None,
        description=_image("Background or location to place the person in."),
    )
    model_image: ImageRef | None = Field(
        default=None,
        description=_image(
            "Deprecated: a person to dress (use fashn_tryon_max); not with image_prompt, "
            "face_reference or background_reference."
        ),
    )
    aspect_ratio: AspectRatio | None = Field(
        default=None,
        description="Default: the product image's ratio; ignored with model_image.",
    )
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class FaceToModelInputs(FashnInputs):
    face_image: ImageRef = Field(
        description=_image("Headshot or selfie whose face, hair and skin tone are kept.")
    )
    prompt: str | None = Field(
        default=None,
        description="Body shape or styling, e.g. 'athletic build'; default: inferred from the face.",
    )
    aspect_ratio: AspectRatio | None = Field(
        default=None,
        description="Vertical ratios work best; default 2:3 (the image is extended downwards).",
    )
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormat | None = Field(
        default=None,
        description="png or jpeg (FASHN's default here).",
    )
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class ModelCreateInputs(FashnInputs):
    prompt: str = Field(
        description="The model to cast: look, age, hair, clothing, pose, scene, e.g. 'full body shot, "
        "woman in a white t-shirt, studio'."
    )
    image_reference: ImageRef | None = Field(
        default=None,
        description=_image("Pose and composition guide; sets the ratio unless aspect_ratio is given."),
    )
    face_reference: ImageRef | None = Field(
        default=None,
        description=_image(
            "Face to keep across generations: +3 credits per image, about 25 s; FASHN may take it only at 1k."
        ),
    )
    face_reference_mode: FaceReferenceModeField = None
    aspect_ratio: AspectRatio | None = Field(
        default=None,
        description="Overrides image_reference's ratio; 2:3 or 3:4 suit full-body shots.",
    )
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class ModelSwapInputs(FashnInputs):
    model_image: ImageRef = Field(
        description=_image("Photo whose outfit and pose are kept while the person is replaced.")
    )
    prompt: str | None = Field(
        default=None,
        description="Who the new person is: ethnicity, features, hair; empty: a random identity.",
    )
    face_reference: ImageRef | None = Field(
        default=None,
        description=_image("Face the new person will have: +3 credits per image, about 25 s more."),
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
    image: ImageRef = Field(description=_image("Image to edit (composition and identity kept)."))
    prompt: str = Field(
        description="The edit, e.g. 'change the dress to red', 'add sunglasses', 'beach sunset background'."
    )
    mask: ImageRef | None = Field(
        default=None,
        description=_image("Black-and-white mask the size of the image: only white areas are edited."),
    )
    image_context: ImageRef | None = Field(
        default=None,
        description=_image("Guide for the edit, e.g. the accessory or fabric to add."),
    )
    aspect_ratio: AspectRatioField = None
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class ReframeInputs(FashnInputs):
    image: ImageRef = Field(description=_image("Image to expand (outpaint) or crop to the new ratio."))
    aspect_ratio: AspectRatio = Field(description="Must differ from the source's ratio by 2% or more.")
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class BackgroundChangeInputs(FashnInputs):
    image: ImageRef = Field(
        description=_image("Image whose subject is kept while the background is replaced.")
    )
    prompt: str = Field(
        description="The new background, e.g. 'beach sunset', 'modern office'; light is matched."
    )
    resolution: ResolutionField = None
    generation_mode: GenerationModeField = None
    num_images: NumImagesField = None
    output_format: OutputFormatField = None
    return_base64: ReturnBase64Field = None
    seed: SeedField = None


class BackgroundRemoveInputs(FashnInputs):
    image: ImageRef = Field(description=_image("Image whose subject is cut out (transparent PNG)."))
    return_base64: ReturnBase64Field = None


class ImageToVideoInputs(FashnInputs):
    image: ImageRef = Field(description=_image("Image to animate (the first frame)."))
    prompt: str | None = Field(
        default=None,
        description="Motion guidance; best left empty, else short, e.g. 'raising hand to touch face'.",
    )
    negative_prompt: str | None = Field(
        default=None,
        description="Motion or framing to avoid, e.g. 'camera shake, zoom'.",
    )
    end_image: ImageRef | None = Field(
        default=None,
        description=_image("Last frame to move to; only at 1080p."),
    )
    duration: Literal[5, 10] | None = Field(
        default=None,
        description="5 (default) or 10 seconds; 10 doubles the credits.",
    )
    resolution: VideoResolution | None = Field(
        default=None,
        description="480p/720p/1080p (default): 1/3/6 credits, doubled for 10 s.",
    )
    seed: SeedField = None

    @model_validator(mode="after")
    def _end_image_needs_1080p(self) -> ImageToVideoInputs:
        if self.end_image is not None and self.resolution not in (None, "1080p"):
            raise ValueError("end_image works only with resolution '1080p': drop resolution or end_image")
        return self


class PackshotInputs(FashnInputs):
    product_image: ImageRef = Field(
        description=_image("Product photo to turn into a packshot (identity and detail kept).")
    )
    prompt: str | None = Field(
        default=None,
        description="Styling, e.g. 'white background flat-lay', 'on a marble surface'; empty: a "
        "commercial default.",
    )
    image_context: ImageRef | None = Field(
        default=None,
        description=_image("Style reference for staging, background and light."),
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
            "Put a product (garment, shoes, hat, jewelry, bag) on a photo of a person at the highest "
            "fidelity, for publishable images; identity, pose and styling are kept. About 40 s (20-120). "
            "Cost: 2/3/5 credits per image at 1k/2k/4k. No person yet? Cast one with fashn_model_create "
            "or fashn_face_to_model. Cheap previews: fashn_tryon_v1_6."
        ),
        price_text="2 credits per image at 1k, 3 at 2k, 5 at 4k",
    ),
    _spec(
        operation="tryon_v1_6",
        route="tryon-v1.6",
        inputs=TryonV16Inputs,
        title="FASHN Virtual Try-On v1.6",
        description=(
            "Fast try-on of one clothing item (top, bottoms or one-piece) on a photo of a person: 5-17 s "
            "by mode. Cost: 1 credit per sample. For quick tests of model/garment pairs; use "
            "fashn_tryon_max for final images, shoes and accessories. long_top to timesteps are options "
            "of FASHN's original try-on, which v1.6 may ignore."
        ),
        price_text="1 credit per sample",
    ),
    _spec(
        operation="product_to_model",
        route="product-to-model",
        inputs=ProductToModelInputs,
        title="FASHN Product to Model",
        description=(
            "Turn a product photo into an on-model photo: a new person wears the product, optionally "
            "guided by a prompt, an inspiration image, a background or a face reference. About 40 s. "
            "Cost: 1/2/4 credits per image at 1k/2k/4k, +1 quality, +3 with face_reference. A "
            "face_reference (e.g. a fashn_model_create output) keeps one model across a range; to dress "
            "an existing person use fashn_tryon_max."
        ),
        price_text=TIER_PRICE + FACE_PRICE,
    ),
    _spec(
        operation="face_to_model",
        route="face-to-model",
        inputs=FaceToModelInputs,
        title="FASHN Face to Model",
        description=(
            "Turn a headshot or selfie into a try-on-ready upper-body model photo with the same face. "
            "About 30 s. Cost: 1/2/4 credits per image at 1k/2k/4k, +1 quality. Its output is a "
            "model_image for fashn_tryon_max or fashn_tryon_v1_6."
        ),
        price_text=TIER_PRICE,
    ),
    _spec(
        operation="model_create",
        route="model-create",
        inputs=ModelCreateInputs,
        title="FASHN Model Create",
        description=(
            "Cast a fashion model from a prompt, optionally guided by a pose reference and a face "
            "reference for a consistent identity. About 30 s. Cost: 1/2/4 credits per image at 1k/2k/4k, "
            "+1 quality, +3 with face_reference. Usually a shoot's first step: its output is the "
            "model_image of fashn_tryon_max, fashn_model_swap or fashn_image_to_video."
        ),
        price_text=TIER_PRICE + FACE_PRICE,
    ),
    _spec(
        operation="model_swap",
        route="model-swap",
        inputs=ModelSwapInputs,
        title="FASHN Model Swap",
        description=(
            "Replace the person in a fashion photo (face, skin tone, hair) keeping outfit and pose, e.g. "
            "to show a look on diverse models or localise a campaign. About 30 s. Cost: 1/2/4 credits per"
            " image at 1k/2k/4k, +1 quality, +3 with face_reference."
        ),
        price_text=TIER_PRICE + FACE_PRICE,
    ),
    _spec(
        operation="edit",
        route="edit",
        inputs=EditInputs,
        title="FASHN Edit",
        description=(
            "Edit an image with a plain-language instruction (restyle, recolour, add an accessory, fix "
            "details), keeping identity and product fidelity; a mask limits the area. About 30 s. Cost: "
            "1/2/4 credits per image at 1k/2k/4k, +1 quality. Polishes outputs of the other fashn_ tools."
        ),
        price_text=TIER_PRICE,
    ),
    _spec(
        operation="reframe",
        route="reframe",
        inputs=ReframeInputs,
        title="FASHN Reframe",
        description=(
            "Change an image's aspect ratio by outpainting or cropping, e.g. 4:5 feed, 9:16 stories, 16:9"
            " banners. About 30 s. Cost (estimate): 1/2/4 credits per image at 1k/2k/4k, +1 quality. Cuts"
            " channel formats from a hero shot."
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
            "matching the light. About 30 s. Cost (estimate): 1/2/4 credits per image at 1k/2k/4k, +1 "
            "quality. For a transparent cut-out use fashn_background_remove."
        ),
        price_text=TIER_PRICE + ESTIMATE,
    ),
    _spec(
        operation="background_remove",
        route="background-remove",
        inputs=BackgroundRemoveInputs,
        title="FASHN Background Remove",
        description=(
            "Cut the main subject out onto a transparent background (PNG), e.g. for marketplaces. About "
            "15 s. Cost (estimate): 1 credit per image."
        ),
        price_text="1 credit per image" + ESTIMATE,
    ),
    _spec(
        operation="image_to_video",
        route="image-to-video",
        inputs=ImageToVideoInputs,
        title="FASHN Image to Video",
        description=(
            "Animate an image into a 5 or 10 s fashion clip (MP4) with camera work and model movement, "
            "optionally ending on end_image. One to several minutes. Cost: 1/3/6 credits at "
            "480p/720p/1080p (default), doubled for 10 s."
        ),
        price_text="1 credit per video at 480p, 3 at 720p, 6 at 1080p (default); doubled for 10 s",
    ),
    _spec(
        operation="packshot",
        route="packshot",
        inputs=PackshotInputs,
        title="FASHN Packshot",
        description=(
            "Turn a product photo into a clean commercial packshot, optionally styled by a prompt or a "
            "style reference. About 30 s. Cost (estimate): 1/2/4 credits per image at 1k/2k/4k, +1 "
            "quality. Packshots make better product_image inputs for fashn_product_to_model and "
            "fashn_tryon_max."
        ),
        price_text=TIER_PRICE + ESTIMATE,
    ),
)

OPERATIONS: dict[str, OperationSpec] = {spec.operation: spec for spec in _MODELS}
"""Every FASHN model, keyed by operation (the tool name without `fashn_`)."""
