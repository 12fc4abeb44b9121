"""``make models-check``: the daily model catalog check, from a terminal, as a table.

    python -m local.models_check [--today YYYY-MM-DD] [--warning-days N] [--no-emulators] [--json]

Each provider is reached as the service reaches it (``{PREFIX}_API_KEY``, ``{PREFIX}_BASE_URL``).
One with neither gets its emulator, started in-process on 127.0.0.1 as ``make dev`` starts them
(``--no-emulators``: it is reported as not checked instead). ``EMULATOR_PLANTED_MODELS`` plants
models or shutdown dates in those emulators (``local/emulators/model_lists.py``), which list
models as of the check's day.

Exit status: 0 no drift and every published list read; 1 drift found (the catalog must change);
2 no drift seen, but a provider's list could not be read; 64 bad arguments or settings.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from local.stack import EMULATOR_API_KEY, HOST, LAMBDA_CODE_PATHS

USAGE_ERROR = 64  # EX_USAGE


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for path in reversed(LAMBDA_CODE_PATHS):  # import the service code as Lambda does
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    from image_service.model_drift import CheckConfigurationError, CheckSettings

    try:
        settings = CheckSettings.from_environ(os.environ)
    except CheckConfigurationError as error:
        print(error, file=sys.stderr)
        return USAGE_ERROR
    warning_days = args.warning_days or settings.warning_days
    try:
        today = args.today or _service_today()
        with _providers(today, start_emulators=not args.no_emulators) as started:
            report = _run(today, warning_days, settings.acknowledged)
    except ValueError as error:  # a bad CATALOG_DATE or EMULATOR_PLANTED_MODELS
        print(error, file=sys.stderr)
        return USAGE_ERROR
    print(json.dumps(report.as_dict(), indent=2) if args.json else render(report, started))
    return report.exit_code


def _service_today() -> datetime.date:
    """The service's calendar: ``CATALOG_DATE`` when pinned (local stack), else UTC today."""
    from image_service.catalog import CatalogSettings

    return CatalogSettings.from_environ(os.environ).clock()()


def _run(today: datetime.date, warning_days: int, acknowledged: frozenset[str]):
    from image_service.model_drift import check_catalog, service_catalog
    from image_service.registry import PROVIDERS
    from image_service.upstream_models import listing_fetchers

    return check_catalog(
        service_catalog(),
        listing_fetchers(PROVIDERS),
        today=today,
        warning_days=warning_days,
        acknowledged=acknowledged,
    )


@contextmanager
def _providers(today: datetime.date, *, start_emulators: bool) -> Iterator[set[str]]:
    """Emulators for the providers that publish a list and have no key or base URL of their own;
    the environment and the service's HTTP client are put back afterwards."""
    from image_common.provider_identity import PROVIDERS
    from image_service import http
    from image_service.upstream_models import MODEL_LIST_READERS
    from local.emulators import EMULATORS, served_base_url
    from local.emulators.model_lists import PLANT_VARIABLE, plant_models

    saved = dict(os.environ)
    servers: list[Any] = []
    listings = {}
    try:
        for provider in MODEL_LIST_READERS:
            identity = PROVIDERS[provider]
            configured = os.environ.get(identity.api_key_variable) or os.environ.get(
                identity.base_url_variable
            )
            if configured or not start_emulators:
                continue
            emulator = EMULATORS[provider](clock=lambda: today)  # the check's day is theirs
            servers.append(emulator.serve(HOST, 0))
            os.environ[identity.base_url_variable] = served_base_url(emulator)
            os.environ[identity.api_key_variable] = EMULATOR_API_KEY
            listings[provider] = emulator.model_listing
        plant_models(listings, os.environ.get(PLANT_VARIABLE, ""))
        http.set_http_client(None)  # a fresh client for this run
        yield set(listings)
    finally:
        # In parallel: each server notices a shutdown only at its next poll (0.5 s).
        stopping = [threading.Thread(target=server.shutdown, daemon=True) for server in servers]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join(timeout=5)
        for server in servers:
            server.server_close()
        http.set_http_client(None)
        os.environ.clear()
        os.environ.update(saved)


# --- the table -------------------------------------------------------------------------------

STATE_TEXT = {
    "checked": "checked",
    "not_checked": "not checked",
    "no_model_list": "no model list",
    "failed": "FAILED",
}
KIND_TEXT = {
    "missing_upstream": "missing upstream",
    "shutdown_past": "shut down upstream",
    "shutdown_soon": "shutdown soon",
    "shutdown_scheduled": "shutdown announced",
    "unknown_upstream": "not in catalog",
}


def render(report, emulated: Collection[str] = ()) -> str:
    lines = [
        f"Model catalog check for {report.today} "
        f"(shutdowns within {report.warning_days} days are flagged)",
        "",
    ]
    providers = [
        (
            listing.provider,
            STATE_TEXT[listing.state],
            str(len(listing.models)) if listing.state == "checked" else "-",
            "; ".join(filter(None, ("emulator" * (listing.provider in emulated), listing.reason))),
        )
        for listing in report.listings
    ]
    lines += _table(("provider", "model list", "image models", "note"), providers)
    lines.append("")
    if report.findings:
        rows = [
            (
                "DRIFT" if f.drift else "info",
                f.provider,
                f.model,
                KIND_TEXT[f.kind],
                _day(f.upstream_shutdown),
                _day(f.catalog_shutdown),
                f.message,
            )
            for f in sorted(report.findings, key=lambda f: (not f.drift, f.provider, f.model))
        ]
        headers = ("", "provider", "model", "finding", "upstream", "catalog", "what to do")
        lines += _table(headers, rows)
        lines.append("")
    else:
        lines += ["No findings: the catalog matches every list that was read.", ""]
    drift, failed = len(report.drift), len(report.failed)
    verdict = {
        0: "no drift",
        1: f"{drift} drift finding(s): the catalog must change (docs/providers.md)",
        2: f"no drift seen, but {failed} model list(s) could not be read",
    }[report.exit_code]
    lines.append(f"Result: {verdict} (exit {report.exit_code})")
    return "\n".join(lines)


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    widths[-1] = 0  # the last column runs free
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]


def _day(value: datetime.date | None) -> str:
    return value.isoformat() if value else "-"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local.models_check",
        description="Compare the model catalog with the providers' model lists.",
    )
    parser.add_argument(
        "--today",
        type=datetime.date.fromisoformat,
        help="check as of this day (YYYY-MM-DD; default: $CATALOG_DATE, else today in UTC)",
    )
    parser.add_argument(
        "--warning-days",
        type=int,
        choices=range(1, 366),
        metavar="N",
        help="flag shutdowns within N days (default $MODELS_CHECK_WARNING_DAYS or 30)",
    )
    parser.add_argument(
        "--no-emulators",
        action="store_true",
        help="check only providers with a key or base URL; report the others as not checked",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


if __name__ == "__main__":
    sys.exit(main())
