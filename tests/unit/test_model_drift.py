"""The catalog/upstream comparison, on fixed days: no test here reads the calendar."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import pytest

from image_service.model_drift import (
    CheckConfigurationError,
    CheckSettings,
    ProviderListing,
    UpstreamModel,
    check_catalog,
    compare_catalog,
    service_catalog,
)

TODAY = datetime.date(2026, 11, 30)


def day(offset: int) -> datetime.date:
    return TODAY + datetime.timedelta(days=offset)


@dataclass(frozen=True)
class Model:
    id: str
    provider: str = "openai"
    shutdown_date: datetime.date | None = None


def checked(*models: UpstreamModel, provider: str = "openai") -> ProviderListing:
    return ProviderListing(provider, "checked", models=models)


def findings(catalog, *listings, today=TODAY, **options):
    report = compare_catalog(catalog, listings, today=today, **options)
    return {(f.model, f.kind, f.drift) for f in report.findings}


def test_a_catalog_that_matches_the_list_has_no_findings():
    catalog = [Model("gpt-image-2"), Model("gpt-image-2.6-flare")]
    listing = checked(UpstreamModel("gpt-image-2"), UpstreamModel("gpt-image-2.6-flare"))
    report = compare_catalog(catalog, [listing], today=TODAY)
    assert report.findings == () and report.exit_code == 0


def test_a_live_catalog_model_missing_upstream_is_drift():
    assert findings([Model("gpt-image-1")], checked()) == {
        ("gpt-image-1", "missing_upstream", True)
    }


def test_a_model_past_its_catalog_shutdown_date_is_expected_to_be_gone():
    assert findings([Model("gpt-image-1", shutdown_date=day(-38))], checked()) == set()
    # ... but on the day before its shutdown it is still served, so its absence is drift
    assert findings([Model("gpt-image-1", shutdown_date=day(1))], checked()) == {
        ("gpt-image-1", "missing_upstream", True)
    }


def test_a_shutdown_within_the_window_the_catalog_does_not_carry_is_drift():
    listing = checked(UpstreamModel("gpt-image-2", shutdown_date=day(10)))
    report = compare_catalog([Model("gpt-image-2")], [listing], today=TODAY)
    (finding,) = report.findings
    assert (finding.kind, finding.drift) == ("shutdown_soon", True)
    assert finding.upstream_shutdown == day(10) and finding.catalog_shutdown is None
    assert "10 days" in finding.message
    assert report.exit_code == 1


def test_a_shutdown_the_catalog_already_carries_is_information_not_drift():
    listing = checked(UpstreamModel("gpt-image-1.5", shutdown_date=day(1)))
    catalog = [Model("gpt-image-1.5", shutdown_date=day(1))]
    report = compare_catalog(catalog, [listing], today=TODAY)
    (finding,) = report.findings
    assert (finding.kind, finding.drift) == ("shutdown_soon", False)
    assert "1 day;" in finding.message
    assert report.exit_code == 0


def test_a_catalog_date_that_differs_from_the_announced_one_is_drift():
    listing = checked(UpstreamModel("gpt-image-1.5", shutdown_date=day(1)))
    catalog = [Model("gpt-image-1.5", shutdown_date=day(20))]
    assert findings(catalog, listing) == {("gpt-image-1.5", "shutdown_soon", True)}


@pytest.mark.parametrize(("offset", "flagged"), [(30, True), (31, False)])
def test_the_warning_window_is_inclusive_of_its_last_day(offset, flagged):
    listing = checked(UpstreamModel("gpt-image-2", shutdown_date=day(offset)))
    kinds = findings([Model("gpt-image-2")], listing, warning_days=30)
    expected = ("shutdown_soon", True) if flagged else ("shutdown_scheduled", False)
    assert kinds == {("gpt-image-2", *expected)}


def test_a_shorter_window_moves_the_same_date_out_of_the_warning():
    listing = checked(UpstreamModel("gpt-image-2", shutdown_date=day(10)))
    assert findings([Model("gpt-image-2")], listing, warning_days=7) == {
        ("gpt-image-2", "shutdown_scheduled", False)
    }


def test_a_model_the_provider_lists_past_its_shutdown_while_the_catalog_serves_it_is_drift():
    listing = checked(UpstreamModel("gpt-image-1", shutdown_date=day(-1)))
    assert findings([Model("gpt-image-1")], listing) == {("gpt-image-1", "shutdown_past", True)}
    # the catalog already moved on: nothing to do
    moved_on = [Model("gpt-image-1", shutdown_date=day(-1))]
    assert findings(moved_on, listing) == set()


def test_an_upstream_image_model_absent_from_the_catalog_is_drift():
    listing = checked(UpstreamModel("gpt-image-2"), UpstreamModel("gpt-image-3"))
    assert findings([Model("gpt-image-2")], listing) == {("gpt-image-3", "unknown_upstream", True)}


def test_an_unknown_model_that_is_itself_retiring_is_not_worth_adding():
    listing = checked(UpstreamModel("chatgpt-image-latest", shutdown_date=day(1)))
    assert findings([], listing) == {("chatgpt-image-latest", "unknown_upstream", False)}


def test_acknowledged_upstream_models_are_reported_but_not_drift():
    listing = checked(UpstreamModel("gpt-image-2-2026-04-21"))
    report = compare_catalog(
        [], [listing], today=TODAY, acknowledged=frozenset({"gpt-image-2-2026-04-21"})
    )
    (finding,) = report.findings
    assert (finding.kind, finding.drift) == ("unknown_upstream", False)
    assert "acknowledged" in finding.message


def test_an_upstream_alias_matches_a_catalog_model():
    listing = checked(
        UpstreamModel("grok-imagine-image-quality", aliases=("grok-imagine-image-pro",)),
        provider="xai",
    )
    catalog = [Model("grok-imagine-image-pro", provider="xai")]
    assert findings(catalog, listing) == set()


def test_only_providers_whose_list_was_read_are_compared():
    catalog = [Model("sd3.5-large", "stability"), Model("grok-imagine-image", "xai")]
    listings = [
        ProviderListing("stability", "no_model_list", reason="no list"),
        ProviderListing("xai", "not_checked", reason="no API key configured"),
    ]
    report = compare_catalog(catalog, listings, today=TODAY)
    assert report.findings == () and report.exit_code == 0
    assert [p["state"] for p in report.as_dict()["providers"]] == ["no_model_list", "not_checked"]


def test_a_failed_list_without_drift_exits_2_and_drift_wins_over_it():
    failed = ProviderListing("google", "failed", reason="HTTP 503 (UNAVAILABLE)")
    quiet = compare_catalog([Model("gpt-image-2")], [checked(UpstreamModel("gpt-image-2")), failed],
                            today=TODAY)  # fmt: skip
    assert quiet.exit_code == 2 and quiet.failed == (failed,)
    drifting = compare_catalog([Model("gpt-image-1")], [checked(), failed], today=TODAY)
    assert drifting.exit_code == 1


def test_one_provider_s_list_says_nothing_about_another_s_models():
    catalog = [Model("gpt-image-2"), Model("grok-imagine-image", "xai")]
    listings = [checked(UpstreamModel("grok-imagine-image"), provider="xai"), checked()]
    assert findings(catalog, *listings) == {("gpt-image-2", "missing_upstream", True)}


def test_the_report_as_a_dict_is_json_ready_and_counts_drift():
    listing = checked(UpstreamModel("gpt-image-2", shutdown_date=day(3)), UpstreamModel("new"))
    report = compare_catalog([Model("gpt-image-2")], [listing], today=TODAY)
    document = report.as_dict()
    assert document["today"] == "2026-11-30" and document["drift_count"] == 2
    assert document["providers"] == [
        {"provider": "openai", "state": "checked", "image_models": 2, "reason": None}
    ]
    soon = next(f for f in document["findings"] if f["kind"] == "shutdown_soon")
    assert soon["upstream_shutdown"] == "2026-12-03" and soon["catalog_shutdown"] is None
    assert report.count("unknown_upstream") == 1 and report.count("missing_upstream") == 0


def test_check_catalog_asks_every_fetcher_in_order():
    asked = []

    def fetcher(provider):
        def fetch():
            asked.append(provider)
            return ProviderListing(provider, "not_checked", reason="no API key configured")

        return fetch

    report = check_catalog([], {p: fetcher(p) for p in ("openai", "xai")}, today=TODAY)
    assert asked == ["openai", "xai"]
    assert [x.provider for x in report.listings] == ["openai", "xai"]


def test_the_service_catalog_covers_every_registry_model_with_its_provider():
    from image_service.registry import MODELS

    catalog = {m.id: m for m in service_catalog()}
    assert set(catalog) == set(MODELS)
    assert all(catalog[i].provider == MODELS[i].provider for i in MODELS)


def test_check_settings_default_to_30_days_and_read_the_acknowledged_list():
    assert CheckSettings.from_environ({}) == CheckSettings(warning_days=30)
    settings = CheckSettings.from_environ(
        {"MODELS_CHECK_WARNING_DAYS": "14", "MODELS_CHECK_ACKNOWLEDGED": " GPT-Image-X , y,"}
    )
    assert settings == CheckSettings(warning_days=14, acknowledged=frozenset({"gpt-image-x", "y"}))


@pytest.mark.parametrize("value", ["0", "366", "-3", "thirty"])
def test_a_bad_warning_window_fails_naming_the_variable(value):
    with pytest.raises(CheckConfigurationError, match="MODELS_CHECK_WARNING_DAYS"):
        CheckSettings.from_environ({"MODELS_CHECK_WARNING_DAYS": value})
