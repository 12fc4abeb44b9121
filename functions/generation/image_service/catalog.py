"""The catalog in force: the shipped ``catalog.json`` with the ops overlay laid over it.

Ops change the catalog without a code deploy by publishing an overlay (JSON) to an SSM
parameter (``CATALOG_OVERLAY_PARAMETER``; locally a file, ``CATALOG_OVERLAY_FILE``)::

    {"models": {"gpt-image-2": {"shutdown_date": "2027-01-15", "successor": "gpt-image-2.6-flare",
                                "pricing": {"per_image": {"high": 0.2}}}},
     "aliases": {"openai": "gpt-image-2.6-flare"},
     "default_model": "gpt-image-2.6-flare"}

Objects merge key by key into the shipped entry, ``null`` removes a key, lists replace; a model
id the shipped catalog lacks adds a model (then it needs every field). The result is validated
exactly like the shipped catalog. A bad overlay never takes the service down: it is rejected
with a log line and a ``CatalogOverlayRejected`` metric and the last good catalog stays; an
unreachable parameter keeps the last good catalog too (``CatalogOverlayUnreachable``); both are
alarmed (``infra/constructs/monitoring.py``, names from ``image_common.metric_names``).

When to read is the source's schedule, on an injected clock: after a good read (a missing
parameter too) not before ``max_age`` — a change, or a first publication, reaches warm
containers within it; after a failed read, or a read of an overlay it rejects, not before
``retry_seconds`` — so an SSM outage or throttling costs each container one read per retry
interval, not one per request, and a rejected overlay is counted again on each re-read while it
stays published (its alarm stays in alarm) without being judged again. The parameter is read
with botocore (``image_service.aws``; no boto3 on the cold path).
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from image_common.metric_names import CATALOG_OVERLAY_REJECTED, CATALOG_OVERLAY_UNREACHABLE
from image_service import aws
from image_service.registry import (
    SHIPPED_CATALOG,
    Catalog,
    ResolvedModel,
    parse_catalog,
    shipped_document,
)
from image_service.telemetry import record_event

OVERLAY_MAX_AGE_SECONDS = 300
# After a failed or rejected read: long enough that an SSM outage or throttling is not met by
# every request of every container, short enough that recovery (or a fixed overlay) shows soon.
OVERLAY_RETRY_SECONDS = 30
# What CatalogSettings reads from the environment.
ENVIRONMENT_VARIABLES = frozenset(
    {"CATALOG_OVERLAY_PARAMETER", "CATALOG_OVERLAY_FILE", "CATALOG_OVERLAY_MAX_AGE_SECONDS",
     "CATALOG_OVERLAY_RETRY_SECONDS", "CATALOG_DATE"}
)  # fmt: skip
OVERLAY_KEYS = frozenset({"$comment", "default_model", "aliases", "models"})
logger = Logger(child=True)

OverlayReader = Callable[[], str | None]  # the overlay's text; None: no overlay published
MetricRecorder = Callable[[str], None]


def utc_today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


class OverlayUnreachable(RuntimeError):
    """The overlay's store could not be read (throttled, no network, no permission)."""


def apply_overlay(document: Mapping[str, Any], overlay: Any) -> dict[str, Any]:
    """The shipped document with ``overlay`` merged in (neither argument is changed)."""
    if not isinstance(overlay, dict):
        raise ValueError("the overlay must be a JSON object")
    unknown = sorted(set(overlay) - OVERLAY_KEYS)
    if unknown:
        raise ValueError(f"unknown overlay keys: {', '.join(unknown)}")
    merged = copy.deepcopy(dict(document))
    if "default_model" in overlay:
        merged["default_model"] = overlay["default_model"]
    aliases = overlay.get("aliases") or {}
    models_overlay = overlay.get("models") or {}
    if not isinstance(aliases, dict) or not isinstance(models_overlay, dict):
        raise ValueError("overlay 'aliases' and 'models' are objects keyed by name")
    merged["aliases"] = _merge(merged.get("aliases") or {}, aliases)
    models = {entry["id"]: entry for entry in merged.get("models") or []}
    for model_id, change in models_overlay.items():
        if change is None:
            models.pop(model_id, None)
        elif not isinstance(change, dict):
            raise ValueError(f"overlay for model '{model_id}' must be an object or null")
        else:
            models[model_id] = _merge(models.get(model_id, {"id": model_id}), change)
    merged["models"] = list(models.values())
    return merged


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in change.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


