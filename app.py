#!/usr/bin/env python3
"""CDK entry point: ``cdk synth -c stage=dev`` (or ``python app.py``) — no AWS account, no Docker.

The function code and layers are built for Lambda's runtime into build/ (``infra/bundling.py``:
pip for arm64, bytecode when a Python of the runtime's version is at hand; cached by content).
See docs/deploy.md.
"""

from __future__ import annotations

import os
import sys

from aws_cdk import App

from infra.application import build_service, cdk_json_context
from infra.bundling import BuildTarget, DependencyBuildError, build_lambda_assets
from infra.settings import SettingsError

DEFAULT_OUTDIR = "cdk.out"  # the CDK CLI sets CDK_OUTDIR itself


def main() -> None:
    # cdk.json's context as defaults, so `python app.py` works without the CLI; the CLI's own
    # context (cdk.json plus -c) takes precedence over these.
    app = App(context=cdk_json_context(), outdir=os.environ.get("CDK_OUTDIR", DEFAULT_OUTDIR))
    try:
        assets = build_lambda_assets(BuildTarget.lambda_runtime())
    except DependencyBuildError as exc:
        sys.exit(str(exc))
    try:
        build_service(app, assets=assets)
    except SettingsError as exc:
        sys.exit(f"cdk.json: {exc}")
    app.synth()


if __name__ == "__main__":
    main()
