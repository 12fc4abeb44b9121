"""The one settings vocabulary fitted to each model: the mapping tables and every warning.

Pure: ``normalize_settings`` with the registry's real model entries, no I/O.
"""

from __future__ import annotations

import itertools

import pytest

from image_common.errors import InvalidRequest
from image_service.models import ImageSettings
from image_service.normalize import normalize_settings
from image_service.registry import MODELS, Capabilities, ModelSpec

PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgo="  # normalisation never decodes it


def fit(model_id: str, prompt: str = "a red fox", **asked):
    settings, warnings = normalize_settings(prompt, ImageSettings(**asked), MODELS[model_id])
    return settings, warnings


def by_setting(warnings) -> dict[str, list]:
    found: dict[str, list] = {}
    for w in warnings:
        found.setdefault(w.setting, []).append(w)
    return found


# --- fixed sizes (OpenAI) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "asked", "sent"),
    [
        ("gpt-image-1", {}, (1024, 1024)),
        ("gpt-image-1", {"width": 1024, "height": 1024}, (1024, 1024)),
        ("gpt-image-1", {"width": 1920, "height": 1080}, (1536, 1024)),  # landscape → landscape
        ("gpt-image-1", {"width": 1080, "height": 1920}, (1024, 1536)),  # portrait → portrait
        ("gpt-image-1", {"width": 300, "height": 300}, (1024, 1024)),  # square, only one
        ("gpt-image-1", {"aspect_ratio": "16:9"}, (1536, 1024)),
        ("gpt-image-1", {"aspect_ratio": "9:16"}, (1024, 1536)),
        ("gpt-image-1.5", {"width": 1536, "height": 1024}, (1536, 1024)),
        ("dall-e-3", {"width": 1920, "height": 1080}, (1792, 1024)),
        ("dall-e-3", {"width": 1000, "height": 1800}, (1024, 1792)),
        ("dall-e-2", {"width": 300, "height": 300}, (256, 256)),  # same ratio: nearest area
        ("dall-e-2", {"width": 600, "height": 500}, (512, 512)),
        ("dall-e-2", {}, (1024, 1024)),  # the first listed size is the default
    ],
)
def test_fixed_size_models_get_the_nearest_legal_size(model_id, asked, sent):
    settings, warnings = fit(model_id, **asked)
    assert (settings.width, settings.height) == sent
    assert settings.aspect_ratio is None and settings.resolution is None
    size_warnings = by_setting(warnings)
    if asked.get("width") and (asked["width"], asked["height"]) != sent:
        (warning,) = size_warnings["width/height"]
        assert warning.type == "adjusted-setting"
        assert f"{asked['width']}x{asked['height']}" in warning.message
        assert f"{sent[0]}x{sent[1]}" in warning.message
    elif asked.get("aspect_ratio"):
        (warning,) = size_warnings["aspect_ratio"]
        assert f"{sent[0]}x{sent[1]}" in warning.message
    else:
        assert not warnings


# --- free sizes within a rule (gpt-image-2: multiples of 16; Flux: multiples of 32) --------------


@pytest.mark.parametrize(
    ("model_id", "asked", "sent"),
    [
        ("gpt-image-2", {}, (1024, 1024)),
        ("gpt-image-2", {"width": 3840, "height": 2160}, (3840, 2160)),  # the maximum, as is
        ("gpt-image-2", {"width": 1920, "height": 1080}, (1920, 1088)),  # 1080 is not /16
        ("gpt-image-2", {"width": 4000, "height": 1000}, (3456, 1152)),  # 4:1 clamped to 3:1
        ("gpt-image-2", {"width": 256, "height": 256}, (816, 816)),  # raised to the minimum area
        ("gpt-image-2", {"width": 4096, "height": 4096}, (2880, 2880)),  # capped at 3840x2160 px
        ("gpt-image-2", {"aspect_ratio": "16:9"}, (1360, 768)),  # ~1 MP at the ratio
        ("flux-dev", {"width": 1024, "height": 768}, (1024, 768)),
        ("flux-dev", {"width": 1000, "height": 1000}, (992, 992)),  # multiples of 32
        ("flux-dev", {"width": 1920, "height": 1080}, (1440, 800)),  # long side ≤ 1440
        ("flux-dev", {"width": 100, "height": 100}, (256, 256)),  # short side ≥ 256
        ("flux-pro-1.1", {"aspect_ratio": "21:9"}, (1440, 608)),
    ],
)
def test_size_rule_models_snap_into_their_bounds(model_id, asked, sent):
    settings, warnings = fit(model_id, **asked)
    assert (settings.width, settings.height) == sent
    changed = asked.get("width") and (asked["width"], asked["height"]) != sent
    assert bool(by_setting(warnings).get("width/height")) == bool(changed)
    if asked.get("aspect_ratio"):
        assert "takes pixel sizes" in by_setting(warnings)["aspect_ratio"][0].message


