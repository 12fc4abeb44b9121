"""The ops overlay: published to SSM Parameter Store (moto), read with botocore on the source's
schedule (max_age after a good read, a shorter retry interval after a failed or rejected one, on
an injected clock), laid over the shipped catalog — a good one takes effect, a bad one is
rejected with a log line and a metric and the last good catalog stays, an unreachable one
changes nothing; neither is read again on every request. Locally (make dev) the overlay is a
file."""

from __future__ import annotations

import datetime
import json
import logging

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from image_service import aws
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
from tests.clock import ManualClock
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


MAX_AGE, RETRY = 300, 30


class SsmCalls:
    """Every GetParameter call the SSM client makes; while ``down`` names an error code, each
    one fails with it, as the client raises a throttled or refused call."""

    def __init__(self) -> None:
        self.count = 0
        self.down: str | None = None

    def __call__(self, **_: object) -> None:
        self.count += 1
        if self.down:
            raise ClientError({"Error": {"Code": self.down, "Message": "x"}}, "GetParameter")


@pytest.fixture
def ssm():
    """moto's SSM, reached through a fresh client of the service's (it caches endpoints)."""
    with mock_aws():
        aws.forget()
        yield boto3.client("ssm", region_name="us-east-1")
        aws.forget()


@pytest.fixture
def ssm_calls(ssm) -> SsmCalls:
    """The calls the service's SSM client makes to moto, counted (and failed on demand)."""
    calls = SsmCalls()
    aws.client("ssm").meta.events.register("before-call.ssm.GetParameter", calls)
    return calls


@pytest.fixture
def metrics() -> list[str]:
    return []


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def source_for(reader, metrics, clock=None) -> CatalogSource:
    return CatalogSource(
        reader,
        max_age_seconds=MAX_AGE,
        retry_seconds=RETRY,
        monotonic=clock or ManualClock(),
        record_metric=metrics.append,
    )


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
    catalog = source_for(ssm_overlay_reader(PARAMETER), metrics).current()

    assert served(catalog, "openai") == "gpt-image-2.6-flare"
    resolved = catalog.resolve("gpt-image-2", today=TODAY)
    assert resolved.spec.id == "gpt-image-2.6-sunburst"
    assert resolved.lifecycle_notes()[0][0] == "model-retired"
    assert catalog.model("gpt-image-2").pricing.image_price(quality="high", size=None) == 0.25
    assert metrics == []


def test_no_parameter_published_is_the_shipped_catalog(ssm, metrics):
    catalog = source_for(ssm_overlay_reader(PARAMETER), metrics).current()
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
    ssm, metrics, caplog, clock, bad, reason
):
    source = source_for(ssm_overlay_reader(PARAMETER), metrics, clock)
    publish(ssm, MOVE_OPENAI)
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"

    publish(ssm, bad)
    clock.advance(MAX_AGE)
    with caplog.at_level(logging.ERROR):
        catalog = source.current()
        clock.advance(RETRY - 1)
        source.current()  # within the retry interval: not read, not counted again

    assert served(catalog, "openai") == "gpt-image-2.6-flare"  # the last good overlay
    assert metrics == ["CatalogOverlayRejected"]
    [line] = [r for r in caplog.records if "overlay rejected" in r.getMessage()]
    assert reason in json.dumps(line.__dict__.get("reason", "")) or reason in str(line.__dict__)


def test_after_a_bad_overlay_a_fixed_one_takes_effect_at_the_next_retry(ssm, metrics, clock):
    source = source_for(ssm_overlay_reader(PARAMETER), metrics, clock)
    publish(ssm, {"aliases": {"openai": "nope"}})
    assert served(source.current(), "openai") == SHIPPED_CATALOG.aliases["openai"]
    publish(ssm, MOVE_OPENAI)
    clock.advance(RETRY)  # the retry interval, not max_age: a fix shows within 30 s
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    assert metrics == ["CatalogOverlayRejected"]


def test_an_unreachable_parameter_store_keeps_the_last_good_catalog(
    ssm, metrics, monkeypatch, caplog, clock
):
    source = source_for(ssm_overlay_reader(PARAMETER), metrics, clock)
    publish(ssm, MOVE_OPENAI)
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"

    # Parameter Store stops answering: nothing listens on the endpoint, one attempt only.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    aws.forget()
    clock.advance(MAX_AGE)
    with caplog.at_level(logging.WARNING):
        catalog = source.current()

    assert served(catalog, "openai") == "gpt-image-2.6-flare"
    assert metrics == ["CatalogOverlayUnreachable"]
    [line] = [r for r in caplog.records if "overlay unreachable" in r.getMessage()]
    assert line.__dict__["reason"] == "EndpointConnectionError"  # the kind, no AWS detail


