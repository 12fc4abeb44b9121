"""The service's own CloudWatch metrics: one namespace, one name per fact.

The functions emit these (Powertools EMF, or the authorizer's plain EMF line) and
``infra/constructs/monitoring.py`` alarms on them, both reading this module, so a renamed
metric cannot leave an alarm watching nothing. Standard library only: the authorizer imports it.
"""

from __future__ import annotations

NAMESPACE = "ImageService"
SERVICE_DIMENSION = "service"  # Powertools' default dimension: the function's service name

# Authorizer (functions/authorizer): every deny, and the denies that are our fault.
AUTHORIZER_DENIALS = "AuthorizerDenials"  # also per `reason`
AUTHORIZER_ERRORS = "AuthorizerErrors"  # no verifier (secret or JWKS unreachable) or a bug
REASON_DIMENSION = "reason"

# Generation (direct invoke): one count per failed invoke, per typed error.
INVOKE_FAILURES = "InvokeFailures"
ERROR_TYPE_DIMENSION = "error_type"

# Provider calls, per provider: every call and the failed ones (any typed error).
PROVIDER_CALLS = "ProviderCalls"
PROVIDER_ERRORS = "ProviderErrors"
PROVIDER_DIMENSION = "provider"

# What the service spent at providers (settled cost, USD), in total and per provider.
COST_USD = "GenerationCostUsd"

# Per-customer limits: requests refused before any provider was paid.
LIMIT_REJECTIONS = "LimitRejections"  # per `error_type`: rate_limited, budget_exceeded

# Job callbacks that were never delivered (after every retry): emitted by the job pipeline.
WEBHOOK_DELIVERY_FAILURES = "WebhookDeliveryFailures"

IMAGES_GENERATED = "ImagesGenerated"

# The daily model catalog check (functions/generation/models_check.py), one point a day each.
MODEL_DRIFT_FINDINGS = "ModelDriftFindings"  # findings that need a catalog change (alarmed)
MODELS_MISSING_UPSTREAM = "ModelsMissingUpstream"
MODEL_SHUTDOWNS_NOT_IN_CATALOG = "ModelShutdownsNotInCatalog"
UPSTREAM_MODELS_NOT_IN_CATALOG = "UpstreamModelsNotInCatalog"
MODEL_SHUTDOWNS_WITHIN_WINDOW = "ModelShutdownsWithinWindow"  # handled by the catalog or not
MODEL_LISTS_CHECKED = "ModelListsChecked"
MODEL_LIST_FAILURES = "ModelListFailures"  # alarmed

# The catalog overlay (image_service/catalog.py): a read that kept the last good catalog because
# the published overlay was invalid, or its parameter could not be read (both alarmed).
CATALOG_OVERLAY_REJECTED = "CatalogOverlayRejected"
CATALOG_OVERLAY_UNREACHABLE = "CatalogOverlayUnreachable"

# A request served a provider key from its stale grace (image_common/credentials.py): the secret
# could not be read and the last good key, past its max age, was used (alarmed: a rotated key
# may stop working when the grace ends).
PROVIDER_KEY_STALE_SERVED = "ProviderKeyStaleServed"

# Cold starts, from Lambda's own report records (metric filters on the SnapStart functions' log
# groups, infra/constructs/monitoring.py; no code emits them). A filter cannot give a dimension a
# fixed value, so each metric's name ends in the stage's service name and the function's id.
RESTORE_DURATION = "RestoreDuration"  # SnapStart: restoring a version's snapshot (alarmed)
INIT_DURATION = "InitDuration"  # an on-demand init ($LATEST, or a version before its snapshot)
