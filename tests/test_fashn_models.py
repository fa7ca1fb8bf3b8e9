"""FASHN's model table: names, typed inputs, prices and durations."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from server.providers.base import image_fields
from server.providers.fashn.operations import (
    IMAGE_REFERENCE,
    OPERATIONS,
    EditInputs,
    FashnInputs,
    ImageToVideoInputs,
    ModelCreateInputs,
    ProductToModelInputs,
    TryonMaxInputs,
    TryonV16Inputs,
)

EXPECTED_NAMES = {
    "tryon_max": "tryon-max",
    "tryon_v1_6": "tryon-v1.6",
    "product_to_model": "product-to-model",
    "face_to_model": "face-to-model",
    "model_create": "model-create",
    "model_swap": "model-swap",
    "edit": "edit",
    "reframe": "reframe",
    "background_change": "background-change",
    "background_remove": "background-remove",
    "image_to_video": "image-to-video",
    "packshot": "packshot",
}

IMG = "https://example.com/a.jpg"

# operation -> (minimal valid inputs, a field and a value it must refuse)
CASES: dict[str, tuple[dict[str, Any], str, Any]] = {
    "tryon_max": ({"model_image": IMG, "product_image": IMG}, "resolution", "8k"),
    "tryon_v1_6": ({"model_image": IMG, "garment_image": IMG}, "category", "shoes"),
    "product_to_model": ({"product_image": IMG}, "generation_mode", "turbo"),
    "face_to_model": ({"face_image": IMG}, "aspect_ratio", "7:3"),
    "model_create": ({"prompt": "editorial model"}, "face_reference_mode", "exact"),
    "model_swap": ({"model_image": IMG}, "output_format", "webp"),
    "edit": ({"image": IMG, "prompt": "make it red"}, "resolution", "1080p"),
    "reframe": ({"image": IMG, "aspect_ratio": "4:5"}, "aspect_ratio", "4:6"),
    "background_change": ({"image": IMG, "prompt": "beach"}, "generation_mode", "best"),
    "background_remove": ({"image": IMG}, "return_base64", "maybe"),
    "image_to_video": ({"image": IMG}, "duration", 7),
    "packshot": ({"product_image": IMG}, "num_images", 5),
}

REQUIRED = {
    "tryon_max": {"model_image", "product_image"},
    "tryon_v1_6": {"model_image", "garment_image"},
    "product_to_model": {"product_image"},
    "face_to_model": {"face_image"},
    "model_create": {"prompt"},
    "model_swap": {"model_image"},
    "edit": {"image", "prompt"},
    "reframe": {"image", "aspect_ratio"},
    "background_change": {"image", "prompt"},
    "background_remove": {"image"},
    "image_to_video": {"image"},
    "packshot": {"product_image"},
}


def test_all_twelve_operations_with_their_model_names() -> None:
    assert {op: m.route for op, m in OPERATIONS.items()} == EXPECTED_NAMES
    assert all(m.operation == op for op, m in OPERATIONS.items())


@pytest.mark.parametrize("operation", sorted(EXPECTED_NAMES))
def test_minimal_inputs_validate_and_send_only_what_was_set(operation: str) -> None:
    args, _, _ = CASES[operation]
    inputs = OPERATIONS[operation].inputs.model_validate(args)
    assert inputs.model_dump(exclude_none=True) == args


@pytest.mark.parametrize("operation", sorted(EXPECTED_NAMES))
def test_unknown_field_is_refused(operation: str) -> None:
    args, _, _ = CASES[operation]
    with pytest.raises(ValidationError, match="webhook_url"):
        OPERATIONS[operation].inputs.model_validate({**args, "webhook_url": "https://example.com/hook"})


@pytest.mark.parametrize("operation", sorted(EXPECTED_NAMES))
def test_bad_value_is_refused(operation: str) -> None:
    args, field, bad = CASES[operation]
    with pytest.raises(ValidationError, match=field):
        OPERATIONS[operation].inputs.model_validate({**args, field: bad})


@pytest.mark.parametrize("operation", sorted(EXPECTED_NAMES))
def test_required_fields_are_required_and_come_first(operation: str) -> None:
    fields = OPERATIONS[operation].inputs.model_fields
    required = [name for name, info in fields.items() if info.is_required()]
    assert set(required) == REQUIRED[operation]
    assert list(fields)[: len(required)] == required
    args, _, _ = CASES[operation]
    for name in required:
        with pytest.raises(ValidationError, match=name):
            OPERATIONS[operation].inputs.model_validate({k: v for k, v in args.items() if k != name})
    optional = [info for info in fields.values() if not info.is_required()]
    assert all(info.default is None for info in optional)


@pytest.mark.parametrize("operation", sorted(EXPECTED_NAMES))
def test_every_field_is_described_for_the_assistant(operation: str) -> None:
    model = OPERATIONS[operation]
    for name, info in model.inputs.model_fields.items():
        assert info.description and len(info.description) > 20, f"{operation}.{name}"
    for name in image_fields(model.inputs):
        description = model.inputs.model_fields[name].description
        assert description is not None and IMAGE_REFERENCE in description, f"{operation}.{name}"


@pytest.mark.parametrize("operation", sorted(EXPECTED_NAMES))
def test_image_fields_are_exactly_the_image_inputs(operation: str) -> None:
    model = OPERATIONS[operation]
    described_as_images = {
        name
        for name, info in model.inputs.model_fields.items()
        if info.description and IMAGE_REFERENCE in info.description
    }
    assert set(image_fields(model.inputs)) == described_as_images


@pytest.mark.parametrize("operation", sorted(EXPECTED_NAMES))
def test_descriptions_state_the_cost(operation: str) -> None:
    model = OPERATIONS[operation]
    assert "credit" in model.description
    assert "credit" in model.price_text
    assert model.title


def test_webhook_url_is_never_an_input() -> None:
    assert all("webhook_url" not in m.inputs.model_fields for m in OPERATIONS.values())


def _credits(operation: str, **args: Any) -> float | None:
    model = OPERATIONS[operation]
    return model.credits(model.inputs.model_validate(args))


def test_tryon_max_price() -> None:
    base = {"model_image": IMG, "product_image": IMG}
    assert _credits("tryon_max", **base) == 2
    assert _credits("tryon_max", **base, resolution="2k", num_images=2) == 6
    assert _credits("tryon_max", **base, resolution="4k", num_images=4) == 20


def test_tryon_v1_6_price_is_per_sample() -> None:
    base = {"model_image": IMG, "garment_image": IMG}
    assert _credits("tryon_v1_6", **base) == 1
    assert _credits("tryon_v1_6", **base, num_samples=3, mode="quality") == 3


def test_image_to_video_price() -> None:
    assert _credits("image_to_video", image=IMG) == 6  # 1080p, 5 s by default
    assert _credits("image_to_video", image=IMG, resolution="480p") == 1
    assert _credits("image_to_video", image=IMG, resolution="720p", duration=10) == 6
    assert _credits("image_to_video", image=IMG, resolution="1080p", duration=10) == 12


def test_tiered_price_with_quality_and_face_reference() -> None:
    assert _credits("model_create", prompt="p") == 1
    assert _credits("model_create", prompt="p", face_reference=IMG) == 4  # +3 with face_reference
    assert _credits("model_create", prompt="p", face_reference=IMG, num_images=2) == 8
    assert _credits("model_swap", model_image=IMG, face_reference=IMG) == 4
    assert _credits("product_to_model", product_image=IMG, face_reference=IMG) == 4
    assert _credits("product_to_model", product_image=IMG, resolution="4k", generation_mode="quality") == 5
    assert _credits("edit", image=IMG, prompt="p", resolution="2k", generation_mode="fast") == 2
    assert _credits("edit", image=IMG, prompt="p", resolution="2k") == 3  # omitted mode bills as quality
    assert _credits("face_to_model", face_image=IMG, generation_mode="quality", num_images=3) == 6


def test_unpublished_prices_are_labelled_estimates() -> None:
    for operation in ("reframe", "background_change", "background_remove", "packshot"):
        assert "estimate" in OPERATIONS[operation].price_text
    assert _credits("background_remove", image=IMG) == 1
    assert _credits("reframe", image=IMG, aspect_ratio="9:16", num_images=2) == 2
    assert _credits("packshot", product_image=IMG) == 1


@pytest.mark.parametrize("operation", sorted(EXPECTED_NAMES))
def test_typical_seconds_positive(operation: str) -> None:
    args, _, _ = CASES[operation]
    model = OPERATIONS[operation]
    assert model.seconds(model.inputs.model_validate(args)) > 0


def test_typical_seconds_follow_the_settings() -> None:
    tryon = OPERATIONS["tryon_v1_6"]
    base = {"model_image": IMG, "garment_image": IMG}
    seconds = [
        tryon.seconds(TryonV16Inputs.model_validate({**base, "mode": mode}))
        for mode in ("performance", "balanced", "quality")
    ]
    assert seconds == sorted(seconds) and seconds[0] == 5
    assert tryon.seconds(TryonV16Inputs.model_validate(base)) == 8
    assert OPERATIONS["tryon_max"].seconds(TryonMaxInputs(model_image=IMG, product_image=IMG)) == 40
    video = OPERATIONS["image_to_video"]
    short = video.seconds(ImageToVideoInputs(image=IMG, resolution="720p"))
    assert 60 <= short <= 120
    assert video.seconds(ImageToVideoInputs(image=IMG, resolution="720p", duration=10)) > short
    assert video.seconds(ImageToVideoInputs(image=IMG, resolution="1080p")) > short
    create = OPERATIONS["model_create"]
    assert create.seconds(ModelCreateInputs(prompt="p", face_reference=IMG)) > create.seconds(
        ModelCreateInputs(prompt="p")
    )


def test_ranges_are_enforced() -> None:
    with pytest.raises(ValidationError, match="num_samples"):
        TryonV16Inputs(model_image=IMG, garment_image=IMG, num_samples=0)
    with pytest.raises(ValidationError, match="seed"):
        EditInputs(image=IMG, prompt="p", seed=-1)
    with pytest.raises(ValidationError, match="seed"):
        EditInputs(image=IMG, prompt="p", seed=2**32)
    with pytest.raises(ValidationError, match="guidance_scale"):
        TryonV16Inputs(model_image=IMG, garment_image=IMG, guidance_scale=4)


def test_both_documented_forms_of_tryon_v1_6_are_accepted() -> None:
    # SDK/API reference: category "auto" and moderation_level; endpoints page: legacy v1 options.
    TryonV16Inputs(model_image=IMG, garment_image=IMG, category="auto", moderation_level="permissive")
    TryonV16Inputs(model_image=IMG, garment_image=IMG, category="tops", long_top=True, nsfw_filter=True)


def test_end_image_needs_1080p() -> None:
    ImageToVideoInputs(image=IMG, end_image=IMG)
    ImageToVideoInputs(image=IMG, end_image=IMG, resolution="1080p")
    with pytest.raises(ValidationError, match="1080p"):
        ImageToVideoInputs(image=IMG, end_image=IMG, resolution="720p")


def test_inputs_classes_share_the_base() -> None:
    for model in OPERATIONS.values():
        assert issubclass(model.inputs, FashnInputs)
        assert issubclass(model.inputs, BaseModel)
    assert ProductToModelInputs.model_config.get("extra") == "forbid"