def test_a_reader_that_fails_keeps_the_shipped_catalog_on_a_cold_start(metrics):
    def unreachable():
        raise OverlayUnreachable("EndpointConnectionError")

    assert source_for(unreachable, metrics).current() == SHIPPED_CATALOG
    assert metrics == ["CatalogOverlayUnreachable"]


def test_a_good_overlay_is_read_from_ssm_again_only_after_max_age(ssm, ssm_calls, metrics, clock):
    source = source_for(ssm_overlay_reader(PARAMETER), metrics, clock)
    publish(ssm, MOVE_OPENAI)
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    publish(ssm, {})  # published, but the read value holds until max_age passes
    for _ in range(MAX_AGE - 1):
        clock.advance(1)
        assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    assert ssm_calls.count == 1
    clock.advance(1)
    assert served(source.current(), "openai") == SHIPPED_CATALOG.aliases["openai"]
    assert ssm_calls.count == 2 and metrics == []


# --- backing off: an outage or a bad overlay is not met by every request ---------------------


def test_during_an_ssm_outage_requests_make_one_read_per_retry_interval(
    ssm, ssm_calls, metrics, clock, caplog
):
    source = source_for(ssm_overlay_reader(PARAMETER), metrics, clock)
    publish(ssm, MOVE_OPENAI)
    source.current()
    clock.advance(MAX_AGE)
    ssm_calls.down = "ThrottlingException"
    ssm_calls.count = 0

    with caplog.at_level(logging.WARNING):
        for _ in range(100):  # ten requests a second for ten seconds, per interval
            for _ in range(10):
                assert served(source.current(), "openai") == "gpt-image-2.6-flare"
            clock.advance(RETRY / 10)  # 100 × 3 s = 300 s: ten intervals

    assert ssm_calls.count == 10  # of 1000 requests
    assert metrics == ["CatalogOverlayUnreachable"] * 10  # one per failed read
    reasons = {r.__dict__["reason"] for r in caplog.records if "unreachable" in r.getMessage()}
    assert reasons == {"ThrottlingException"}  # the AWS error code, in each of the 10 lines


def test_after_an_outage_the_first_read_past_the_interval_recovers_and_max_age_resumes(
    ssm, ssm_calls, metrics, clock
):
    source = source_for(ssm_overlay_reader(PARAMETER), metrics, clock)
    ssm_calls.down = "AccessDeniedException"
    assert source.current() == SHIPPED_CATALOG  # a cold start during the outage
    ssm_calls.down = None
    publish(ssm, MOVE_OPENAI)
    clock.advance(RETRY - 1)
    assert source.current() == SHIPPED_CATALOG and ssm_calls.count == 1  # still backing off
    clock.advance(1)
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    assert ssm_calls.count == 2

    clock.advance(MAX_AGE - 1)  # a success: the next read waits max_age, not the retry
    source.current()
    assert ssm_calls.count == 2
    clock.advance(1)
    source.current()
    assert ssm_calls.count == 3
    assert metrics == ["CatalogOverlayUnreachable"]


def test_a_rejected_overlay_is_reread_per_retry_interval_and_counted_each_time_not_rejudged(
    ssm, ssm_calls, metrics, clock, monkeypatch
):
    judged = []
    real_parse = catalogs.parse_catalog
    monkeypatch.setattr(catalogs, "parse_catalog", lambda d: judged.append(1) or real_parse(d))
    source = source_for(ssm_overlay_reader(PARAMETER), metrics, clock)
    publish(ssm, MOVE_OPENAI)
    source.current()
    publish(ssm, {"aliases": {"openai": "gpt-image-9"}})
    clock.advance(MAX_AGE)
    ssm_calls.count, judged[:] = 0, []

    for _ in range(100):  # 100 requests over 300 s
        assert served(source.current(), "openai") == "gpt-image-2.6-flare"
        clock.advance(RETRY / 10)

    # Re-read once per retry interval (not per request, not only once per max_age), and
    # counted on each re-read, so its alarm stays in alarm while the overlay stays published.
    assert ssm_calls.count == 10
    assert metrics == ["CatalogOverlayRejected"] * 10
    assert len(judged) == 1  # the same text is not validated again


