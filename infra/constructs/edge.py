"""Edge protection for stored images (cloudfront URL mode): a WAF web ACL on the distribution.

A web ACL for CloudFront must be created in us-east-1, whatever the service's region, so it
lives in its own small stack, ``ImageService-<stage>-edge`` (us-east-1); the service stack reads
its ARN through CDK's cross-region references (an SSM parameter written in us-east-1, read by a
custom resource at deploy). A stage may instead name an existing ACL (``edge.web_acl_arn``).
"""

from __future__ import annotations

from aws_cdk import Environment, Stack
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.settings import SERVICE_NAME, StageSettings

WEB_ACL_REGION = "us-east-1"  # CloudFront-scoped WAF resources exist only there


def edge_stack_name(settings: StageSettings) -> str:
    return f"{settings.stack_name}-edge"


class EdgeProtectionStack(Stack):
    def __init__(self, scope: Construct, *, settings: StageSettings) -> None:
        super().__init__(
            scope,
            edge_stack_name(settings),
            description=f"Image generation service ({settings.name}): WAF for the image CDN",
            env=Environment(account=settings.account, region=WEB_ACL_REGION),
            cross_region_references=True,
            termination_protection=settings.deploy.termination_protection,
            tags={"service": SERVICE_NAME, "stage": settings.name},
        )
        limit = settings.edge.rate_limit_per_5_minutes
        assert limit is not None
        prefix = settings.resource_prefix
        self.web_acl = wafv2.CfnWebACL(
            self,
            "ImageCdnWebAcl",
            name=f"{prefix}-image-cdn",
            description="Rate limit per client IP and known-bad sources for the image CDN",
            scope="CLOUDFRONT",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(f"{prefix}-image-cdn"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="rate-limit-per-ip",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            aggregate_key_type="IP",
                            limit=limit,
                            evaluation_window_sec=300,
                        )
                    ),
                    visibility_config=_visibility(f"{prefix}-rate-limit-per-ip"),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="aws-ip-reputation",
                    priority=1,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=(
                            wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                                vendor_name="AWS", name="AWSManagedRulesAmazonIpReputationList"
                            )
                        )
                    ),
                    visibility_config=_visibility(f"{prefix}-ip-reputation"),
                ),
            ],
        )

    @property
    def web_acl_arn(self) -> str:
        return self.web_acl.attr_arn


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )
