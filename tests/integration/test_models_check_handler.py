"""The scheduled models-check Lambda: keys from each provider's Secrets Manager secret (moto,
read through the secrets extension as deployed),
the providers' lists from the emulators, and the drift published as CloudWatch metrics
(Powertools EMF on stdout)."""

from __future__ import annotations

import datetime
import io
import json
import logging

import pytest
from moto import mock_aws

from image_common.provider_identity import PROVIDERS
from image_service import http as service_http
from local.emulators import EMULATORS, EmulatorRouter, in_process_base_url
from tests.conftest import PROVIDER_KEYS

TODAY = datetime.date(2026, 11, 30)
SCHEDULED_EVENT = {
    "version": "0",
    "id": "0d9f1c43-0000-0000-0000-000000000000",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-30T06:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/models-check"],
    "detail": {},
}
LISTED = ("openai", "google", "xai")


@pytest.fixture
def providers(monkeypatch, secrets_extension):
    """Keys only in the providers' secrets (as deployed); every emulator listing as of TODAY."""
    started = {provider: cls(clock=lambda: TODAY) for provider, cls in EMULATORS.items()}
    with mock_aws():
        for provider in LISTED:
            arn = _create_secret({"api_key": PROVIDER_KEYS[provider]}, f"providers/{provider}")
            monkeypatch.setenv(PROVIDERS[provider].secret_arn_variable, arn)
        for provider in EMULATORS:
            monkeypatch.delenv(PROVIDERS[provider].api_key_variable, raising=False)
            monkeypatch.setenv(PROVIDERS[provider].base_url_variable, in_process_base_url(provider))
        service_http.set_http_client(service_http.new_http_client(EmulatorRouter(started)))
        yield started
        service_http.set_http_client(None)


def _create_secret(values: dict[str, str], name: str) -> str:
    import boto3

    client = boto3.client("secretsmanager")
    return client.create_secret(Name=name, SecretString=json.dumps(values))["ARN"]


@pytest.fixture
def models_check():
    import models_check as module

    return module


