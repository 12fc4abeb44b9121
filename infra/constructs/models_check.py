"""The daily model catalog check: an EventBridge schedule that invokes its function.

The function (``ServiceFunctions.models_check``) asks each provider's model list and publishes
the drift as metrics; ``ServiceMonitoring`` alarms on them. See docs/providers.md.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.settings import StageSettings

# Delivery retries (a throttled invoke), not a rerun of a check that ran: tomorrow's run is next.
DELIVERY_RETRIES = 2
MAX_EVENT_AGE = Duration.hours(2)


class ModelsCheckSchedule(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        check = settings.models_check
        self.rule = events.Rule(
            self,
            "Schedule",
            description=(
                f"{settings.resource_prefix}: compare the model catalog with the providers' "
                "model lists"
            ),
            schedule=events.Schedule.expression(check.schedule),
            enabled=check.enabled,
            targets=[
                targets.LambdaFunction(
                    function, retry_attempts=DELIVERY_RETRIES, max_event_age=MAX_EVENT_AGE
                )
            ],
        )
