"""Safe deploys of the generation function: CodeDeploy shifts its ``live`` alias to the new
version (a canary per stage) and rolls back automatically when any rollback alarm fires.

The other functions' aliases move at once: the authorizer, health and the job tasks answer no
differently between versions in a way a canary would catch faster than their alarms.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.nag import acknowledge
from infra.settings import StageSettings

TRAFFIC_SHIFTING = {
    "all_at_once": codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
    "canary_10_percent_5_minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
    "canary_10_percent_10_minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_10_MINUTES,
    "canary_10_percent_15_minutes": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_15_MINUTES,
    "linear_10_percent_every_1_minute": (
        codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE
    ),
}


class GenerationDeployment(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        alias: lambda_.Alias,
        rollback_alarms: Sequence[cloudwatch.IAlarm],
    ) -> None:
        super().__init__(scope, construct_id)
        self.group = codedeploy.LambdaDeploymentGroup(
            self,
            "Group",
            alias=alias,
            deployment_config=TRAFFIC_SHIFTING[settings.deploy.generation_traffic_shifting],
            alarms=list(rollback_alarms),
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )
        acknowledge(
            self.group,
            "IAM4",
            "AWSCodeDeployRoleForLambdaLimited is AWS's own least-privilege policy for "
            "CodeDeploy shifting Lambda aliases (it is what CDK's deployment group attaches).",
            finding="Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSCodeDeployRoleForLambdaLimited",
        )
