"""How long a job may wait for its provider: the model's expected time by quality and size,
three times over, at least a minute, at most the deployment's cap."""

from __future__ import annotations

from dataclasses import replace

import pytest

from image_service.budgets import MIN_BUDGET_SECONDS, expected_seconds, job_budget_seconds
from image_service.providers.base import GenerationSettings
from image_service.registry import MODELS

GPT = MODELS["gpt-image-2"]
SQUARE = GenerationSettings(width=1024, height=1024)


def test_quality_drives_a_gpt_image_generations_expected_time():
    low = expected_seconds(GPT, replace(SQUARE, quality="low"))
    high = expected_seconds(GPT, replace(SQUARE, quality="high"))
    assert low < 30 < high
    assert high >= 60  # users measure 60–120 s at high


def test_more_pixels_take_longer():
    large = replace(SQUARE, quality="high", width=2048, height=2048)
    assert expected_seconds(GPT, large) == 4 * expected_seconds(
        GPT, replace(SQUARE, quality="high")
    )


def test_a_size_tier_scales_ratio_models():
    model = next(
        m for m in MODELS.values() if m.provider == "google" and m.capabilities.resolutions
    )
    base = GenerationSettings(aspect_ratio="1:1", resolution="1K")
    assert expected_seconds(model, replace(base, resolution="4K")) == 6 * expected_seconds(
        model, base
    )


@pytest.mark.parametrize(
    ("quality", "cap", "budget"),
    [("low", 240, MIN_BUDGET_SECONDS), ("high", 240, 225.0), ("high", 100, 100.0), ("high", 2, 2.0)],
)  # fmt: skip
def test_the_budget_is_three_expected_durations_between_a_minute_and_the_cap(quality, cap, budget):
    settings = replace(SQUARE, quality=quality)
    assert job_budget_seconds(GPT, settings, max_seconds=cap) == budget
