"""The local stack, started once for the e2e tests, and what they need to talk to it.

Package-scoped rather than session-scoped: the stack changes process-wide state (environment
variables, moto's in-memory backends, the handlers' cached clients), so it stops — and puts all
of that back — as soon as the last e2e test has run, before any other suite's tests run.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import boto3
import httpx
import pytest

from image_common.provider_identity import PROVIDERS
from image_common.settings import get_settings
from local.stack import LocalStack
from local.token import mint_token
from tests.webhook_receiver import WebhookReceiver

E2E_DATE = datetime.date(2026, 11, 30)  # the stack's calendar: service and emulators
E2E_JWT_SECRET = "e2e-test-secret-0123456789abcdef-0123456789"  # HS256: at least 32 bytes


# Compressed time: the request waits 6 s for a job (20 s deployed; room for a fast generation
# on a busy machine) and a failed webhook is retried after 1 s (5 s deployed), so a "40 s"
# generation is a [delay=10] one here.
E2E_JOB_WAIT_SECONDS = "6"
E2E_WEBHOOK_RETRY_SCHEDULE = "1,1"


@dataclass
class RunningStack:
    stack: LocalStack
    base_url: str
    receiver: WebhookReceiver

    def token(
        self,
        customer_id: int = 1,
        *,
        scopes: Iterable[str] = (),
        ttl_seconds: int = 3600,
        secret: str = E2E_JWT_SECRET,
        now: float | None = None,
    ) -> str:
        return mint_token(
            customer_id, scopes=scopes, ttl_seconds=ttl_seconds, secret=secret, now=now
        )

    def auth(self, customer_id: int = 1, **kwargs) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(customer_id, **kwargs)}"}

    def s3(self):
        return boto3.client("s3", endpoint_url=self.stack.s3_endpoint)

    def openai_calls(self, prompt: str) -> int:
        """Provider calls the OpenAI emulator received for this prompt."""
        calls = 0
        for request in self.stack.emulators["openai"].requests:
            try:
                calls += request.json().get("prompt") == prompt
            except ValueError:
                continue
        return calls

    def dynamodb(self):
        return boto3.client("dynamodb", endpoint_url=self.stack.dynamodb_endpoint)


@pytest.fixture(scope="package")
def local_stack() -> Iterator[RunningStack]:
    """The stack on a free port, as on a fresh machine: no provider keys, no AWS endpoint; a
    webhook receiver on loopback whose origin the stack trusts."""
    receiver = WebhookReceiver().start()
    with pytest.MonkeyPatch.context() as env:
        for identity in PROVIDERS.values():
            env.delenv(identity.api_key_variable, raising=False)
            env.delenv(identity.base_url_variable, raising=False)
        for name in (
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "USAGE_TABLE",
            "WEBHOOK_SECRET",  # the stack's own dev secret, as on a fresh machine
            "JOBS_TABLE",
        ):
            env.delenv(name, raising=False)
        for identity in PROVIDERS.values():
            env.delenv(identity.secret_arn_variable, raising=False)
        # Generous defaults: the suite sends many requests as customer 1 within a minute; the
        # limit tests give their own customers tight limits (an item in the usage table).
        env.setenv("RATE_LIMIT_PER_MINUTE", "100000")
        env.setenv("DAILY_BUDGET_USD", "100000")
        env.setenv("MONTHLY_BUDGET_USD", "100000")
        env.setenv("JOB_WAIT_SECONDS", E2E_JOB_WAIT_SECONDS)
        env.setenv("WEBHOOK_RETRY_SCHEDULE", E2E_WEBHOOK_RETRY_SCHEDULE)
        env.setenv("TRUSTED_CALLBACK_ORIGINS", receiver.origin)
        for name in ("JWT_SECRET_ARN", "JWT_JWKS_URL"):
            env.delenv(name, raising=False)
        env.setenv("JWT_SECRET", E2E_JWT_SECRET)
        stack = LocalStack(port=0, today=E2E_DATE).start()
        try:
            yield RunningStack(stack=stack, base_url=stack.base_url, receiver=receiver)
        finally:
            stack.stop()
            receiver.stop()
    # The stack re-read the settings while this fixture's variables were still in place: read
    # them again from the test session's own environment, now restored.
    get_settings.cache_clear()
    generation = sys.modules.get("generation")
    if generation is not None:  # its module-level settings too, as a fresh import would have
        generation.settings = get_settings()
        generation.image_service.cache_clear()


@pytest.fixture(scope="package")
def api(local_stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_stack.base_url, timeout=20) as client:
        yield client
