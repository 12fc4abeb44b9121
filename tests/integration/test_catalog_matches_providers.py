"""The shipped catalog against the emulated providers' own model lists: on the test date and
on each side of every shutdown the providers announced, the drift check finds nothing to
change — the catalog and the providers' calendar agree (dates from the emulators' lifecycle
table, never from the catalog)."""

from __future__ import annotations

import datetime

import pytest

from image_service.model_drift import check_catalog, service_catalog
from image_service.registry import PROVIDERS
from image_service.upstream_models import listing_fetchers
from local.emulators.lifecycle import SHUTDOWN_DATES
from tests.conftest import TEST_DATE

ONE_DAY = datetime.timedelta(days=1)
DAYS = sorted(
    {TEST_DATE}
    | {d + delta for dates in SHUTDOWN_DATES.values() for d in dates.values()
       for delta in (-ONE_DAY, datetime.timedelta(0))}
)  # fmt: skip


@pytest.mark.parametrize("day", DAYS, ids=str)
def test_the_catalog_has_no_drift_against_the_providers_lists(emulators, day):
    for emulator in emulators.values():
        emulator.clock = lambda: day
    report = check_catalog(service_catalog(), listing_fetchers(PROVIDERS), today=day)
    assert [x.state for x in report.listings if x.provider in ("openai", "google", "xai")] == [
        "checked"
    ] * 3
    assert [f.as_dict() for f in report.drift] == []
    assert report.exit_code == 0


def test_on_the_test_date_the_december_shutdowns_show_as_handled(emulators):
    report = check_catalog(service_catalog(), listing_fetchers(PROVIDERS), today=TEST_DATE)
    handled = {f.model for f in report.findings if f.kind == "shutdown_soon" and not f.drift}
    assert {"gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"} <= handled
