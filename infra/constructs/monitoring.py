"""CloudWatch alarms to an SNS topic, and a dashboard of the same signals: what ops must hear.

The API: 5xx and 4xx rates (ignored below a minimum volume) and p99 latency. The authorizer:
its own error count (a broken JWT secret or unreachable JWKS denies everyone) and its denial
rate, from the metrics it emits itself. Generation: crashes, and failed direct invokes of a
server-side type (they are answers, not Lambda errors). Every function: duration near its
timeout, concurrency near its reservation, throttles. The job workflow: failed, timed out,
aborted or throttled executions. Webhook deliveries that gave up. Provider error rate, per
provider. What the service spent at providers in the last hour. The daily model catalog check:
drift found, and the check itself failing. The catalog overlay: a published overlay rejected,
or its parameter unreadable (the last good catalog stays in force, not what ops published).
A request served a provider key from its stale grace (its secret unreadable). Cold starts of the
SnapStart functions: Lambda's Restore Duration (and an on-demand Init Duration) from the report
records in their log groups, through metric filters; an alarm on the run step's and
generation's p90 restore.

Every alarm notifies the one topic, on alarm and on recovery; none pages on its own. The canary's
rollback alarms are a chosen few (``rollback_alarms``): the restore alarms are not among them.

Metric names come from ``image_common.metric_names`` — the module the functions emit them
with. Thresholds and periods are per stage; the topic is created here (with the stage's
e-mail subscribers) unless a stage names one.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constructs.api import ImageApi
from infra.nag import acknowledge
from infra.service_code import PROVIDERS, metric_names, server_error_types
from infra.settings import StageSettings

COST_PERIOD = Duration.hours(1)
# Lambda's report record for an invoke, in a JSON-format log group: {"time", "type":
# "platform.report", "record": {"requestId", "metrics": {"durationMs", ..., "initDurationMs"?,
# "restoreDurationMs"?}, "status"}}. Verified: the Telemetry API's platform.report schema names
# these ReportMetrics fields (AWS's Telemetry API schema reference). Assumed (not verifiable
# offline, check one REPORT record after the first deploy): that JSON-format system logs write
# the same event shape into the log group, and that a restored invoke's report carries
# restoreDurationMs (the text REPORT line's "Restore Duration").
REPORT_TYPE = "platform.report"
REPORT_METRICS = "$.record.metrics"
COLD_START_FIELDS = {
    metric_names.RESTORE_DURATION: "restoreDurationMs",
    metric_names.INIT_DURATION: "initDurationMs",
}
MAX_METRICS_PER_ALARM = 10  # CloudWatch's limit for a metric-math alarm


class ServiceMonitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        api: ImageApi,
        authorizer: lambda_.Function,
        generation: lambda_.Function,
        functions: Mapping[str, lambda_.Function],
        job_state_machine: sfn.IStateMachine,
        models_check: lambda_.Function,
        snap_started: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(scope, construct_id)
        monitoring = settings.monitoring
        self._settings = settings
        self._period = Duration.minutes(monitoring.period_minutes)
        self.topic = self._topic(settings)
        self.alarms: list[cloudwatch.Alarm] = []
        # The alarms a generation deploy watches: any of them rolls the canary back.
        self.rollback_alarms: list[cloudwatch.Alarm] = []
        min_requests = monitoring.api_5xx_min_requests

        # --- the API -------------------------------------------------------------------------
        requests = api.http_api.metric_count(period=self._period, statistic="Sum")
        api_5xx = self._alarm(
            "Api5xxRate",
            f"More than {monitoring.api_5xx_rate_percent}% of API requests answered 5xx",
            self._rate(
                api.http_api.metric_server_error(period=self._period, statistic="Sum"),
                requests,
                min_requests,
                "5xx rate (%)",
            ),
            threshold=monitoring.api_5xx_rate_percent,
        )
        self._alarm(
            "Api4xxRate",
            f"More than {monitoring.api_4xx_rate_percent}% of API requests answered 4xx "
            "(denied tokens, limits, bad requests: a client or an issuer is broken)",
            self._rate(
                api.http_api.metric_client_error(period=self._period, statistic="Sum"),
                requests,
                min_requests,
                "4xx rate (%)",
            ),
            threshold=monitoring.api_4xx_rate_percent,
        )
        latency = self._alarm(
            "ApiLatencyP99",
            f"API p99 latency reached {monitoring.api_latency_p99_ms} ms (the limit is 30 s)",
            api.http_api.metric_latency(period=self._period, statistic="p99"),
            threshold=monitoring.api_latency_p99_ms,
        )

        # --- the authorizer ------------------------------------------------------------------
        self._alarm(
            "AuthorizerErrors",
            "The authorizer could not verify tokens (JWT secret or JWKS unavailable, or a "
            "bug): clients got 403 or 500 whatever their token",
            self._sum(
                {
                    "reported": self._service_metric(metric_names.AUTHORIZER_ERRORS),
                    "crashed": authorizer.metric_errors(period=self._period, statistic="Sum"),
                },
                "authorizer errors",
            ),
            threshold=monitoring.authorizer_errors_threshold,
        )
        self._alarm(
            "AuthorizerDenialRate",
            f"The authorizer denied more than {monitoring.authorizer_denial_rate_percent}% "
            "of the tokens it checked",
            self._rate(
                self._service_metric(metric_names.AUTHORIZER_DENIALS),
                authorizer.metric_invocations(period=self._period, statistic="Sum"),
                min_requests,
                "denied (%)",
            ),
            threshold=monitoring.authorizer_denial_rate_percent,
        )

        # --- generation ----------------------------------------------------------------------
        generation_errors = self._alarm(
            "GenerationErrors",
            "The generation function crashed or timed out",
            generation.metric_errors(period=self._period, statistic="Sum"),
            threshold=monitoring.function_errors_threshold,
        )
        server_types = server_error_types()
        if len(server_types) > MAX_METRICS_PER_ALARM:
            raise ValueError("too many server error types for one alarm; group them")
        invoke_failures = self._alarm(
            "InvokeFailures",
            "Direct invokes answered a server-side error (" + ", ".join(server_types) + ")",
            self._sum(
                {
                    f"e{i}": self._service_metric(
                        metric_names.INVOKE_FAILURES,
                        {metric_names.ERROR_TYPE_DIMENSION: error_type},
                    )
                    for i, error_type in enumerate(server_types)
                },
                "failed direct invokes (5xx types)",
            ),
            threshold=monitoring.invoke_failures_threshold,
        )

        # --- every function ------------------------------------------------------------------
        near_timeout: dict[str, cloudwatch.Alarm] = {}
        for name, function in functions.items():
            timeout_ms = function.timeout.to_milliseconds() if function.timeout else 3000
            limit = round(timeout_ms * monitoring.duration_near_timeout_percent / 100)
            near_timeout[name] = self._alarm(
                f"DurationNearTimeout{name}",
                f"{name} ran for {monitoring.duration_near_timeout_percent}% of its "
                f"{timeout_ms // 1000} s timeout",
                function.metric_duration(period=self._period, statistic="Maximum"),
                threshold=limit,
            )
            reserved = _reserved_concurrency(function)
            if reserved:
                self._alarm(
                    f"ConcurrencyNearReservation{name}",
                    f"{name} used {monitoring.concurrency_near_reservation_percent}% of its "
                    f"{reserved} reserved concurrent executions (next: throttles)",
                    function.metric(
                        "ConcurrentExecutions", period=self._period, statistic="Maximum"
                    ),
                    threshold=max(
                        1, round(reserved * monitoring.concurrency_near_reservation_percent / 100)
                    ),
                )
        self._alarm(
            "LambdaThrottles",
            "Invocations of the service's functions were throttled",
            self._sum(
                {
                    f"t{i}": fn.metric_throttles(period=self._period, statistic="Sum")
                    for i, fn in enumerate(functions.values())
                },
                "throttled invocations",
            ),
            threshold=monitoring.throttles_threshold,
        )

        # --- the job workflow, webhooks -----------------------------------------------------
        self._alarm(
            "JobFailures",
            "Jobs failed (provider error, moderation, timeout or a task failure)",
            self._sum(
                {
                    "failed": job_state_machine.metric_failed(period=self._period),
                    "timedout": job_state_machine.metric_timed_out(period=self._period),
                    "aborted": job_state_machine.metric_aborted(period=self._period),
                },
                "failed jobs",
            ),
            threshold=monitoring.job_failures_threshold,
        )
        self._alarm(
            "JobExecutionThrottles",
            "Step Functions throttled starting or running job executions",
            job_state_machine.metric_throttled(period=self._period, statistic="Sum"),
            threshold=monitoring.throttles_threshold,
        )
        self._alarm(
            "WebhookDeliveryFailures",
            "Job callbacks were given up after every retry (the receiver never got them)",
            self._service_metric(metric_names.WEBHOOK_DELIVERY_FAILURES),
            threshold=monitoring.webhook_failures_threshold,
        )

        # --- providers and spend -------------------------------------------------------------
        for provider in PROVIDERS:
            dimension = {metric_names.PROVIDER_DIMENSION: provider}
            self._alarm(
                f"ProviderErrorRate{provider.title()}",
                f"More than {monitoring.provider_error_rate_percent}% of {provider} calls failed",
                self._rate(
                    self._service_metric(metric_names.PROVIDER_ERRORS, dimension),
                    self._service_metric(metric_names.PROVIDER_CALLS, dimension),
                    monitoring.provider_min_calls,
                    f"{provider} errors (%)",
                ),
                threshold=monitoring.provider_error_rate_percent,
            )
        self._models_check_alarms(models_check)
        self._catalog_overlay_alarms()
        self._alarm(
            "ProviderKeyStale",
            "Requests were served a provider key past its max age: its secret could not be read "
            "(log line 'provider secret unreadable; the last good key stays' gives the reason). "
            "A rotated key may stop working when the grace ends",
            self._service_metric(metric_names.PROVIDER_KEY_STALE_SERVED),
            threshold=monitoring.provider_key_stale_threshold,
        )
        self._cold_start_graphs = self._cold_start_metrics(
            {name: fn for name, fn in functions.items() if name in snap_started}
        )
        self._alarm(
            "CostPerHour",
            f"Provider spend reached {monitoring.cost_per_hour_usd} USD in an hour",
            self._service_metric(metric_names.COST_USD, period=COST_PERIOD),
            threshold=monitoring.cost_per_hour_usd,
        )

        self.rollback_alarms = [
            api_5xx,
            latency,
            generation_errors,
            invoke_failures,
            near_timeout["Generation"],
        ]
        self.dashboard = self._dashboard(settings, functions)

    def _models_check_alarms(self, models_check: lambda_.Function) -> None:
        """The check runs once a day: one day is the period (period x evaluation periods may not
        exceed a day), so an alarm stays up until the next run says otherwise."""
        day = Duration.days(1)
        self._alarm(
            "ModelCatalogDrift",
            "The model catalog differs from the providers' model lists: a model it serves is "
            "gone or retiring upstream, or a new one is listed (the check's log says which)",
            self._service_metric(metric_names.MODEL_DRIFT_FINDINGS, period=day).with_(
                statistic="Maximum"  # a manual run the same day must not double the count
            ),
            threshold=self._settings.monitoring.model_drift_threshold,
            evaluation_periods=1,
        )
        self._alarm(
            "ModelsCheckFailed",
            "The model catalog check could not read a provider's model list, or failed",
            cloudwatch.MathExpression(
                expression="FILL(failures, 0) + FILL(errors, 0)",
                using_metrics={
                    "failures": self._service_metric(metric_names.MODEL_LIST_FAILURES, period=day),
                    "errors": models_check.metric_errors(period=day, statistic="Sum"),
                },
                label="unreadable model lists and check errors",
                period=day,
            ),
            threshold=1,
            evaluation_periods=1,
        )

    def _cold_start_metrics(
        self, snap_started: Mapping[str, lambda_.Function]
    ) -> list[cloudwatch.IWidget]:
        """Metric filters turn each SnapStart function's report records into its restore and
        init durations (ms); the run step's and generation's p90 restore is alarmed: above the
        margin docs/performance.md measured, the cold-start targets do not hold in AWS."""
        thresholds = {
            "JobRun": self._settings.monitoring.job_run_restore_p90_ms,
            "Generation": self._settings.monitoring.generation_restore_p90_ms,
        }
        graphs: dict[str, list[cloudwatch.IMetric]] = {name: [] for name in COLD_START_FIELDS}
        for function_id, function in snap_started.items():
            metrics = {
                name: self._cold_start_metric(function_id, function, name, field)
                for name, field in COLD_START_FIELDS.items()
            }
            for name, metric in metrics.items():
                graphs[name] += [
                    metric.with_(statistic=stat, label=f"{function_id} {stat}")
                    for stat in ("p50", "p90", "Maximum")
                ]
            if function_id in thresholds:
                self._alarm(
                    f"RestoreDurationP90{function_id}",
                    f"{function_id}'s p90 Restore Duration reached {thresholds[function_id]} ms: "
                    "its SnapStart cold start is past the margin measured offline "
                    "(docs/performance.md)",
                    metrics[metric_names.RESTORE_DURATION].with_(statistic="p90"),
                    threshold=thresholds[function_id],
                )
        return [
            cloudwatch.GraphWidget(
                title=f"{name} (ms, SnapStart functions): p50, p90, max",
                left=metrics,
                width=12,
            )
            for name, metrics in graphs.items()
            if metrics
        ]

    def _cold_start_metric(
        self, function_id: str, function: lambda_.Function, name: str, field: str
    ) -> cloudwatch.Metric:
        value = f"{REPORT_METRICS}.{field}"
        filter_ = logs.MetricFilter(
            self,
            f"{name}{function_id}",
            log_group=function.log_group,
            filter_pattern=logs.FilterPattern.all(
                logs.FilterPattern.string_value("$.type", "=", REPORT_TYPE),
                # a number (any duration >= 0) rather than exists(): CDK renders that as the
                # quoted string "*", and a numeric comparison is what the docs define for numbers
                logs.FilterPattern.number_value(value, ">=", 0),
            ),
            metric_namespace=metric_names.NAMESPACE,
            metric_name=self._cold_start_metric_name(function_id, name),
            metric_value=value,
            unit=cloudwatch.Unit.MILLISECONDS,
        )
        return filter_.metric(period=self._period)

    def _cold_start_metric_name(self, function_id: str, name: str) -> str:
        """CloudWatch Logs cannot give a filter's dimension a fixed value (only a field of the
        event, and the report record names no function), so the name says whose it is."""
        return f"{name}.{self._settings.resource_prefix}.{function_id}"

    def _catalog_overlay_alarms(self) -> None:
        """Every function that reads the catalog counts these under the ``service`` dimension
        alone, on each read that meets the problem: a container re-reads a rejected or
        unreachable overlay once per ``catalog.overlay_retry_seconds``, so both keep counting
        while the problem lasts and the container serves requests."""
        monitoring = self._settings.monitoring
        self._alarm(
            "CatalogOverlayRejected",
            "The published catalog overlay is invalid and was rejected: the last good catalog "
            "stays in force, not the change ops published (log line 'catalog overlay rejected' "
            "gives the reason). It is counted again on each re-read while it stays published; "
            "OK means no container met it in the period (fixed, or no traffic to read it)",
            self._service_metric(metric_names.CATALOG_OVERLAY_REJECTED),
            threshold=monitoring.catalog_overlay_rejected_threshold,
        )
        self._alarm(
            "CatalogOverlayUnreachable",
            "The catalog overlay parameter could not be read (permission, throttling, network): "
            "the last good catalog stays in force, and a new container starts on the shipped "
            "one without the overlay (log line 'catalog overlay unreachable')",
            self._service_metric(metric_names.CATALOG_OVERLAY_UNREACHABLE),
            threshold=monitoring.catalog_overlay_unreachable_threshold,
        )

    # --- building blocks -----------------------------------------------------------------------

    def _service_metric(
        self,
        name: str,
        dimensions: Mapping[str, str] | None = None,
        *,
        period: Duration | None = None,
    ) -> cloudwatch.Metric:
        """One of the service's own metrics (namespace and ``service`` dimension as emitted)."""
        return cloudwatch.Metric(
            namespace=metric_names.NAMESPACE,
            metric_name=name,
            dimensions_map={
                metric_names.SERVICE_DIMENSION: self._settings.resource_prefix,
                **(dimensions or {}),
            },
            statistic="Sum",
            period=period or self._period,
        )

    def _rate(
        self, part: cloudwatch.IMetric, whole: cloudwatch.IMetric, minimum: int, label: str
    ) -> cloudwatch.MathExpression:
        """100 * part / whole, or 0 below ``minimum`` of the whole (too few to mean anything)."""
        return cloudwatch.MathExpression(
            expression=f"IF(whole >= {minimum}, 100 * FILL(part, 0) / whole, 0)",
            using_metrics={"part": part, "whole": whole},
            label=label,
            period=self._period,
        )

    def _sum(self, metrics: Mapping[str, cloudwatch.IMetric], label: str) -> cloudwatch.IMetric:
        return cloudwatch.MathExpression(
            expression=" + ".join(f"FILL({name}, 0)" for name in metrics),
            using_metrics=dict(metrics),
            label=label,
            period=self._period,
        )

    def _alarm(
        self,
        alarm_id: str,
        description: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        evaluation_periods: int | None = None,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            alarm_id,
            alarm_description=f"{self._settings.resource_prefix}: {description}",
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=evaluation_periods or self._settings.monitoring.evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm

    def _dashboard(
        self, settings: StageSettings, functions: Mapping[str, lambda_.Function]
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"{settings.resource_prefix}-operations"
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=list(self.alarms), width=24, height=4
            )
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Provider spend (USD per hour)",
                left=[
                    self._service_metric(
                        metric_names.COST_USD,
                        {metric_names.PROVIDER_DIMENSION: provider},
                        period=COST_PERIOD,
                    ).with_(label=provider)
                    for provider in PROVIDERS
                ],
                stacked=True,
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Requests refused by per-customer limits",
                left=[
                    self._service_metric(
                        metric_names.LIMIT_REJECTIONS,
                        {metric_names.ERROR_TYPE_DIMENSION: error_type},
                    ).with_(label=error_type)
                    for error_type in ("rate_limited", "budget_exceeded")
                ],
                width=12,
            ),
        )
        widgets = [
            cloudwatch.AlarmWidget(alarm=alarm, title=alarm.node.id, width=8)
            for alarm in self.alarms
        ]
        for row in range(0, len(widgets), 3):
            dashboard.add_widgets(*widgets[row : row + 3])
        if self._cold_start_graphs:
            dashboard.add_widgets(*self._cold_start_graphs)
        return dashboard

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


def _reserved_concurrency(function: lambda_.Function) -> int | None:
    cfn = function.node.default_child
    value = cfn.reserved_concurrent_executions if cfn is not None else None
    return value if isinstance(value, int) else None
