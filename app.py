#!/usr/bin/env python3
"""CDK entry point: ``cdk synth -c stage=dev`` (or ``python app.py``) — no AWS account, no Docker.

The dependencies layer is built with pip for Lambda's platform into build/layers/ (cached by
the hash of requirements.txt and constraints.txt); ``-c dependencies_layer=<folder>`` uses a
prebuilt folder instead. See docs/deploy.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aws_cdk import App

from infra.application import DEPENDENCIES_LAYER_CONTEXT_KEY, build_service, cdk_json_context
from infra.bundling import DependenciesLayerBuild, LambdaAssets
from infra.settings import SettingsError

DEFAULT_OUTDIR = "cdk.out"  # the CDK CLI sets CDK_OUTDIR itself


def main() -> None:
    # cdk.json's context as defaults, so `python app.py` works without the CLI; the CLI's own
    # context (cdk.json plus -c) takes precedence over these.
    app = App(context=cdk_json_context(), outdir=os.environ.get("CDK_OUTDIR", DEFAULT_OUTDIR))
    prebuilt = app.node.try_get_context(DEPENDENCIES_LAYER_CONTEXT_KEY)
    if prebuilt:
        assets = LambdaAssets.from_source(dependencies_layer=Path(prebuilt))
    else:
        build = DependenciesLayerBuild()
        assets = LambdaAssets.from_source(
            dependencies_layer=build.build(log=_log), dependencies_layer_hash=build.fingerprint()
        )
    try:
        build_service(app, assets=assets)
    except SettingsError as exc:
        sys.exit(f"cdk.json: {exc}")
    app.synth()


def _log(message: str) -> None:
    print(message, file=sys.stderr)  # stdout may carry the CLI's template output


if __name__ == "__main__":
    main()
