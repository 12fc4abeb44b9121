"""cdk-nag's AwsSolutions checks and cfn-lint on every synthesized template."""

from __future__ import annotations

import cfnlint.api

# CDK makes each function depend on its role *and* the role's policy; the role part is already
# implied by the Fn::GetAtt, which is all W3005 says. Harmless, and not ours to change.
CFN_LINT_IGNORED = ["W3005"]
# The stack is region-agnostic; lint it against the regions ops deploy to (docs/deploy.md).
CFN_LINT_REGIONS = ["us-east-1", "eu-west-1"]


def test_cdk_nag_and_cdk_report_no_unacknowledged_finding(synthesized):
    """Errors and warnings alike: AwsSolutions findings and CDK's own annotations."""
    report = synthesized.validation_report()
    findings = [
        f"{plugin['pluginName']}: {violation['ruleName']} ({violation['severity']}) at "
        + ", ".join(c["constructPath"] for c in violation.get("violatingConstructs", []))
        for plugin in report["pluginReports"]
        for violation in plugin.get("violations", [])
    ]
    assert findings == [], "\n".join(findings)
    assert all(plugin.get("conclusion") != "failure" for plugin in report["pluginReports"])


def test_cdk_nag_ran_and_every_acknowledgement_carries_a_reason(synthesized):
    acknowledged = []
    for logical_id, resource in synthesized.template_json["Resources"].items():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            acknowledged.append((logical_id, rule["id"], rule["reason"]))
    assert acknowledged, "cdk-nag wrote no acknowledgements: did the AwsSolutions pack run?"
    for logical_id, rule_id, reason in acknowledged:
        assert rule_id.startswith("AwsSolutions-"), (logical_id, rule_id)
        assert len(reason) >= 40, (logical_id, rule_id, reason)


def test_cfn_lint_passes(synthesized):
    # the service stack, and the us-east-1 edge stack where a stage has one
    templates = [synthesized.template_file, *synthesized.assembly_dir.glob("*-edge.template.json")]
    for template in templates:
        matches = cfnlint.api.lint_file(
            template,
            config=cfnlint.api.ManualArgs(regions=CFN_LINT_REGIONS, ignore_checks=CFN_LINT_IGNORED),
        )
        assert [str(m) for m in matches] == [], template.name
