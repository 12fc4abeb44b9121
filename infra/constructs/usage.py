"""DynamoDB: the usage table behind per-customer rate limits and spend budgets.

One table, ``pk`` (``customer#{id}``) and ``sk`` (the item kind; see
``functions/generation/image_service/usage.py``), on demand, TTL on ``expires_at`` (minute
counters, day and month totals and charges age out by themselves). Customer overrides of the
stage's limits are items here, written by ops (docs/limits.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.settings import StageSettings

TTL_ATTRIBUTE = "expires_at"


class UsageTable(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: StageSettings) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=(
                RemovalPolicy.RETAIN if settings.storage.retain_data else RemovalPolicy.DESTROY
            ),
        )

    def environment(self, settings: StageSettings) -> dict[str, str]:
        """What the service code needs: the table, and the stage's default limits."""
        limits = settings.limits
        return {
            "USAGE_TABLE": self.table.table_name,
            "RATE_LIMIT_PER_MINUTE": str(limits.requests_per_minute),
            "DAILY_BUDGET_USD": str(limits.daily_budget_usd),
            "MONTHLY_BUDGET_USD": str(limits.monthly_budget_usd),
        }

    def grant(self, grantee: iam.IGrantable, actions: Sequence[str]) -> None:
        """Exactly these item actions on this table (a transaction is authorised per item)."""
        if actions:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=sorted(f"dynamodb:{a}" for a in actions),
                    resources=[self.table.table_arn],
                )
            )
