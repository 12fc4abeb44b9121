"""The model registry: every alias resolves, retired models go to successors, unknowns are 400."""

import pytest

from image_common.errors import UnknownModel
from image_service.registry import ALIASES, DEFAULT_MODEL, MODELS, family_of, resolve_model


@pytest.mark.parametrize(
    ("name", "model_id", "provider"),
    [
        (None, "gpt-image-1", "openai"),
        ("", "gpt-image-1", "openai"),
        ("openai", "gpt-image-1", "openai"),
        ("OpenAI", "gpt-image-1", "openai"),
        ("gpt-image-1.5", "gpt-image-1.5", "openai"),
        ("gpt-image-2", "gpt-image-2", "openai"),
        ("stability", "sd3.5-large", "stability"),
        ("sd3", "sd3.5-large", "stability"),
        ("core", "core", "stability"),
        ("ULTRA", "ultra", "stability"),
        ("flux", "flux-pro-1.1", "flux"),
        ("flux-kontext", "flux-kontext-pro", "flux"),
        ("gemini", "gemini-2.5-flash-image", "google"),
        ("grok", "grok-imagine-image", "xai"),
        ("  grok-imagine-image-quality ", "grok-imagine-image-quality", "xai"),
    ],
)
def test_names_and_aliases_resolve_to_one_concrete_model(name, model_id, provider):
    resolved = resolve_model(name)
    assert resolved.spec.id == model_id
    assert resolved.spec.provider == provider
    assert resolved.retired is None


@pytest.mark.parametrize(
    ("name", "retired", "successor"),
    [
        ("dall-e", "dall-e-3", "gpt-image-1"),
        ("dall-e-3", "dall-e-3", "gpt-image-1"),
        ("dall-e-2", "dall-e-2", "gpt-image-1"),
        ("imagen", "imagen-4.0-generate-001", "gemini-2.5-flash-image"),
        ("imagen-3", "imagen-3.0-generate-002", "gemini-2.5-flash-image"),
        ("grok-2-image", "grok-2-image", "grok-imagine-image"),
        ("gemini-2.0-flash-preview-image-generation",
         "gemini-2.0-flash-preview-image-generation", "gemini-2.5-flash-image"),
    ],
)  # fmt: skip
def test_retired_models_resolve_to_their_successor(name, retired, successor):
    resolved = resolve_model(name)
    assert resolved.spec.id == successor
    assert resolved.spec.status != "retired"
    assert resolved.retired is not None and resolved.retired.id == retired


def test_a_deployment_can_keep_serving_a_retired_model():
    resolved = resolve_model("dall-e-3", enabled_retired=frozenset({"dall-e-3"}))
    assert resolved.spec.id == "dall-e-3" and resolved.retired is None


@pytest.mark.parametrize(
    ("name", "provider", "must_list"),
    [
        ("flux-schnell-9", "flux", "flux-dev"),
        ("gpt-image-9", "openai", "gpt-image-1"),
        ("sdxl-turbo", "stability", "sd3.5-large"),
        ("midjourney", None, "grok-imagine-image"),
    ],
)
def test_unknown_model_is_a_400_listing_accepted_names(name, provider, must_list):
    with pytest.raises(UnknownModel) as caught:
        resolve_model(name)
    error = caught.value
    assert error.status == 400 and error.type == "unknown_model"
    assert must_list in error.details["accepted_models"]
    assert must_list in error.message
    if provider:  # a known family lists only its own models: no silent cross-provider billing
        assert all(
            family_of(n) == provider or n in ALIASES for n in error.details["accepted_models"]
        )


def test_registry_is_consistent():
    assert MODELS[DEFAULT_MODEL].status == "active"
    for alias, target in ALIASES.items():
        assert target in MODELS, alias
        assert family_of(alias) == MODELS[target].provider, alias
    for spec in MODELS.values():
        assert family_of(spec.id) == spec.provider, spec.id
        if spec.status == "retired":
            assert spec.successor and MODELS[spec.successor].status != "retired", spec.id
        caps = spec.capabilities
        assert caps.max_images_per_call >= 1
        assert bool(caps.sizes) + bool(caps.size_rule) + bool(caps.aspect_ratios) <= 1, spec.id


def test_pricing_lookup_prefers_the_most_specific_entry():
    pricing = MODELS["gpt-image-1"].pricing
    assert pricing.per_image(quality="high", size="1536x1024") == 0.25
    assert pricing.per_image(quality="high", size="1024x1024") == 0.167
    assert MODELS["grok-imagine-image-quality"].pricing.per_image(quality=None, size=None) is None
