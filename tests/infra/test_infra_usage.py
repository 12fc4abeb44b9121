"""The usage table behind per-customer limits: its shape, and who may do what to it."""

from __future__ import annotations

import pytest

HANDLERS_AND_ACTIONS = [
    (
        "generation.handler",
        {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"},
    ),
    ("job_tasks.run", {"dynamodb:UpdateItem"}),  # each step that ends a job settles its charge
    ("job_tasks.poll", {"dynamodb:UpdateItem"}),
    ("job_tasks.store", {"dynamodb:UpdateItem"}),
    ("job_tasks.record_failure", {"dynamodb:UpdateItem"}),
    ("job_tasks.notify", set()),
    ("authorizer.handler", set()),
    ("health.handler", set()),
]


def _table(synth) -> tuple[str, dict]:
    ((logical_id, table),) = synth.resources("AWS::DynamoDB::Table").items()
    return logical_id, table


def _function(synth, handler: str) -> dict:
    (props,) = [
        r["Properties"]
        for r in synth.resources("AWS::Lambda::Function").values()
        if r["Properties"]["Handler"] == handler
    ]
    return props


def test_the_table_is_keyed_by_customer_and_item_with_ttl_and_recovery(dev, prod):
    for synth, retained in ((dev, False), (prod, True)):
        _, table = _table(synth)
        props = table["Properties"]
        assert props["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert (table.get("DeletionPolicy") == "Retain") == retained


def test_service_functions_get_the_table_and_the_stage_limits(dev, prod):
    for synth in (dev, prod):
        table_id, _ = _table(synth)
        limits = synth.settings.limits
        env = _function(synth, "generation.handler")["Environment"]["Variables"]
        assert env["USAGE_TABLE"] == {"Ref": table_id}
        assert (
            env["RATE_LIMIT_PER_MINUTE"],
            env["DAILY_BUDGET_USD"],
            env["MONTHLY_BUDGET_USD"],
        ) == (
            str(limits.requests_per_minute),
            str(limits.daily_budget_usd),
            str(limits.monthly_budget_usd),
        )
    assert prod.settings.limits != dev.settings.limits


@pytest.mark.parametrize(("handler", "expected"), HANDLERS_AND_ACTIONS)
def test_each_function_may_do_only_what_its_code_does_to_the_table(dev, handler, expected):
    table_id, _ = _table(dev)
    role_id = _function(dev, handler)["Role"]["Fn::GetAtt"][0]
    granted = set()
    for policy in dev.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            actions = {actions} if isinstance(actions, str) else set(actions)
            usage = {"Fn::GetAtt": [table_id, "Arn"]}
            if any(a.startswith("dynamodb:") for a in actions) and table_id in str(statement):
                assert statement["Resource"] == usage  # never mixed with the jobs table's
                granted |= actions
    assert granted == expected
