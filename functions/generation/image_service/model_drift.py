"""Catalog drift: the model catalog compared with the providers' own model lists.

Providers retire image models every few months; a model the catalog still serves after its
shutdown answers "not found" for every customer. This module compares, for one day (``today``,
always passed in: the check has no clock of its own), what the catalog believes with what each
provider lists, and says what to do before the outage:

- ``missing_upstream``: a model the catalog serves is gone from the provider's list;
- ``shutdown_soon`` / ``shutdown_past``: the provider announces a shutdown within the warning
  window (or one already past) that the catalog does not carry;
- ``unknown_upstream``: the provider lists an image model the catalog does not know.

A finding the catalog already handles (the same shutdown date: the service moves to the
successor on that day by itself) is reported for information and is not drift. Fetching the
lists is ``upstream_models``; the entry points (``models_check.handler``, ``make models-check``)
turn a ``DriftReport`` into metrics, a log line or a table.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

DEFAULT_WARNING_DAYS = 30

FindingKind = Literal[
    "missing_upstream", "shutdown_past", "shutdown_soon", "shutdown_scheduled", "unknown_upstream"
]
ListState = Literal["checked", "not_checked", "no_model_list", "failed"]


class CatalogModel(Protocol):
    """What the check needs of a catalog entry (the registry's model specs have these)."""

    @property
    def id(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def shutdown_date(self) -> datetime.date | None: ...


@dataclass(frozen=True)
class UpstreamModel:
    """One image model as a provider lists it."""

    id: str
    shutdown_date: datetime.date | None = None
    aliases: tuple[str, ...] = ()  # other ids the provider accepts for it (xAI)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


@dataclass(frozen=True)
class ProviderListing:
    """The outcome of asking one provider: its image models, or why there are none."""

    provider: str
    state: ListState
    models: tuple[UpstreamModel, ...] = ()
    reason: str = ""  # for not_checked / no_model_list / failed: a safe, short sentence


@dataclass(frozen=True)
class Finding:
    provider: str
    model: str
    kind: FindingKind
    drift: bool  # True: the catalog must change; False: already handled, for information
    message: str
    upstream_shutdown: datetime.date | None = None
    catalog_shutdown: datetime.date | None = None

    def as_dict(self) -> dict:
        return {
            "provider": self.provider,
            "model": self.model,
            "kind": self.kind,
            "drift": self.drift,
            "message": self.message,
            "upstream_shutdown": _iso(self.upstream_shutdown),
            "catalog_shutdown": _iso(self.catalog_shutdown),
        }


@dataclass(frozen=True)
class DriftReport:
    today: datetime.date
    warning_days: int
    listings: tuple[ProviderListing, ...]
    findings: tuple[Finding, ...] = field(default=())

    @property
    def drift(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.drift)

    @property
    def failed(self) -> tuple[ProviderListing, ...]:
        return tuple(listing for listing in self.listings if listing.state == "failed")

    def count(self, kind: FindingKind, *, drift_only: bool = True) -> int:
        return sum(1 for f in self.findings if f.kind == kind and (f.drift or not drift_only))

    @property
    def exit_code(self) -> int:
        """0: no drift and every list read; 1: drift found; 2: no drift seen, but a list failed."""
        if self.drift:
            return 1
        return 2 if self.failed else 0

    def as_dict(self) -> dict:
        return {
            "today": self.today.isoformat(),
            "warning_days": self.warning_days,
            "drift_count": len(self.drift),
            "failed_lists": len(self.failed),
            "providers": [
                {
                    "provider": listing.provider,
                    "state": listing.state,
                    "image_models": len(listing.models) if listing.state == "checked" else None,
                    "reason": listing.reason or None,
                }
                for listing in self.listings
            ],
            "findings": [f.as_dict() for f in self.findings],
        }


# --- the comparison ---------------------------------------------------------------------------


def compare_catalog(
    catalog: Iterable[CatalogModel],
    listings: Sequence[ProviderListing],
    *,
    today: datetime.date,
    warning_days: int = DEFAULT_WARNING_DAYS,
    acknowledged: frozenset[str] = frozenset(),
) -> DriftReport:
    """Every finding for the providers whose list was read; the others are named in the report.

    ``acknowledged``: upstream ids ops chose not to add (e.g. a dated snapshot); they are still
    reported, but not as drift."""
    by_provider: dict[str, list[CatalogModel]] = {}
    for model in catalog:
        by_provider.setdefault(model.provider, []).append(model)
    horizon = today + datetime.timedelta(days=warning_days)
    findings: list[Finding] = []
    for listing in listings:
        if listing.state == "checked":
            findings += _compare_provider(
                by_provider.get(listing.provider, []),
                listing,
                today=today,
                horizon=horizon,
                acknowledged=acknowledged,
            )
    return DriftReport(
        today=today, warning_days=warning_days, listings=tuple(listings), findings=tuple(findings)
    )


def _compare_provider(
    catalog: Sequence[CatalogModel],
    listing: ProviderListing,
    *,
    today: datetime.date,
    horizon: datetime.date,
    acknowledged: frozenset[str],
) -> list[Finding]:
    upstream: dict[str, UpstreamModel] = {}
    for model in listing.models:
        for name in model.names:
            upstream.setdefault(name, model)
    findings: list[Finding] = []
    matched: set[str] = set()
    for model in sorted(catalog, key=lambda m: m.id):
        live = model.shutdown_date is None or model.shutdown_date > today
        listed = upstream.get(model.id)
        if listed is None:
            if live:  # a model past its catalog shutdown date is expected to be gone
                findings.append(_missing(listing.provider, model))
            continue
        matched.add(listed.id)
        finding = _shutdown_finding(listing.provider, model, listed, today, horizon, live=live)
        if finding is not None:
            findings.append(finding)
    for model in sorted(listing.models, key=lambda m: m.id):
        if model.id not in matched:
            findings.append(_unknown(listing.provider, model, horizon, acknowledged))
    return findings


def _missing(provider: str, model: CatalogModel) -> Finding:
    return Finding(
        provider=provider,
        model=model.id,
        kind="missing_upstream",
        drift=True,
        message="gone from the provider's list (requests fail): set shutdown_date and successor",
        catalog_shutdown=model.shutdown_date,
    )


def _shutdown_finding(
    provider: str,
    model: CatalogModel,
    listed: UpstreamModel,
    today: datetime.date,
    horizon: datetime.date,
    *,
    live: bool,
) -> Finding | None:
    announced = listed.shutdown_date
    if announced is None:
        return None
    agrees = model.shutdown_date == announced
    common = {
        "provider": provider,
        "model": model.id,
        "upstream_shutdown": announced,
        "catalog_shutdown": model.shutdown_date,
    }
    if announced <= today:
        if not live:  # the catalog has already moved on; the provider is slow to unlist it
            return None
        return Finding(
            kind="shutdown_past",
            drift=True,
            message=f"shut down on {announced}, still served: set shutdown_date and successor",
            **common,
        )
    days = _days((announced - today).days)
    if announced <= horizon:
        return Finding(
            kind="shutdown_soon",
            drift=not agrees,
            message=(
                f"shuts down in {days}; the catalog moves to its successor that day"
                if agrees
                else f"shuts down in {days}, not in the catalog: set shutdown_date and successor"
            ),
            **common,
        )
    if agrees:
        return None
    return Finding(
        kind="shutdown_scheduled",
        drift=False,
        message=f"shuts down in {days} (beyond the warning window): record the date",
        **common,
    )


def _unknown(
    provider: str, model: UpstreamModel, horizon: datetime.date, acknowledged: frozenset[str]
) -> Finding:
    retiring = model.shutdown_date is not None and model.shutdown_date <= horizon
    if retiring:  # a model that is itself about to go is not worth adding
        message, drift = f"not worth adding: it shuts down on {model.shutdown_date}", False
    elif set(model.names) & acknowledged:
        message, drift = "acknowledged as not wanted (MODELS_CHECK_ACKNOWLEDGED)", False
    else:
        message, drift = "a new model: add it to the catalog (or acknowledge it)", True
    return Finding(
        provider=provider,
        model=model.id,
        kind="unknown_upstream",
        drift=drift,
        message=message,
        upstream_shutdown=model.shutdown_date,
    )


# --- running the check ------------------------------------------------------------------------


class CheckConfigurationError(RuntimeError):
    """Raised at cold start; the message names the variable at fault."""


@dataclass(frozen=True)
class CheckSettings:
    """``MODELS_CHECK_WARNING_DAYS`` (default 30): how far ahead a shutdown is worth a warning;
    ``MODELS_CHECK_ACKNOWLEDGED``: comma-separated upstream ids not to count as drift."""

    warning_days: int = DEFAULT_WARNING_DAYS
    acknowledged: frozenset[str] = frozenset()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CheckSettings:
        raw = environ.get("MODELS_CHECK_WARNING_DAYS", "") or str(DEFAULT_WARNING_DAYS)
        if not raw.isdigit() or not 1 <= int(raw) <= 365:
            raise CheckConfigurationError(
                f"MODELS_CHECK_WARNING_DAYS must be a whole number of days from 1 to 365, "
                f"not {raw!r}"
            )
        names = environ.get("MODELS_CHECK_ACKNOWLEDGED", "")
        return cls(
            warning_days=int(raw),
            acknowledged=frozenset(n.strip().lower() for n in names.split(",") if n.strip()),
        )


ListFetcher = Callable[[], ProviderListing]


def check_catalog(
    catalog: Iterable[CatalogModel],
    fetchers: Mapping[str, ListFetcher],
    *,
    today: datetime.date,
    warning_days: int = DEFAULT_WARNING_DAYS,
    acknowledged: frozenset[str] = frozenset(),
) -> DriftReport:
    """Ask each provider (one fetcher each, in order) and compare the catalog with the answers."""
    listings = [fetch() for fetch in fetchers.values()]
    return compare_catalog(
        catalog, listings, today=today, warning_days=warning_days, acknowledged=acknowledged
    )


def _days(count: int) -> str:
    return "1 day" if count == 1 else f"{count} days"


def _iso(value: datetime.date | None) -> str | None:
    return value.isoformat() if value else None


# --- the service's catalog --------------------------------------------------------------------


def service_catalog() -> list[CatalogModel]:
    """The models the service serves, as the check sees them: the catalog in force (the shipped
    ``catalog.json`` with the ops overlay), whose specs carry their shutdown dates."""
    from image_service.catalog import current_catalog

    return list(current_catalog().models)