@dataclass(frozen=True)
class _Rejection:
    text: str
    reason: str


class CatalogSource:
    """The shipped catalog, and the overlay's last good version laid over it, read on a
    schedule: ``max_age_seconds`` after a good read, ``retry_seconds`` after a failed or
    rejected one (``monotonic`` is the clock; tests move it)."""

    def __init__(
        self,
        read_overlay: OverlayReader | None = None,
        *,
        max_age_seconds: float = OVERLAY_MAX_AGE_SECONDS,
        retry_seconds: float = OVERLAY_RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        record_metric: MetricRecorder | None = None,
        document: Mapping[str, Any] | None = None,
    ) -> None:
        self._read_overlay = read_overlay
        self._max_age = max_age_seconds
        self._retry = retry_seconds
        self._monotonic = monotonic
        self._record_metric = record_metric or record_event
        self._document = document if document is not None else shipped_document()
        self._catalog = SHIPPED_CATALOG if document is None else parse_catalog(dict(document))
        self._base = self._catalog  # the catalog with no overlay
        self._applied = "{}"  # the overlay text of the catalog in force ("{}": none)
        self._rejected: _Rejection | None = None  # the last text judged bad, and why
        self._next_read_at = -math.inf
        self._lock = threading.Lock()

    def current(self) -> Catalog:
        if self._read_overlay is None:
            return self._catalog
        with self._lock:
            now = self._monotonic()
            if now < self._next_read_at:
                return self._catalog
            # Claimed as if it will fail: a concurrent caller serves the last good meanwhile.
            self._next_read_at = now + self._retry
        try:
            text = self._read_overlay()
        except OverlayUnreachable as error:
            logger.warning(
                "catalog overlay unreachable; the last good catalog stays",
                extra={"reason": str(error)[:300], "retry_in_seconds": self._retry},
            )
            self._record_metric(CATALOG_OVERLAY_UNREACHABLE)
            return self._catalog
        text = (text or "").strip() or "{}"
        with self._lock:
            if self._adopt(text):
                self._next_read_at = now + self._max_age
            return self._catalog

    def forget(self) -> None:
        """Back to the catalog with no overlay, read again on the next call (after a SnapStart
        restore: what was read before the snapshot is of another time, and its schedule is on
        a clock the restore does not move reliably)."""
        with self._lock:
            self._catalog, self._applied, self._rejected = self._base, "{}", None
            self._next_read_at = -math.inf

    def _adopt(self, text: str) -> bool:
        """Whether ``text`` is in force after this read. A text already rejected is counted
        again, not judged again: the same text gives the same verdict."""
        if text == self._applied:
            return True
        if self._rejected is None or self._rejected.text != text:
            try:
                catalog = parse_catalog(apply_overlay(self._document, json.loads(text)))
            except (ValueError, TypeError, KeyError) as error:  # pydantic's are ValueErrors
                self._rejected = _Rejection(text, str(error)[:1000])
            else:
                logger.info("catalog overlay applied", extra={"models": len(catalog.models)})
                self._catalog, self._applied, self._rejected = catalog, text, None
                return True
        logger.error(
            "catalog overlay rejected; the last good catalog stays",
            extra={"reason": self._rejected.reason, "retry_in_seconds": self._retry},
        )
        self._record_metric(CATALOG_OVERLAY_REJECTED)
        return False


# --- where the overlay lives ------------------------------------------------------------------


