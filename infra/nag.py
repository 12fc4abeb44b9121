"""cdk-nag (v3, CDK policy validation): the AwsSolutions pack and our acknowledgements.

Every acknowledgement names the rule, the exact finding when a rule reports several (IAM5's
wildcards), and why it is acceptable. Unacknowledged findings fail ``python app.py`` and the
infrastructure tests.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

RULE_PACK = "AwsSolutions"
MIN_REASON_LENGTH = 20


def apply_aws_solutions_checks(scope: IConstruct) -> None:
    """Run the AwsSolutions rules on every synth; acknowledgements go into resource Metadata."""
    Validations.of(scope).add_plugins(
        AwsSolutionsChecks(scope, verbose=True, write_suppressions_to_cloud_formation=True)
    )


def acknowledge(construct: IConstruct, rule: str, reason: str, *, finding: str = "") -> None:
    """Accept ``AwsSolutions-<rule>`` (or one of its findings) on ``construct`` and below."""
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(f"acknowledging {rule} needs a real reason, not {reason!r}")
    rule_id = f"{RULE_PACK}-{rule}" + (f"[{finding}]" if finding else "")
    Validations.of(construct).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def attribute_ref(resource: IConstruct, attribute: str = "Arn") -> str:
    """How cdk-nag writes ``Fn::GetAtt`` in a finding: ``<LogicalId.Arn>``."""
    cfn = resource if isinstance(resource, CfnElement) else resource.node.default_child
    logical_id = Stack.of(cfn).resolve(cfn.logical_id)
    return f"<{logical_id}.{attribute}>"
