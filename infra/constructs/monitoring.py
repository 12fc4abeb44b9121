"""CloudWatch alarms to an SNS topic: what ops must hear about.

- API 5xx rate (percent of requests, ignored below a minimum volume);
- authorizer errors (every one is a 500 for some client) and generation errors (crashes: the
  handler turns expected failures into answers, so an Error is a bug or a timeout);
- Lambda throttles on any of the service's functions;
- Flux jobs that failed, timed out or were aborted.

Thresholds and periods are per stage; the topic is created here unless a stage names one.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constructs.api import ImageApi
from infra.nag import acknowledge
from infra.settings import StageSettings


class ServiceMonitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        api: ImageApi,
        authorizer: lambda_.IFunction,
        generation: lambda_.IFunction,
        functions: Sequence[lambda_.IFunction],
        flux_state_machine: sfn.IStateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        monitoring = settings.monitoring
        self._settings = settings
        self._period = Duration.minutes(monitoring.period_minutes)
        self.topic = self._topic(settings)
        self.alarms: list[cloudwatch.Alarm] = []

        api_errors = api.http_api.metric_server_error(period=self._period, statistic="Sum")
        api_requests = api.http_api.metric_count(period=self._period, statistic="Sum")
        self._alarm(
            "Api5xxRate",
            f"More than {monitoring.api_5xx_rate_percent}% of API requests answered 5xx",
            cloudwatch.MathExpression(
                expression=f"IF(requests >= {monitoring.api_5xx_min_requests}, "
                "100 * errors / requests, 0)",
                using_metrics={"errors": api_errors, "requests": api_requests},
                label="5xx rate (%)",
                period=self._period,
            ),
            threshold=monitoring.api_5xx_rate_percent,
        )
        self._alarm(
            "AuthorizerErrors",
            "The authorizer function failed (clients got 500 instead of 401/403)",
            authorizer.metric_errors(period=self._period, statistic="Sum"),
            threshold=monitoring.function_errors_threshold,
        )
        self._alarm(
            "GenerationErrors",
            "The generation function crashed or timed out",
            generation.metric_errors(period=self._period, statistic="Sum"),
            threshold=monitoring.function_errors_threshold,
        )
        throttles = {
            f"t{i}": fn.metric_throttles(period=self._period, statistic="Sum")
            for i, fn in enumerate(functions)
        }
        self._alarm(
            "LambdaThrottles",
            "Invocations of the service's functions were throttled",
            cloudwatch.MathExpression(
                expression=" + ".join(f"FILL({name}, 0)" for name in throttles),
                using_metrics=throttles,
                label="throttled invocations",
                period=self._period,
            ),
            threshold=monitoring.throttles_threshold,
        )
        flux = {
            "failed": flux_state_machine.metric_failed(period=self._period, statistic="Sum"),
            "timedout": flux_state_machine.metric_timed_out(period=self._period, statistic="Sum"),
            "aborted": flux_state_machine.metric_aborted(period=self._period, statistic="Sum"),
        }
        self._alarm(
            "FluxJobFailures",
            "Flux jobs failed (provider error, moderation, timeout or a task failure)",
            cloudwatch.MathExpression(
                expression="FILL(failed, 0) + FILL(timedout, 0) + FILL(aborted, 0)",
                using_metrics=flux,
                label="failed Flux jobs",
                period=self._period,
            ),
            threshold=monitoring.flux_failures_threshold,
        )

    def _alarm(
        self, alarm_id: str, description: str, metric: cloudwatch.IMetric, *, threshold: float
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            alarm_id,
            alarm_description=f"{self._settings.resource_prefix}: {description}",
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=self._settings.monitoring.evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def _topic(self, settings: StageSettings) -> sns.ITopic:
        monitoring = settings.monitoring
        if monitoring.alarm_topic_arn:
            return sns.Topic.from_topic_arn(self, "AlarmTopic", monitoring.alarm_topic_arn)
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"{settings.resource_prefix} alarms",
            enforce_ssl=True,
        )
        for email in monitoring.alarm_emails:
            topic.add_subscription(subscriptions.EmailSubscription(email))
        acknowledge(
            topic,
            "SNS2",
            "Alarm notifications carry alarm names and metric values, no customer data; "
            "CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key.",
        )
        return topic