@pytest.mark.parametrize("model_id", ["gpt-image-2", "flux-dev", "flux-pro-1.1"])
def test_every_size_a_caller_can_ask_lands_inside_the_rule(model_id):
    rule = MODELS[model_id].capabilities.size_rule
    for w, h in itertools.product(range(64, 8193, 173), range(64, 8193, 211)):
        settings, _ = fit(model_id, width=w, height=h)
        sw, sh = settings.width, settings.height
        assert sw % rule.multiple == 0 and sh % rule.multiple == 0, (w, h, sw, sh)
        assert rule.min_side <= min(sw, sh) and max(sw, sh) <= rule.max_side, (w, h, sw, sh)
        assert max(sw / sh, sh / sw) <= rule.max_ratio, (w, h, sw, sh)
        assert rule.min_pixels <= sw * sh, (w, h, sw, sh)
        assert not rule.max_pixels or sw * sh <= rule.max_pixels, (w, h, sw, sh)


# --- ratio-only models (Stability, Gemini, Imagen, xAI) -------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "asked", "ratio"),
    [
        ("sd3.5-large", {}, "1:1"),
        ("sd3.5-large", {"width": 1920, "height": 1080}, "16:9"),
        ("sd3.5-large", {"width": 1000, "height": 800}, "5:4"),
        ("core", {"width": 800, "height": 1000}, "4:5"),
        ("ultra", {"width": 5000, "height": 1000}, "21:9"),  # beyond the widest: the widest
        ("sd3.5-large", {"aspect_ratio": "4:3"}, "5:4"),  # not offered: the nearest
        ("sd3.5-large", {"aspect_ratio": "9:21"}, "9:21"),
        ("gemini-2.5-flash-image", {"aspect_ratio": "4:3"}, "4:3"),
        ("gemini-2.5-flash-image", {"width": 1536, "height": 1024}, "3:2"),
        ("gemini-2.5-flash-image", {"aspect_ratio": "9:21"}, "9:16"),
        ("imagen-4.0-generate-001", {"aspect_ratio": "21:9"}, "16:9"),
        ("imagen-4.0-generate-001", {"width": 1000, "height": 800}, "4:3"),
        ("grok-imagine-image", {"aspect_ratio": "21:9"}, "20:9"),
        ("grok-imagine-image", {"width": 2048, "height": 1024}, "2:1"),
        ("grok-imagine-image", {"aspect_ratio": "3:4"}, "3:4"),
    ],
)
def test_ratio_models_get_the_nearest_offered_ratio(model_id, asked, ratio):
    settings, warnings = fit(model_id, **asked)
    assert settings.aspect_ratio == ratio
    assert settings.width is None and settings.height is None  # pixels are never sent
    found = by_setting(warnings)
    if asked.get("width"):
        (warning,) = found["width/height"]
        assert "takes an aspect ratio, not pixels" in warning.message and ratio in warning.message
    elif asked.get("aspect_ratio") and asked["aspect_ratio"] != ratio:
        (warning,) = found["aspect_ratio"]
        assert f"does not offer {asked['aspect_ratio']}" in warning.message
        assert ratio in warning.message
    else:
        assert not warnings


@pytest.mark.parametrize(
    ("model_id", "asked", "tier"),
    [
        ("gemini-3-pro-image-preview", {"width": 1024, "height": 1024}, "1K"),
        ("gemini-3-pro-image-preview", {"width": 1025, "height": 800}, "2K"),
        ("gemini-3-pro-image-preview", {"width": 2048, "height": 1152}, "2K"),
        ("gemini-3-pro-image-preview", {"width": 3000, "height": 3000}, "4K"),
        ("gemini-3-pro-image-preview", {"width": 8000, "height": 6000}, "4K"),  # the largest
        ("gemini-3-pro-image-preview", {"aspect_ratio": "16:9"}, None),  # default size
        ("gemini-3.1-flash-image-preview", {"width": 4096, "height": 2304}, "4K"),
        ("gemini-2.5-flash-image", {"width": 2048, "height": 2048}, None),  # no tiers: none sent
        ("grok-imagine-image", {"width": 1024, "height": 768}, "1k"),
        ("grok-imagine-image", {"width": 1500, "height": 1000}, "2k"),
        ("grok-imagine-image", {"width": 4096, "height": 4096}, "2k"),
        ("sd3.5-large", {"width": 4096, "height": 4096}, None),
    ],
)
def test_resolution_tier_is_the_smallest_covering_the_long_side(model_id, asked, tier):
    settings, _ = fit(model_id, **asked)
    assert settings.resolution == tier
    assert settings.reported().get("resolution") == tier


