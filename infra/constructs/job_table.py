"""DynamoDB: the jobs table — job records and idempotency keys (docs/jobs.md).

The schema is the one the code expects (``image_service/job_store.py``: ``pk``, the sparse
``by_customer`` index on ``customer`` + ``created``, TTL on ``expires_at``; a test keeps the two
in step). On-demand capacity (job traffic is bursty and small), point-in-time recovery,
encryption at rest, and TTL so records and keys expire without a sweeper.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.settings import StageSettings

PARTITION_KEY = "pk"
INDEX_NAME = "by_customer"
INDEX_PARTITION_KEY = "customer"
INDEX_SORT_KEY = "created"
TTL_ATTRIBUTE = "expires_at"
IDEMPOTENCY_KEY_PREFIX = "idem#"


class JobTable(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: StageSettings) -> None:
        super().__init__(scope, construct_id)
        retain = settings.storage.retain_data
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name=PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing=dynamodb.Billing.on_demand(),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=TTL_ATTRIBUTE,
            deletion_protection=retain,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=INDEX_NAME,
                    partition_key=dynamodb.Attribute(
                        name=INDEX_PARTITION_KEY, type=dynamodb.AttributeType.STRING
                    ),
                    sort_key=dynamodb.Attribute(
                        name=INDEX_SORT_KEY, type=dynamodb.AttributeType.STRING
                    ),
                    projection_type=dynamodb.ProjectionType.ALL,
                )
            ],
        )

    def grant(
        self,
        grantee: iam.IGrantable,
        actions: Sequence[str],
        *,
        list_jobs: bool = False,
        free_idempotency_keys: bool = False,
    ) -> None:
        """Exactly these item actions on the table (a transaction is authorised per item: a
        job created with its idempotency key is two PutItems); the index only for the
        listing; DeleteItem only on idempotency keys (``dynamodb:LeadingKeys``): a job record
        is never deleted, its TTL expires it."""
        if "DeleteItem" in actions:
            raise ValueError("DeleteItem is for idempotency keys only (free_idempotency_keys)")
        if free_idempotency_keys:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["dynamodb:DeleteItem"],
                    resources=[self.table.table_arn],
                    conditions={
                        "ForAllValues:StringLike": {
                            "dynamodb:LeadingKeys": [f"{IDEMPOTENCY_KEY_PREFIX}*"]
                        }
                    },
                )
            )
        if actions:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=sorted(f"dynamodb:{a}" for a in actions),
                    resources=[self.table.table_arn],
                )
            )
        if list_jobs:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["dynamodb:Query"],
                    resources=[f"{self.table.table_arn}/index/{INDEX_NAME}"],
                )
            )