def ssm_overlay_reader(name: str) -> OverlayReader:
    """The SSM parameter ``name``, fetched on each call (``CatalogSource`` decides when to
    call); a missing parameter is no overlay. A failure's reason is the AWS error code (e.g.
    ``ThrottlingException``) or the kind of failure (``EndpointConnectionError``)."""

    def read() -> str | None:
        client = aws.client("ssm")
        try:
            return client.get_parameter(Name=name)["Parameter"]["Value"]
        except client.exceptions.ParameterNotFound:
            return None
        except Exception as error:  # botocore's errors: the code or type, never AWS detail
            raise OverlayUnreachable(aws.failure_name(error)) from None

    return read


def file_overlay_reader(path: str) -> OverlayReader:
    """A local file (``make dev``); a missing file is no overlay."""

    def read() -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise OverlayUnreachable(type(error).__name__) from None

    return read


@dataclass(frozen=True)
class CatalogSettings:
    """Where the overlay lives and what day it is, from the environment (read once)."""

    overlay_parameter: str | None = None
    overlay_file: str | None = None
    overlay_max_age_seconds: int = OVERLAY_MAX_AGE_SECONDS
    overlay_retry_seconds: int = OVERLAY_RETRY_SECONDS
    # The local stack and tests pin the service's date (and the emulators') with CATALOG_DATE.
    fixed_date: datetime.date | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CatalogSettings:
        day = environ.get("CATALOG_DATE") or None
        try:
            return cls(
                overlay_parameter=environ.get("CATALOG_OVERLAY_PARAMETER") or None,
                overlay_file=environ.get("CATALOG_OVERLAY_FILE") or None,
                overlay_max_age_seconds=int(
                    environ.get("CATALOG_OVERLAY_MAX_AGE_SECONDS") or OVERLAY_MAX_AGE_SECONDS
                ),
                overlay_retry_seconds=int(
                    environ.get("CATALOG_OVERLAY_RETRY_SECONDS") or OVERLAY_RETRY_SECONDS
                ),
                fixed_date=datetime.date.fromisoformat(day) if day else None,
            )
        except ValueError as error:
            raise ValueError(
                "Invalid configuration: CATALOG_DATE must be YYYY-MM-DD and "
                "CATALOG_OVERLAY_MAX_AGE_SECONDS, CATALOG_OVERLAY_RETRY_SECONDS integers "
                f"({error})"
            ) from None

    def source(self, monotonic: Callable[[], float] = time.monotonic) -> CatalogSource:
        """The catalog source these settings describe. A local file is read on every call (an
        edit shows on the next request; nothing to throttle); SSM on the settings' schedule."""
        if self.overlay_parameter:
            return CatalogSource(
                ssm_overlay_reader(self.overlay_parameter),
                max_age_seconds=self.overlay_max_age_seconds,
                retry_seconds=self.overlay_retry_seconds,
                monotonic=monotonic,
            )
        if self.overlay_file:
            return CatalogSource(
                file_overlay_reader(self.overlay_file), max_age_seconds=0, retry_seconds=0
            )
        return CatalogSource()

    def clock(self) -> Callable[[], datetime.date]:
        if self.fixed_date is not None:
            fixed = self.fixed_date
            return lambda: fixed
        return utc_today


@cache
def catalog_settings() -> CatalogSettings:
    return CatalogSettings.from_environ(os.environ)


@cache
def catalog_source() -> CatalogSource:
    """The container's catalog source, created once."""
    return catalog_settings().source()


def current_catalog() -> Catalog:
    """The whole catalog in force now: shipped file plus the last good overlay."""
    return catalog_source().current()


def today() -> datetime.date:
    """The service's date: UTC today, or the pinned ``CATALOG_DATE`` (local stack, tests)."""
    return catalog_settings().clock()()


def resolve_model(
    requested: str | None, *, enabled_retired: frozenset[str] = frozenset()
) -> ResolvedModel:
    """What serves ``requested`` today, in the catalog in force."""
    return current_catalog().resolve(requested, today=today(), enabled_retired=enabled_retired)


def model_catalog(*, enabled_retired: frozenset[str] = frozenset()) -> dict:
    """Every model and alias with its status today (``GET /image/models``)."""
    return current_catalog().describe(today(), enabled_retired=enabled_retired)
