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
alarmed (``infra/constructs/monitoring.py``, names from ``image_common.metric_names``). The
parameter is read with botocore (``image_service.aws``; no boto3 on the cold path) and kept for
``max_age``, so a change — or a first publication — reaches warm containers within that time.
"""

from __future__ import annotations

import copy
import datetime
import json
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
from image_service.registry import (
    SHIPPED_CATALOG,
    Catalog,
    ResolvedModel,
    parse_catalog,
    shipped_document,
)
from image_service.telemetry import record_event

OVERLAY_MAX_AGE_SECONDS = 300
# What CatalogSettings reads from the environment.
ENVIRONMENT_VARIABLES = frozenset(
    {"CATALOG_OVERLAY_PARAMETER", "CATALOG_OVERLAY_FILE", "CATALOG_OVERLAY_MAX_AGE_SECONDS",
     "CATALOG_DATE"}
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


class CatalogSource:
    """The shipped catalog, and the overlay's last good version laid over it."""

    def __init__(
        self,
        read_overlay: OverlayReader | None = None,
        *,
        record_metric: MetricRecorder | None = None,
        document: Mapping[str, Any] | None = None,
    ) -> None:
        self._read_overlay = read_overlay
        self._record_metric = record_metric or record_event
        self._document = document if document is not None else shipped_document()
        self._catalog = SHIPPED_CATALOG if document is None else parse_catalog(dict(document))
        self._seen_overlay: str | None = None  # the text that produced (or failed) the last try
        self._lock = threading.Lock()

    def current(self) -> Catalog:
        if self._read_overlay is None:
            return self._catalog
        try:
            text = self._read_overlay()
        except OverlayUnreachable as error:
            logger.warning(
                "catalog overlay unreachable; the last good catalog stays",
                extra={"reason": str(error)[:300]},
            )
            self._record_metric(CATALOG_OVERLAY_UNREACHABLE)
            return self._catalog
        text = (text or "").strip() or "{}"
        with self._lock:
            if text != self._seen_overlay:
                self._seen_overlay = text
                self._adopt(text)
            return self._catalog

    def _adopt(self, text: str) -> None:
        try:
            catalog = parse_catalog(apply_overlay(self._document, json.loads(text)))
        except (ValueError, TypeError, KeyError) as error:  # pydantic's errors are ValueErrors
            logger.error(
                "catalog overlay rejected; the last good catalog stays",
                extra={"reason": str(error)[:1000]},
            )
            self._record_metric(CATALOG_OVERLAY_REJECTED)
            return
        logger.info("catalog overlay applied", extra={"models": len(catalog.models)})
        self._catalog = catalog


# --- where the overlay lives ------------------------------------------------------------------


@cache
def get_ssm_client():
    """One client per container (``image_service.aws``: botocore, no boto3 on the cold path)."""
    from image_service import aws

    return aws.client(
        "ssm", connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"}
    )


def ssm_overlay_reader(
    name: str,
    max_age: int = OVERLAY_MAX_AGE_SECONDS,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> OverlayReader:
    """The SSM parameter ``name``, read at most once per ``max_age`` seconds (``clock``); a
    missing parameter is no overlay — and is also looked up again only after ``max_age``. A
    failed read is not kept: the next call tries again."""
    kept: list[tuple[float, str | None]] = []  # (read at, value)

    def read() -> str | None:
        now = clock()
        if kept and now - kept[0][0] < max_age:
            return kept[0][1]
        client = get_ssm_client()
        try:
            value = client.get_parameter(Name=name)["Parameter"]["Value"]
        except client.exceptions.ParameterNotFound:
            value = None
        except Exception as error:  # botocore's errors: the type only, never AWS detail
            raise OverlayUnreachable(type(error).__name__) from None
        kept[:] = [(now, value)]
        return value

    return read


def file_overlay_reader(path: str) -> OverlayReader:
    """A local file (``make dev``): re-read on every call; a missing file is no overlay."""

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
                fixed_date=datetime.date.fromisoformat(day) if day else None,
            )
        except ValueError as error:
            raise ValueError(
                "Invalid configuration: CATALOG_DATE must be YYYY-MM-DD and "
                f"CATALOG_OVERLAY_MAX_AGE_SECONDS an integer ({error})"
            ) from None

    def reader(self) -> OverlayReader | None:
        if self.overlay_parameter:
            return ssm_overlay_reader(self.overlay_parameter, self.overlay_max_age_seconds)
        if self.overlay_file:
            return file_overlay_reader(self.overlay_file)
        return None

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
    return CatalogSource(catalog_settings().reader())


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
