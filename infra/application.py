"""Builds the CDK app: settings from the context, the stack, and cdk-nag on every synth.

Shared by ``app.py`` (``cdk synth``/``deploy``) and the infrastructure tests, so both
synthesize the same thing; they differ only in where the dependencies layer comes from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import App

from infra.bundling import PROJECT_ROOT, LambdaAssets
from infra.constructs.edge import EdgeProtectionStack
from infra.nag import apply_aws_solutions_checks
from infra.settings import (
    STAGE_CONTEXT_KEY,
    STAGES_CONTEXT_KEY,
    StageSettings,
    load_stage_settings,
)
from infra.stack import ImageServiceStack

CDK_JSON = PROJECT_ROOT / "cdk.json"


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The ``context`` of cdk.json — what the CDK CLI hands the app (tests use it directly)."""
    return json.loads(path.read_text(encoding="utf-8")).get("context", {})


def settings_from(app: App) -> StageSettings:
    context = {
        STAGE_CONTEXT_KEY: app.node.try_get_context(STAGE_CONTEXT_KEY),
        STAGES_CONTEXT_KEY: app.node.try_get_context(STAGES_CONTEXT_KEY),
    }
    return load_stage_settings(context)


def build_service(app: App, *, assets: LambdaAssets) -> ImageServiceStack:
    settings = settings_from(app)
    # A CloudFront web ACL can only be created in us-east-1: its own stack, referenced across
    # regions, unless the stage names an existing ACL (infra/constructs/edge.py).
    edge = EdgeProtectionStack(app, settings=settings) if settings.edge.creates_web_acl else None
    stack = ImageServiceStack(
        app,
        settings=settings,
        assets=assets,
        web_acl_arn=edge.web_acl_arn if edge else settings.edge.web_acl_arn,
        cross_region_references=edge is not None,
    )
    if edge is not None:
        stack.add_stack_dependency(edge)
    apply_aws_solutions_checks(app)
    return stack