@pytest.fixture
def log_output(models_check):
    """The function's log lines, formatted as Lambda receives them (Powertools JSON)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(models_check.logger.registered_formatter)
    models_check.logger.addHandler(handler)
    yield stream
    models_check.logger.removeHandler(handler)


def emitted_metrics(output: str) -> dict[str, float]:
    """Metric name → value from the EMF documents Powertools printed."""
    values = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "ImageService"
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]  # Powertools writes one value as a list of one
            (values[metric["Name"]],) = value if isinstance(value, list) else [value]
    return values


def test_planted_shutdown_and_unknown_model_are_drift_in_the_metrics_and_the_answer(
    providers, models_check, lambda_context, capfd
):
    providers["openai"].model_listing.plant("gpt-image-2", shutdown_date=datetime.date(2026, 12, 9))
    providers["xai"].model_listing.plant("grok-imagine-image-3")
    answer = models_check.handler(SCHEDULED_EVENT, lambda_context)
    assert answer["today"] == "2026-11-30"
    drift = {(f["model"], f["kind"]) for f in answer["findings"] if f["drift"]}
    assert {("gpt-image-2", "shutdown_soon"), ("grok-imagine-image-3", "unknown_upstream")} <= drift

    metrics = emitted_metrics(capfd.readouterr().out)
    assert metrics["ModelDriftFindings"] == answer["drift_count"] == len(drift)
    assert metrics["ModelShutdownsNotInCatalog"] >= 1
    assert metrics["UpstreamModelsNotInCatalog"] >= 1
    assert metrics["ModelListsChecked"] == 3 and metrics["ModelListFailures"] == 0
    states = {p["provider"]: p["state"] for p in answer["providers"]}
    assert states == {
        "openai": "checked",
        "google": "checked",
        "xai": "checked",
        "stability": "no_model_list",
        "flux": "no_model_list",
    }
    # the keys came from the secret: each list call carried the secret's key
    (request,) = [r for r in providers["xai"].requests if r.method == "GET"]
    assert request.headers["authorization"] == f"Bearer {PROVIDER_KEYS['xai']}"


def test_planted_drift_moves_the_drift_metric_by_exactly_its_findings(
    providers, models_check, lambda_context, capfd
):
    models_check.handler(SCHEDULED_EVENT, lambda_context)
    before = emitted_metrics(capfd.readouterr().out)
    providers["openai"].model_listing.plant("gpt-image-2", shutdown_date=datetime.date(2026, 12, 9))
    providers["google"].model_listing.plant("gemini-4-image")
    models_check.handler(SCHEDULED_EVENT, lambda_context)
    after = emitted_metrics(capfd.readouterr().out)
    assert after["ModelDriftFindings"] == before["ModelDriftFindings"] + 2
    assert after["UpstreamModelsNotInCatalog"] == before["UpstreamModelsNotInCatalog"] + 1
    assert after["ModelShutdownsNotInCatalog"] == before["ModelShutdownsNotInCatalog"] + 1


def test_a_failing_list_is_reported_and_counted_and_the_others_still_checked(
    providers, models_check, lambda_context, capfd, log_output
):
    providers["google"].model_listing.fail_status = 503
    answer = models_check.handler(SCHEDULED_EVENT, lambda_context)
    google = next(p for p in answer["providers"] if p["provider"] == "google")
    assert google == {
        "provider": "google",
        "state": "failed",
        "image_models": None,
        "reason": "HTTP 503 (UNAVAILABLE)",
    }
    metrics = emitted_metrics(capfd.readouterr().out)
    assert metrics["ModelListFailures"] == 1 and metrics["ModelListsChecked"] == 2
    errors = [json.loads(line) for line in log_output.getvalue().splitlines()]
    (error,) = [e for e in errors if e["level"] == "ERROR"]
    assert (error["message"], error["provider"]) == ("model list unavailable", "google")


def test_providers_without_a_key_are_not_checked_not_failed(
    providers, models_check, lambda_context, capfd, monkeypatch
):
    monkeypatch.delenv(PROVIDERS["xai"].secret_arn_variable)  # no secret given to the function
    # a secret still holding the stack's placeholder: no api_key yet
    placeholder = _create_secret({"placeholder": "x1y2"}, "providers/google-placeholder")
    monkeypatch.setenv(PROVIDERS["google"].secret_arn_variable, placeholder)
    answer = models_check.handler(SCHEDULED_EVENT, lambda_context)
    states = {p["provider"]: (p["state"], p["reason"]) for p in answer["providers"]}
    assert states["google"] == states["xai"] == ("not_checked", "no API key configured")
    assert states["openai"][0] == "checked"
    metrics = emitted_metrics(capfd.readouterr().out)
    assert metrics["ModelListFailures"] == 0 and metrics["ModelListsChecked"] == 1
    assert not [r for r in providers["google"].requests + providers["xai"].requests]


def test_no_key_reaches_the_logs_or_the_answer(
    providers, models_check, lambda_context, capfd, log_output
):
    providers["openai"].model_listing.fail_status = 401  # OpenAI's message quotes the key
    answer = models_check.handler(SCHEDULED_EVENT, lambda_context)
    out = log_output.getvalue() + capfd.readouterr().out + json.dumps(answer)
    assert "HTTP 401 (invalid_api_key)" in out
    for key in PROVIDER_KEYS.values():
        assert key not in out and f"{key[:3]}***{key[-4:]}" not in out
    assert "***" not in out


def test_the_scheduled_event_s_time_is_the_check_s_day(models_check):
    assert models_check.check_day({"time": "2026-12-01T23:30:00Z"}) == datetime.date(2026, 12, 1)
    assert models_check.check_day({"time": "2026-12-02T01:00:00+05:00"}) == datetime.date(
        2026, 12, 1
    )


def test_a_manual_invoke_without_a_time_checks_for_the_current_utc_day(models_check):
    before = datetime.datetime.now(datetime.UTC).date()
    checked = models_check.check_day({})
    after = datetime.datetime.now(datetime.UTC).date()
    assert checked in (before, after)
    assert models_check.check_day({"time": "yesterday"}) in (before, after)


def test_an_ops_overlay_that_records_the_shutdown_turns_the_drift_into_information(
    providers, models_check, lambda_context, monkeypatch
):
    import boto3

    from image_service import catalog

    providers["openai"].model_listing.plant("gpt-image-2", shutdown_date=datetime.date(2026, 12, 9))
    before = models_check.handler(SCHEDULED_EVENT, lambda_context)
    overlay = {
        "models": {
            "gpt-image-2": {"shutdown_date": "2026-12-09", "successor": "gpt-image-2.6-flare"}
        }
    }
    boto3.client("ssm").put_parameter(
        Name="/image-service-test/catalog-overlay", Value=json.dumps(overlay), Type="String"
    )
    monkeypatch.setenv("CATALOG_OVERLAY_PARAMETER", "/image-service-test/catalog-overlay")
    catalog.catalog_settings.cache_clear()
    catalog.catalog_source.cache_clear()
    try:
        after = models_check.handler(SCHEDULED_EVENT, lambda_context)
    finally:
        catalog.catalog_settings.cache_clear()
        catalog.catalog_source.cache_clear()

    def gpt_image_2(answer):
        (finding,) = [f for f in answer["findings"] if f["model"] == "gpt-image-2"]
        return finding["kind"], finding["drift"], finding["catalog_shutdown"]

    assert gpt_image_2(before) == ("shutdown_soon", True, None)
    assert gpt_image_2(after) == ("shutdown_soon", False, "2026-12-09")
    assert after["drift_count"] == before["drift_count"] - 1
