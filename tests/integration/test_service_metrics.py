"""What the generation function tells CloudWatch: a failed direct invoke per typed error (it is
an answer, not a Lambda error), and every provider call and failure per provider."""

from __future__ import annotations

import json
import os

import pytest

from image_common.metric_names import (
    CATALOG_OVERLAY_REJECTED,
    CATALOG_OVERLAY_UNREACHABLE,
    ERROR_TYPE_DIMENSION,
    INVOKE_FAILURES,
    NAMESPACE,
    PROVIDER_CALLS,
    PROVIDER_DIMENSION,
    PROVIDER_ERRORS,
    SERVICE_DIMENSION,
)
from image_service import catalog as catalogs
from tests.conftest import request_body


@pytest.fixture
def generation(s3, emulators, inline_generation):
    return inline_generation


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


# --- the catalog overlay's metrics --------------------------------------------------------------


def emf_documents(text: str, metric: str) -> list[dict]:
    """The EMF documents in stdout that carry ``metric``."""
    documents = [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]
    return [
        document
        for document in documents
        for directive in document["_aws"]["CloudWatchMetrics"]
        if any(m["Name"] == metric for m in directive["Metrics"])
    ]


@pytest.fixture(params=[CATALOG_OVERLAY_REJECTED, CATALOG_OVERLAY_UNREACHABLE])
def overlay_problem(request, tmp_path, monkeypatch) -> str:
    """An overlay that names a model nobody has (rejected), or one that cannot be read (a
    directory where the file should be: unreachable); the metric each one counts."""
    overlay = tmp_path / "catalog-overlay.json"
    if request.param == CATALOG_OVERLAY_REJECTED:
        overlay.write_text(json.dumps({"aliases": {"openai": "no-such-model"}}))
    else:
        overlay.mkdir()
    monkeypatch.setenv("CATALOG_OVERLAY_FILE", str(overlay))
    catalogs.catalog_settings.cache_clear()
    catalogs.catalog_source.cache_clear()
    yield request.param
    catalogs.catalog_settings.cache_clear()
    catalogs.catalog_source.cache_clear()


def test_an_overlay_problem_is_counted_under_the_service_dimension_alone(
    generation, overlay_problem, lambda_context, capsys
):
    # A direct invoke that succeeds (on the last good catalog) adds a provider dimension to the
    # handler's metrics; the overlay's count must not take it, or its alarm would never see it.
    result = generation.handler(request_body(quality="low"), lambda_context)
    assert result["success"] is True
    documents = emf_documents(capsys.readouterr().out, overlay_problem)
    assert documents  # at least one read of the catalog met the problem
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        assert directive["Dimensions"] == [[SERVICE_DIMENSION]]
        assert document[SERVICE_DIMENSION] == os.environ["POWERTOOLS_SERVICE_NAME"]
        value = document[overlay_problem]
        assert sum(value if isinstance(value, list) else [value]) == 1
