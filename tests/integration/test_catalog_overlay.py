"""The ops overlay: published to SSM Parameter Store (moto), read with botocore and kept for
max_age (an injected clock), laid over the shipped catalog — a good one takes effect, a bad one is rejected
with a log line and a metric and the last good catalog stays, an unreachable one changes
nothing. Locally (make dev) the overlay is a file."""

from __future__ import annotations

import datetime
import json
import logging

import boto3
import pytest
from moto import mock_aws

from image_service import catalog as catalogs
from image_service.catalog import (
    CatalogSettings,
    CatalogSource,
    OverlayUnreachable,
    apply_overlay,
    file_overlay_reader,
    ssm_overlay_reader,
)
from image_service.registry import SHIPPED_CATALOG, shipped_document
from tests.conftest import http_event

TODAY = datetime.date(2026, 11, 30)
PARAMETER = "/image-service/test/catalog-overlay"
MOVE_OPENAI = {"aliases": {"openai": "gpt-image-2.6-flare"}}
RETIRE_GPT_IMAGE_2 = {
    "models": {
        "gpt-image-2": {
            "shutdown_date": "2026-11-15",
            "successor": "gpt-image-2.6-sunburst",
            "pricing": {"per_image": {"high": 0.25}},
        }
    }
}


@pytest.fixture
def ssm():
    """moto's SSM, reached through a fresh client of the service's (it caches endpoints)."""
    with mock_aws():
        catalogs.get_ssm_client.cache_clear()
        yield boto3.client("ssm", region_name="us-east-1")
        catalogs.get_ssm_client.cache_clear()


@pytest.fixture
def metrics() -> list[str]:
    return []


def source_for(reader, metrics) -> CatalogSource:
    return CatalogSource(reader, record_metric=metrics.append)


def publish(ssm, overlay) -> None:
    text = overlay if isinstance(overlay, str) else json.dumps(overlay)
    ssm.put_parameter(Name=PARAMETER, Value=text, Type="String", Overwrite=True)


def served(catalog, name, today=TODAY) -> str:
    return catalog.resolve(name, today=today).spec.id


# --- merging ------------------------------------------------------------------------------------


def test_an_overlay_merges_key_by_key_and_leaves_the_shipped_document_alone():
    document = shipped_document()
    merged = apply_overlay(document, RETIRE_GPT_IMAGE_2 | MOVE_OPENAI)
    entry = next(m for m in merged["models"] if m["id"] == "gpt-image-2")
    assert entry["shutdown_date"] == "2026-11-15"
    assert entry["pricing"]["per_image"]["high"] == 0.25
    assert entry["pricing"]["per_image"]["low"] == 0.006  # untouched keys stay
    assert entry["capability_set"] == "gpt-image-2"
    assert merged["aliases"]["openai"] == "gpt-image-2.6-flare"
    assert merged["aliases"]["flux"] == "flux-2-pro"
    assert document == shipped_document()


def test_null_removes_a_key_and_a_new_id_adds_a_model():
    overlay = {
        "models": {
            "gpt-image-1.5": {"shutdown_date": None, "successor": None},
            "gpt-image-2.7-flare": {"provider": "openai", "api": "gpt-image",
                                    "capability_set": "gpt-image-2"},
        },
        "aliases": {"gpt-image-flare": "gpt-image-2.7-flare", "gpt-image-sunburst": None},
    }  # fmt: skip
    source = source_for(lambda: json.dumps(overlay), [])
    catalog = source.current()
    assert catalog.model("gpt-image-1.5").status_on(datetime.date(2027, 1, 1)) == "active"
    assert served(catalog, "gpt-image-flare") == "gpt-image-2.7-flare"
    assert "gpt-image-sunburst" not in catalog.aliases


# --- SSM: good, bad, unreachable ----------------------------------------------------------------


def test_a_good_overlay_in_ssm_moves_an_alias_retires_a_model_and_changes_a_price(ssm, metrics):
    publish(ssm, RETIRE_GPT_IMAGE_2 | MOVE_OPENAI)
    catalog = source_for(ssm_overlay_reader(PARAMETER, max_age=0), metrics).current()

    assert served(catalog, "openai") == "gpt-image-2.6-flare"
    resolved = catalog.resolve("gpt-image-2", today=TODAY)
    assert resolved.spec.id == "gpt-image-2.6-sunburst"
    assert resolved.lifecycle_notes()[0][0] == "model-retired"
    assert catalog.model("gpt-image-2").pricing.image_price(quality="high", size=None) == 0.25
    assert metrics == []


def test_no_parameter_published_is_the_shipped_catalog(ssm, metrics):
    catalog = source_for(ssm_overlay_reader(PARAMETER, max_age=0), metrics).current()
    assert catalog == SHIPPED_CATALOG and metrics == []


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json", "Expecting property name"),
        ({"aliases": {"openai": "gpt-image-9"}}, "gpt-image-9"),
        ({"models": {"gpt-image-2": {"shutdown_date": "2026-11-15"}}}, "successor"),
        ({"models": {"gpt-image-2": {"successor": "flux-2-pro",
                                     "shutdown_date": "2026-11-15"}}}, "provider"),
        ({"modles": {}}, "unknown overlay keys: modles"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)  # fmt: skip
def test_a_bad_overlay_is_rejected_with_a_log_and_a_metric_and_the_last_good_stays(
    ssm, metrics, caplog, bad, reason
):
    source = source_for(ssm_overlay_reader(PARAMETER, max_age=0), metrics)
    publish(ssm, MOVE_OPENAI)
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"

    publish(ssm, bad)
    with caplog.at_level(logging.ERROR):
        catalog = source.current()
        source.current()  # the same bad text again: judged once

    assert served(catalog, "openai") == "gpt-image-2.6-flare"  # the last good overlay
    assert metrics == ["CatalogOverlayRejected"]
    [line] = [r for r in caplog.records if "overlay rejected" in r.getMessage()]
    assert reason in json.dumps(line.__dict__.get("reason", "")) or reason in str(line.__dict__)