def test_a_caller_during_a_read_in_progress_serves_the_last_good_without_reading(metrics, clock):
    """The read is claimed before it starts: a concurrent caller (here: one inside the read)
    neither waits for it nor reads too."""
    source: CatalogSource
    reads, inside = [], []

    def slow_reader() -> str:
        reads.append(1)
        inside.append(source.current())
        return json.dumps(MOVE_OPENAI)

    source = source_for(slow_reader, metrics, clock)
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    assert reads == [1] and inside == [SHIPPED_CATALOG]


def test_a_missing_parameter_is_looked_up_again_only_after_max_age(ssm, ssm_calls, metrics, clock):
    source = source_for(ssm_overlay_reader(PARAMETER), metrics, clock)
    assert source.current() == SHIPPED_CATALOG
    publish(ssm, MOVE_OPENAI)  # published now: seen once max_age has passed
    clock.advance(MAX_AGE - 1)
    assert source.current() == SHIPPED_CATALOG and ssm_calls.count == 1
    clock.advance(1)
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    assert ssm_calls.count == 2 and metrics == []


# --- locally: a file ----------------------------------------------------------------------------


def test_a_file_overlay_is_reread_on_every_call(tmp_path):
    path = tmp_path / "overlay.json"
    source = CatalogSettings(overlay_file=str(path)).source()
    assert source.current() == SHIPPED_CATALOG  # no file yet: no overlay
    path.write_text(json.dumps(MOVE_OPENAI))
    assert served(source.current(), "openai") == "gpt-image-2.6-flare"
    path.write_text(json.dumps({"aliases": {"openai": "gpt-image-9"}}))
    source.current()  # rejected: the last good stays
    path.write_text("{}")  # fixed: no retry interval to wait out for a local file
    assert served(source.current(), "openai") == SHIPPED_CATALOG.aliases["openai"]


def test_file_reader_maps_an_unreadable_path_to_unreachable(tmp_path):
    with pytest.raises(OverlayUnreachable, match="IsADirectoryError"):
        file_overlay_reader(str(tmp_path))()


def test_settings_pick_the_parameter_over_a_file_and_pin_the_date():
    settings = CatalogSettings.from_environ(
        {"CATALOG_OVERLAY_PARAMETER": PARAMETER, "CATALOG_OVERLAY_FILE": "/x.json",
         "CATALOG_DATE": "2026-12-01"}
    )  # fmt: skip
    assert settings.overlay_parameter == PARAMETER
    assert settings.clock()() == datetime.date(2026, 12, 1)
    assert CatalogSource().current() == SHIPPED_CATALOG  # no overlay configured
    with pytest.raises(ValueError, match="CATALOG_DATE"):
        CatalogSettings.from_environ({"CATALOG_DATE": "tomorrow"})


def test_settings_read_the_max_age_and_the_retry_interval(ssm, ssm_calls):
    settings = CatalogSettings.from_environ(
        {"CATALOG_OVERLAY_PARAMETER": PARAMETER, "CATALOG_OVERLAY_MAX_AGE_SECONDS": "120",
         "CATALOG_OVERLAY_RETRY_SECONDS": "45"}
    )  # fmt: skip
    assert (settings.overlay_max_age_seconds, settings.overlay_retry_seconds) == (120, 45)
    defaults = CatalogSettings.from_environ({})
    assert (defaults.overlay_max_age_seconds, defaults.overlay_retry_seconds) == (300, 30)
    with pytest.raises(ValueError, match="CATALOG_OVERLAY_RETRY_SECONDS"):
        CatalogSettings.from_environ({"CATALOG_OVERLAY_RETRY_SECONDS": "soon"})

    clock = ManualClock()  # the source they build keeps that schedule
    source = settings.source(monotonic=clock)
    ssm_calls.down = "ThrottlingException"
    source.current()
    clock.advance(44)
    source.current()
    assert ssm_calls.count == 1
    clock.advance(1)
    ssm_calls.down = None
    source.current()
    clock.advance(119)
    source.current()
    assert ssm_calls.count == 2
    clock.advance(1)
    source.current()
    assert ssm_calls.count == 3


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
