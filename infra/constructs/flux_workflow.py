"""Step Functions: the Flux job workflow (Express), from ``infra/flux_definition.py``.

The definition is deployed as written there, with the task functions' ARNs passed as
CloudFormation definition substitutions, so the document tests run in moto is byte for byte
the one deployed. The role may invoke those four functions and nothing else; the generation
function may start this state machine and no other.
"""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.flux_definition import (
    POLL_ARN_PLACEHOLDER,
    RECORD_FAILURE_ARN_PLACEHOLDER,
    STORE_ARN_PLACEHOLDER,
    SUBMIT_ARN_PLACEHOLDER,
    flux_definition_template,
)
from infra.log_retention import retention
from infra.nag import acknowledge
from infra.settings import StageSettings

EXPRESS_MAX_DURATION_SECONDS = 300
# Room around the poll budget for submit, the last poll, store and recording a failure.
EXECUTION_MARGIN_SECONDS = 120
TASKS = ("submit", "poll", "store", "record_failure")
_PLACEHOLDERS = {
    "submit": SUBMIT_ARN_PLACEHOLDER,
    "poll": POLL_ARN_PLACEHOLDER,
    "store": STORE_ARN_PLACEHOLDER,
    "record_failure": RECORD_FAILURE_ARN_PLACEHOLDER,
}


def execution_timeout_seconds(settings: StageSettings) -> int:
    return min(
        EXPRESS_MAX_DURATION_SECONDS, settings.flux.budget_seconds + EXECUTION_MARGIN_SECONDS
    )


class FluxWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        tasks: dict[str, lambda_.IFunction],
        started_by: lambda_.Function,
    ) -> None:
        super().__init__(scope, construct_id)
        missing = set(TASKS) - set(tasks)
        if missing:
            raise ValueError(f"Flux workflow needs task functions: {', '.join(sorted(missing))}")

        log_group = logs.LogGroup(
            self,
            "Logs",
            # Vended-logs prefix: keeps CloudWatch Logs' resource policy small.
            log_group_name=f"/aws/vendedlogs/states/{settings.resource_prefix}-flux",
            retention=retention(settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{settings.resource_prefix} Flux workflow",
        )
        # The unqualified ARNs the definition invokes — not "<arn>:*" (any version or alias).
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[tasks[name].function_arn for name in TASKS],
            )
        )
        definition = json.dumps(
            flux_definition_template(timeout_seconds=execution_timeout_seconds(settings)),
            indent=2,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_string(definition),
            definition_substitutions={
                _PLACEHOLDERS[name].removeprefix("${").removesuffix("}"): tasks[name].function_arn
                for name in TASKS
            },
            role=role,
            logs=sfn.LogOptions(
                destination=log_group,
                level=sfn.LogLevel.ALL,
                include_execution_data=settings.flux.log_execution_data,
            ),
            tracing_enabled=settings.functions.tracing,
            comment="Flux image job: submit, poll, store",
        )
        acknowledge(
            role,
            "IAM5",
            "CloudWatch Logs delivery actions (logs:CreateLogDelivery, …) that Express logging "
            "needs have no resource-level permissions; AWS accepts only '*' for them.",
            finding="Resource::*",
        )

        self.state_machine.grant_start_execution(started_by)
        started_by.add_environment("FLUX_STATE_MACHINE_ARN", self.state_machine.state_machine_arn)