def test_one_side_only_is_treated_as_square_with_a_warning():
    settings, warnings = fit("gpt-image-1", width=1536)
    assert (settings.width, settings.height) == (1024, 1024)
    messages = [w.message for w in by_setting(warnings)["width/height"]]
    assert "Only one side was given; treated as square." in messages


def test_aspect_ratio_beside_width_and_height_is_ignored_with_a_warning():
    settings, warnings = fit("sd3.5-large", width=1920, height=1080, aspect_ratio="1:1")
    assert settings.aspect_ratio == "16:9"
    (warning,) = by_setting(warnings)["aspect_ratio"]
    assert warning.type == "unsupported-setting" and "aspect_ratio was ignored" in warning.message


def test_a_model_with_no_size_setting_warns_about_any_size():
    bare = ModelSpec(id="bare-model", provider="xai", api="grok", capabilities=Capabilities())
    settings, warnings = normalize_settings("a fox", ImageSettings(width=512, height=512), bare)
    assert (settings.width, settings.aspect_ratio, settings.resolution) == (None, None, None)
    (warning,) = by_setting(warnings)["size"]
    assert warning.message == "bare-model has no size setting."


def test_grok_2_image_takes_no_size_so_it_is_reported_not_sent():
    settings, warnings = fit("grok-2-image", aspect_ratio="16:9", quality="high")
    assert settings.aspect_ratio is None and settings.quality is None
    assert set(by_setting(warnings)) == {"size", "quality"}


# --- image-to-image shapes ------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["gemini-2.5-flash-image", "grok-imagine-image", "ultra"])
def test_with_an_input_image_and_no_size_asked_the_output_keeps_the_input_shape(model_id):
    settings, warnings = fit(model_id, input_images=[PNG_DATA_URL])
    assert settings.aspect_ratio is None and settings.resolution is None
    assert not warnings


def test_an_asked_ratio_is_still_sent_with_an_input_image_where_the_api_takes_it():
    settings, warnings = fit("ultra", input_images=[PNG_DATA_URL], aspect_ratio="16:9")
    assert settings.aspect_ratio == "16:9" and not warnings


@pytest.mark.parametrize("asked", [{"aspect_ratio": "16:9"}, {"width": 1920, "height": 1080}])
def test_sd3_image_to_image_sends_no_ratio_and_says_so(asked):
    settings, warnings = fit("sd3.5-medium", input_images=[PNG_DATA_URL], **asked)
    assert settings.aspect_ratio is None and "aspect_ratio" not in settings.reported()
    (warning,) = warnings
    assert warning.type == "unsupported-setting"
    assert "keeps the input image's shape" in warning.message


# --- quality -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "asked", "sent"),
    [
        ("gpt-image-1", "high", "high"),
        ("gpt-image-1", "auto", "auto"),
        ("gpt-image-1", "standard", "medium"),
        ("gpt-image-1", "hd", "high"),
        ("dall-e-3", "high", "hd"),
        ("dall-e-3", "low", "standard"),
        ("dall-e-3", "medium", "standard"),
        ("dall-e-3", "auto", "standard"),
        ("dall-e-3", "hd", "hd"),
        ("dall-e-2", "low", "standard"),
        ("grok-imagine-image-2.0", "auto", "medium"),
        ("grok-imagine-image-2.0", "standard", "medium"),
        ("grok-imagine-image-2.0", "hd", "medium"),
        ("grok-imagine-image-2.0", "low", "low"),
        ("gpt-image-2.6-flare", "xhigh", "xhigh"),
        ("gpt-image-2", "xhigh", "high"),
        ("gpt-image-2", "max", "high"),
    ],
)
def test_quality_maps_to_the_models_nearest_equivalent(model_id, asked, sent):
    settings, warnings = fit(model_id, quality=asked)
    assert settings.quality == sent
    if asked == sent:
        assert not warnings
    else:
        (warning,) = warnings
        assert warning.type == "adjusted-setting"
        assert warning.message == f"quality '{asked}' sent to {model_id} as '{sent}'."


def test_quality_with_no_equivalent_is_dropped_with_a_warning_not_silently():
    settings, warnings = fit("dall-e-2", quality="high")
    assert settings.quality is None
    (warning,) = warnings
    assert warning.setting == "quality" and "no equivalent" in warning.message


@pytest.mark.parametrize(
    "model_id", ["sd3.5-large", "gemini-2.5-flash-image", "imagen-4.0-generate-001"]
)
def test_quality_on_a_model_without_it_is_ignored_with_a_warning(model_id):
    settings, warnings = fit(model_id, quality="high")
    assert settings.quality is None
    (warning,) = warnings
    assert warning.type == "unsupported-setting"
    assert warning.message == f"{model_id} has no quality setting; ignored."