def test_after_a_bad_overlay_a_fixed_one_takes_effect(ssm, metrics):
    source = source_for(ssm_overlay_reader(PARAMETER, max_age=0), metrics)
    publish(ssm, {"aliases": {"openai": "nope"}})
    assert served(source.current(), "openai") == SHIPPED_CATALOG.aliases["openai"]
    publish(ssm, MOVE_OPENAI)
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    assert metrics == ["CatalogOverlayRejected"]


def test_an_unreachable_parameter_store_keeps_the_last_good_catalog(
    ssm, metrics, monkeypatch, caplog
):
    source = source_for(ssm_overlay_reader(PARAMETER, max_age=0), metrics)
    publish(ssm, MOVE_OPENAI)
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"

    # Parameter Store stops answering: nothing listens on the endpoint, one attempt only.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    catalogs.get_ssm_client.cache_clear()
    with caplog.at_level(logging.WARNING):
        catalog = source.current()

    assert served(catalog, "openai") == "gpt-image-2.6-flare"
    assert metrics == ["CatalogOverlayUnreachable"]
    assert any("overlay unreachable" in r.getMessage() for r in caplog.records)


def test_a_reader_that_fails_keeps_the_shipped_catalog_on_a_cold_start(metrics):
    def unreachable():
        raise OverlayUnreachable("EndpointConnectionError")

    assert source_for(unreachable, metrics).current() == SHIPPED_CATALOG
    assert metrics == ["CatalogOverlayUnreachable"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_overlay_is_kept_for_max_age_then_read_again(ssm, metrics):
    clock = Clock()
    source = source_for(ssm_overlay_reader(PARAMETER, max_age=300, clock=clock), metrics)
    publish(ssm, MOVE_OPENAI)
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    publish(ssm, {})  # published, but the kept value holds until max_age passes
    clock.now += 299
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    clock.now += 1
    assert served(source.current(), "openai") == SHIPPED_CATALOG.aliases["openai"]


def test_a_missing_parameter_is_looked_up_again_only_after_max_age(ssm, metrics):
    clock = Clock()
    asked: list[str] = []
    catalogs.get_ssm_client().meta.events.register(
        "before-call.ssm.GetParameter", lambda **_: asked.append("GetParameter")
    )
    source = source_for(ssm_overlay_reader(PARAMETER, max_age=300, clock=clock), metrics)
    assert source.current() == SHIPPED_CATALOG
    publish(ssm, MOVE_OPENAI)  # published now: seen once max_age has passed
    clock.now += 299
    assert source.current() == SHIPPED_CATALOG and asked == ["GetParameter"]
    clock.now += 1
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    assert asked == ["GetParameter"] * 2 and metrics == []


def test_a_failed_read_is_not_kept_the_next_call_reads_again(ssm, metrics, monkeypatch):
    clock = Clock()
    source = source_for(ssm_overlay_reader(PARAMETER, max_age=300, clock=clock), metrics)
    publish(ssm, MOVE_OPENAI)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    catalogs.get_ssm_client.cache_clear()
    assert source.current() == SHIPPED_CATALOG and metrics == ["CatalogOverlayUnreachable"]
    monkeypatch.delenv("AWS_ENDPOINT_URL_SSM")
    catalogs.get_ssm_client.cache_clear()
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"  # same clock: read again


# --- locally: a file ----------------------------------------------------------------------------


def test_a_file_overlay_is_reread_on_every_call(tmp_path, metrics):
    path = tmp_path / "overlay.json"
    source = source_for(file_overlay_reader(str(path)), metrics)
    assert source.current() == SHIPPED_CATALOG  # no file yet: no overlay
    path.write_text(json.dumps(MOVE_OPENAI))
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"


def test_settings_pick_the_parameter_over_a_file_and_pin_the_date():
    settings = CatalogSettings.from_environ(
        {"CATALOG_OVERLAY_PARAMETER": PARAMETER, "CATALOG_OVERLAY_FILE": "/x.json",
         "CATALOG_DATE": "2026-12-01"}
    )  # fmt: skip
    assert settings.overlay_parameter == PARAMETER
    assert settings.clock()() == datetime.date(2026, 12, 1)
    assert CatalogSettings.from_environ({}).reader() is None
    with pytest.raises(ValueError, match="CATALOG_DATE"):
        CatalogSettings.from_environ({"CATALOG_DATE": "tomorrow"})


def test_the_models_route_shows_a_file_overlay(tmp_path, monkeypatch, lambda_context):
    import generation

    path = tmp_path / "overlay.json"
    path.write_text(json.dumps(RETIRE_GPT_IMAGE_2))
    monkeypatch.setenv("CATALOG_OVERLAY_FILE", str(path))
    catalogs.catalog_settings.cache_clear()
    catalogs.catalog_source.cache_clear()
    generation.image_service.cache_clear()
    try:
        response = generation.handler(http_event("GET", "/image/models"), lambda_context)
        models = {m["id"]: m for m in json.loads(response["body"])["data"]["models"]}
    finally:
        catalogs.catalog_settings.cache_clear()
        catalogs.catalog_source.cache_clear()
        generation.image_service.cache_clear()
    assert models["gpt-image-2"]["status"] == "retired"
    assert models["gpt-image-2"]["served_by"] == "gpt-image-2.6-sunburst"
