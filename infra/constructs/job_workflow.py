"""Step Functions: the job workflow (Standard), from ``infra/job_definition.py``.

Every generation runs through it. The definition is deployed as written there, with the task
functions' ARNs passed as CloudFormation definition substitutions, so the document tests run in
moto is byte for byte the one deployed. Standard, not Express (docs/jobs.md § cost): a job may
wait minutes for its provider and hours for its webhook's retries (Express stops at 5 minutes),
an execution name runs once (the job id), and each execution's history stays readable.

The role may invoke the five task functions and nothing else; the generation function may
start this state machine and no other.
"""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.job_definition import PLACEHOLDERS, TASKS, job_definition_template
from infra.log_retention import retention
from infra.nag import acknowledge
from infra.settings import StageSettings


class JobWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        tasks: dict[str, lambda_.IFunction],
        started_by: lambda_.Function,
        snap_started: frozenset[str] = frozenset(),
    ) -> None:
        """``snap_started``: the tasks whose function restores from a SnapStart snapshot (their
        invokes are retried while Lambda re-creates an Inactive version's snapshot)."""
        super().__init__(scope, construct_id)
        missing = set(TASKS) - set(tasks)
        if missing:
            raise ValueError(f"the job workflow needs task functions: {', '.join(sorted(missing))}")

        log_group = logs.LogGroup(
            self,
            "Logs",
            # Vended-logs prefix: keeps CloudWatch Logs' resource policy small.
            log_group_name=f"/aws/vendedlogs/states/{settings.resource_prefix}-jobs",
            retention=retention(settings.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{settings.resource_prefix} job workflow",
        )
        # The unqualified ARNs the definition invokes — not "<arn>:*" (any version or alias).
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[tasks[name].function_arn for name in TASKS],
            )
        )
        definition = json.dumps(
            job_definition_template(
                worker_timeout_seconds=settings.functions.job_run.timeout_seconds,
                snap_started=snap_started,
            ),
            indent=2,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(definition),
            definition_substitutions={
                PLACEHOLDERS[name].removeprefix("${").removesuffix("}"): tasks[name].function_arn
                for name in TASKS
            },
            role=role,
            logs=sfn.LogOptions(
                destination=log_group,
                level=sfn.LogLevel.ALL,
                include_execution_data=settings.jobs.log_execution_data,
            ),
            tracing_enabled=settings.functions.tracing,
            comment="Image job: run or submit/poll/store, record, notify",
        )
        acknowledge(
            role,
            "IAM5",
            "CloudWatch Logs delivery actions (logs:CreateLogDelivery, …) that Step Functions "
            "logging needs have no resource-level permissions; AWS accepts only '*' for them.",
            finding="Resource::*",
        )
        self.role = role

        self.state_machine.grant_start_execution(started_by)
        started_by.add_environment("JOB_STATE_MACHINE_ARN", self.state_machine.state_machine_arn)
