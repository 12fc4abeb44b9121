"""Secrets Manager: one secret per provider API key, the authorizer's JWT secret and the
webhook signing secret.

One secret per provider, so that each function is granted exactly the keys it uses (the job
poll task: Black Forest Labs' only). A provider secret holds ``{"api_key": "…"}``. The template
holds ARNs only. A secret the stack creates starts with a generated value (random for the JWT
secret, a placeholder JSON object without ``api_key`` for a provider: "not configured" until
ops set it with ``aws secretsmanager put-secret-value``, docs/deploy.md). A stage may instead
point at existing secrets by their complete ARNs.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.nag import acknowledge
from infra.service_code import PROVIDERS
from infra.settings import StageSettings

JWT_SECRET_LENGTH = 64  # characters; HS256 needs at least 32 bytes
WEBHOOK_SECRET_KEY = "WEBHOOK_SECRET"
WEBHOOK_SECRET_LENGTH = 32
WEBHOOK_ROTATION_REASON = (
    "Webhook receivers verify signatures with this secret: rotating it is a change agreed with "
    "them (Standard Webhooks allows several signatures during the switch), not a Lambda's job. "
    "Ops rotate it with put-secret-value; the notify function re-reads it within the hour."
)
ROTATION_REASON = (
    "Provider API keys are issued and rotated in each provider's console, and the JWT secret "
    "is shared with the token issuer: neither can be rotated by a Lambda alone. Ops rotate "
    "them with put-secret-value (docs/deploy.md); functions re-read them within the hour."
)


class ServiceSecrets(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: StageSettings) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if settings.storage.retain_data else RemovalPolicy.DESTROY
        prefix = settings.resource_prefix

        self.provider_keys: dict[str, secretsmanager.ISecret] = {}
        for name, provider in PROVIDERS.items():
            construct_id = f"{provider.env_prefix.title()}ApiKey"
            existing = settings.provider_secret_arns.get(name)
            if existing:
                self.provider_keys[name] = secretsmanager.Secret.from_secret_complete_arn(
                    self, construct_id, existing
                )
                continue
            secret = secretsmanager.Secret(
                self,
                construct_id,
                secret_name=f"{prefix}/providers/{name}",
                description=f'The {name} API key as {{"api_key": "…"}}',
                # A generated placeholder keeps any value out of the template; ops replace it.
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template="{}",
                    generate_string_key="placeholder",
                ),
                removal_policy=removal,
            )
            acknowledge(secret, "SMG4", ROTATION_REASON)
            self.provider_keys[name] = secret

        self.jwt_secret: secretsmanager.ISecret | None = None
        if settings.jwt.mode == "secret":
            if settings.jwt.secret_arn:
                self.jwt_secret = secretsmanager.Secret.from_secret_complete_arn(
                    self, "JwtSecret", settings.jwt.secret_arn
                )
            else:
                self.jwt_secret = secretsmanager.Secret(
                    self,
                    "JwtSecret",
                    secret_name=f"{prefix}/jwt-hs256-secret",
                    description="HS256 key the authorizer verifies bearer tokens with",
                    generate_secret_string=secretsmanager.SecretStringGenerator(
                        password_length=JWT_SECRET_LENGTH, exclude_punctuation=True
                    ),
                    removal_policy=removal,
                )
                acknowledge(self.jwt_secret, "SMG4", ROTATION_REASON)

        # Standard Webhooks' secret: "whsec_" + base64 of the key. Generated as 32 characters of
        # the base64 alphabet (24 bytes of key) under WEBHOOK_SECRET; the function adds the
        # prefix. Ops may put their own whsec_… value there instead (docs/jobs.md).
        if settings.jobs.webhook_secret_arn:
            self.webhook_secret = secretsmanager.Secret.from_secret_complete_arn(
                self, "WebhookSecret", settings.jobs.webhook_secret_arn
            )
        else:
            self.webhook_secret = secretsmanager.Secret(
                self,
                "WebhookSecret",
                secret_name=f"{prefix}/webhook-signing-secret",
                description="Standard Webhooks signing secret for job callbacks (WEBHOOK_SECRET)",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template="{}",
                    generate_string_key=WEBHOOK_SECRET_KEY,
                    password_length=WEBHOOK_SECRET_LENGTH,
                    exclude_punctuation=True,
                ),
                removal_policy=removal,
            )
            acknowledge(self.webhook_secret, "SMG4", WEBHOOK_ROTATION_REASON)

    def allow_reading_webhook_secret(self, grantee: iam.IGrantable) -> None:
        _allow_get_secret_value(grantee, self.webhook_secret)

    def allow_reading_provider_keys(self, grantee: iam.IGrantable, providers) -> None:
        for provider in providers:
            _allow_get_secret_value(grantee, self.provider_keys[provider])

    def allow_reading_jwt_secret(self, grantee: iam.IGrantable) -> None:
        if self.jwt_secret is not None:
            _allow_get_secret_value(grantee, self.jwt_secret)


def _allow_get_secret_value(grantee: iam.IGrantable, secret: secretsmanager.ISecret) -> None:
    # GetSecretValue on this one secret only (grant_read would add DescribeSecret too).
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["secretsmanager:GetSecretValue"], resources=[secret.secret_arn]
        )
    )