# --- output format, seed, negative prompt, style -------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "asked", "sent", "warned"),
    [
        ("sd3.5-large", "webp", "webp", False),
        ("gpt-image-1", "jpeg", "jpeg", False),
        ("flux-dev", "webp", "jpeg", True),  # several formats: the first one
        ("imagen-4.0-generate-001", "webp", "png", True),
        ("imagen-4.0-generate-001", "jpeg", "jpeg", False),
        ("grok-imagine-image", "png", None, True),  # one format: nothing to send
        ("grok-imagine-image", "jpeg", "jpeg", False),
        ("gemini-2.5-flash-image", "jpeg", None, True),
    ],
)
def test_output_format_falls_back_to_what_the_model_makes(model_id, asked, sent, warned):
    settings, warnings = fit(model_id, output_format=asked)
    assert settings.output_format == sent
    assert bool(warnings) == warned
    if warned:
        (warning,) = warnings
        assert warning.setting == "output_format" and f"cannot produce {asked}" in warning.message


@pytest.mark.parametrize(
    ("model_id", "supported"),
    [
        ("sd3.5-large", True),
        ("core", True),
        ("flux-dev", True),
        ("gemini-2.5-flash-image", False),
        ("grok-imagine-image", False),
        ("gpt-image-1", False),
    ],
)
def test_seed_is_sent_where_supported_and_reported_where_not(model_id, supported):
    settings, warnings = fit(model_id, seed=42)
    assert settings.seed == (42 if supported else None)
    if not supported:
        (warning,) = warnings
        assert warning.message == f"{model_id} does not support seed; ignored."


@pytest.mark.parametrize(
    ("model_id", "supported"),
    [
        ("sd3.5-large", True),
        ("sd3.5-medium", True),
        ("sd3.5-large-turbo", False),
        ("core", True),
        ("ultra", True),
        ("gemini-2.5-flash-image", False),
        ("grok-imagine-image", False),
    ],
)
def test_negative_prompt_is_sent_where_supported(model_id, supported):
    settings, warnings = fit(model_id, negative_prompt="blurry, text")
    assert settings.negative_prompt == ("blurry, text" if supported else None)
    assert bool(warnings) == (not supported)


@pytest.mark.parametrize("model_id", ["sd3.5-large", "core", "ultra"])
def test_stability_style_presets_are_validated_against_the_providers_list(model_id):
    settings, warnings = fit(model_id, style_preset="Neon-Punk")  # case-insensitive
    assert settings.style_preset == "neon-punk" and not warnings
    with pytest.raises(InvalidRequest) as caught:
        fit(model_id, style_preset="watercolour")
    assert caught.value.status == 400
    assert "watercolour" in caught.value.message
    assert "neon-punk" in caught.value.details["accepted_style_presets"]


def test_style_on_a_model_without_styles_is_ignored_with_a_warning():
    settings, warnings = fit("grok-imagine-image", style_preset="anime")
    assert settings.style_preset is None
    (warning,) = warnings
    assert warning.setting == "style_preset" and warning.type == "unsupported-setting"


def test_what_was_sent_is_what_is_reported():
    settings, _ = fit(
        "sd3.5-large",
        width=1920,
        height=1080,
        seed=7,
        output_format="jpeg",
        negative_prompt="fog",
        style_preset="anime",
        quality="high",
        n=3,
    )
    assert settings.reported() == {
        "aspect_ratio": "16:9",
        "seed": 7,
        "output_format": "jpeg",
        "negative_prompt": "fog",
        "style_preset": "anime",
        "n": 3,
    }


# --- what cannot be honoured is a 400 ------------------------------------------------------------


def test_input_images_for_a_text_only_model_are_a_400():
    with pytest.raises(InvalidRequest) as caught:
        fit("core", input_images=[PNG_DATA_URL])
    assert "core does not accept input images" in caught.value.message


@pytest.mark.parametrize(
    ("model_id", "limit"), [("ultra", 1), ("sd3.5-large", 1), ("grok-imagine-image", 3)]
)
def test_more_input_images_than_the_model_takes_is_a_400(model_id, limit):
    with pytest.raises(InvalidRequest) as caught:
        fit(model_id, input_images=[PNG_DATA_URL] * (limit + 1))
    assert f"at most {limit} input image(s)" in caught.value.message


def test_a_mask_for_a_model_without_masks_is_a_400():
    with pytest.raises(InvalidRequest, match="does not support masks"):
        fit("gemini-2.5-flash-image", input_images=[PNG_DATA_URL], mask=PNG_DATA_URL)


@pytest.mark.parametrize(
    ("model_id", "limit"),
    [("imagen-4.0-generate-001", 4000), ("grok-imagine-image", 8000), ("core", 10000)],
)
def test_a_prompt_over_the_models_limit_is_a_400(model_id, limit):
    fit(model_id, prompt="x" * limit)
    with pytest.raises(InvalidRequest, match=f"accepts at most {limit}"):
        fit(model_id, prompt="x" * (limit + 1))
