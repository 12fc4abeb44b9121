"""Lambda SnapStart: what runs before the snapshot, and after each restore from it.

Why: the run step's first request spent ~500 ms of its ~956 ms cold start on AWS setup done once
per container (docs/performance.md) — botocore's import, its session and clients (DynamoDB and
S3 ~100 ms each, SSM ~40 ms: JSON service models, endpoint rulesets), the provider HTTP client
(its SSL context). ``before_snapshot`` does that work once, into the snapshot.

A snapshot is restored hours later, in many environments at once, so **nothing read from the
network, no data and no open connection may be in it**: no overlay from SSM, no secret, no
AWS call — not even the credentials botocore would look up when a client is made (they are
looked up on the first signed request instead). ``after_restore`` drops what restored
environments must not share or trust.

Credentials: under SnapStart Lambda gives the function no ``AWS_SESSION_TOKEN``; botocore gets
credentials from the container credentials endpoint instead (AWS re:Post reports and AWS's
SnapStart docs say so for Java; UNVERIFIED for Python here). The Parameters and Secrets
extension authenticates its callers with that token, so under SnapStart provider keys are read
from Secrets Manager with botocore, whichever way that turns out. Without SnapStart the hooks
never run and nothing changes (the extension stays the reader).
"""

from __future__ import annotations

import os
import random
import ssl  # loaded already: httpx and botocore import it


def before_snapshot() -> None:
    """Create, once, what a first request would otherwise create — holding no data, opening
    no connection — and read provider keys from Secrets Manager from now on."""
    from image_common.credentials import provider_secrets
    from image_service import aws, catalog, http, secrets_manager

    aws.look_up_credentials_on_first_use()  # before the first client: none may look them up
    for service in aws.CLIENT_CONFIG:  # every client the service uses; no AWS call yet
        aws.client(service)
    http.get_http_client()  # its SSL context
    catalog.catalog_source()  # the catalog shipped in the code folder; no overlay read
    provider_secrets.read = secrets_manager.read_secret_string


def after_restore() -> None:
    """Forget what environments restored from one snapshot must not share or trust."""
    from image_common.credentials import provider_secrets
    from image_service import aws, catalog

    # random's state is in the snapshot: every restored environment would draw the same
    # numbers (botocore's retry jitter among them) unless it is seeded again, from os.urandom.
    random.seed()
    # So is OpenSSL's own generator (TLS handshakes to AWS and the providers), used when the
    # clients' SSL contexts were made: fresh entropy reaches it on its next use. Whether a
    # restore reseeds it anyway is not documented for Python; this costs microseconds.
    ssl.RAND_add(os.urandom(48), 48.0)
    # Their schedules are on time.monotonic, which a restore does not move reliably.
    provider_secrets.clear()
    catalog.catalog_source().forget()
    aws.forget_credentials()  # none were looked up before the snapshot; if ever, not reused


def register() -> None:
    """Register the hooks with Lambda's ``snapshot_restore_py`` (shipped in its managed Python
    runtimes; they run only for a function with SnapStart on). Elsewhere it does nothing."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:  # not in Lambda (tests, the local stack)
        return
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
