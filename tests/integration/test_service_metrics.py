"""What the generation function tells CloudWatch: a failed direct invoke per typed error (it is
an answer, not a Lambda error), and every provider call and failure per provider."""

from __future__ import annotations

import json

import pytest

from image_common.metric_names import (
    ERROR_TYPE_DIMENSION,
    INVOKE_FAILURES,
    PROVIDER_CALLS,
    PROVIDER_DIMENSION,
    PROVIDER_ERRORS,
)
from tests.conftest import InlineJobs, request_body


@pytest.fixture
def generation(s3, emulators, monkeypatch):
    """The handler, its jobs run to the end inside the request (whatever an earlier test left)."""
    import generation as module

    monkeypatch.setattr(module, "job_runner", InlineJobs())
    module.image_service.cache_clear()
    yield module
    module.image_service.cache_clear()


def emf_counts(text: str) -> dict[tuple[str, tuple], float]:
    """(metric, sorted dimension items) → summed value, from the EMF lines in stdout."""
    counts: dict[tuple[str, tuple], float] = {}
    for line in text.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            (dimensions,) = directive["Dimensions"]
            key_dims = tuple(sorted((d, document[d]) for d in dimensions if d != "service"))
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                total = sum(value) if isinstance(value, list) else value
                key = (metric["Name"], key_dims)
                counts[key] = counts.get(key, 0) + total
    return counts


def test_a_failed_direct_invoke_counts_one_invoke_failure_of_its_type(
    generation, lambda_context, capsys
):
    result = generation.handler(request_body("x [moderate]"), lambda_context)
    assert result["success"] is False
    counts = emf_counts(capsys.readouterr().out)
    assert counts[(INVOKE_FAILURES, ((ERROR_TYPE_DIMENSION, "content_policy_violation"),))] == 1


def test_a_successful_direct_invoke_counts_no_failure(generation, lambda_context, capsys):
    assert generation.handler(request_body(quality="low"), lambda_context)["success"] is True
    counts = emf_counts(capsys.readouterr().out)
    assert not [key for key in counts if key[0] == INVOKE_FAILURES]


def test_provider_calls_and_errors_are_counted_per_provider(generation, lambda_context, capsys):
    generation.handler(request_body(quality="low", n=2, model="grok-imagine-image"), lambda_context)
    generation.handler(request_body("x [moderate]"), lambda_context)
    counts = emf_counts(capsys.readouterr().out)
    assert counts[(PROVIDER_CALLS, ((PROVIDER_DIMENSION, "xai"),))] >= 1
    assert (PROVIDER_ERRORS, ((PROVIDER_DIMENSION, "xai"),)) not in counts
    assert counts[(PROVIDER_CALLS, ((PROVIDER_DIMENSION, "openai"),))] == 1
    assert counts[(PROVIDER_ERRORS, ((PROVIDER_DIMENSION, "openai"),))] == 1
