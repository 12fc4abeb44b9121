"""Synthesizes the stack once per stage per test session — offline, no Docker, no pip.

The code assets point at the source folders and the dependencies layer at an empty placeholder
(the real layer is built by ``make build`` / ``make synth``, never by tests). Everything else is
what ``app.py`` synthesizes: the same cdk.json context, the same construct tree, cdk-nag.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

# This machine's Node 20 is past end of life and jsii says so in a banner on every start; keep
# test output readable (`make synth` still shows it). The value lists the major versions.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from infra.application import build_service, cdk_json_context  # noqa: E402
from infra.bundling import DEPENDENCY_SETS, LambdaAssets  # noqa: E402
from infra.settings import StageSettings, load_stage_settings  # noqa: E402
from infra.stack import ImageServiceStack  # noqa: E402

# Report cdk-nag findings in validation-report.json instead of raising inside synth, so a test
# names them (app.py keeps the default: an unacknowledged finding fails the synth).
_REPORT_INSTEAD_OF_RAISING = {"@aws-cdk/core:failSynthOnValidationErrors": False}

# A third stage, only for tests: JWKS verification (no JWT secret, no extension layer), an
# existing OpenAI secret and alarm topic referenced by ARN, no reserved concurrency, and
# SnapStart turned off.
EXISTING_OPENAI_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:shared/openai-AbCdEf"
JWKS_STAGE = {
    "functions": {"snap_start": False},
    "provider_secret_arns": {"openai": EXISTING_OPENAI_SECRET},
    "jwt": {
        "mode": "jwks",
        "jwks_url": "https://issuer.example.com/.well-known/jwks.json",
        "issuer": "https://issuer.example.com/",
        "audience": ["image-service"],
    },
    "monitoring": {
        "alarm_topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops-alarms",
        "catalog_overlay_rejected_threshold": 2,
        "catalog_overlay_unreachable_threshold": 9,
    },
    # an overlay parameter of its own naming
    "catalog": {
        "overlay_parameter": "/shared/image-models/overlay",
        "overlay_max_age_seconds": 60,
        "overlay_retry_seconds": 45,
    },
    # and the models check with its schedule off, a shorter window and acknowledged models
    "models_check": {
        "enabled": False,
        "warning_days": 14,
        "acknowledged_models": ["gpt-image-2-2026-04-21", "chatgpt-image-latest"],
    },
}


@dataclass(frozen=True)
class Synthesized:
    settings: StageSettings
    stack: ImageServiceStack
    template: Template
    assembly_dir: Path

    @cached_property
    def template_json(self) -> dict[str, Any]:
        return self.template.to_json()

    @property
    def template_file(self) -> Path:
        return self.assembly_dir / self.stack.template_file

    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.assembly_dir / "validation-report.json").read_text())

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Logical id → resource, for every resource of ``resource_type``."""
        return {
            logical_id: resource
            for logical_id, resource in self.template_json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def live_alias_ids(self) -> dict[str, str]:
        """Handler → logical id of that function's ``live`` alias."""
        functions = self.resources("AWS::Lambda::Function")
        return {
            functions[alias["Properties"]["FunctionName"]["Ref"]]["Properties"]["Handler"]: alias_id
            for alias_id, alias in self.resources("AWS::Lambda::Alias").items()
        }

    def logical_id(self, construct) -> str:
        cfn = construct.node.default_child or construct
        return self.stack.resolve(cfn.logical_id)


@pytest.fixture(scope="session")
def placeholder_layers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One placeholder dependencies layer per function (distinct, as the real ones are)."""
    layers = {}
    for name in DEPENDENCY_SETS:
        layer = tmp_path_factory.mktemp(f"{name}-dependencies-layer")
        (layer / "python").mkdir()
        (layer / "python" / "README").write_text(f"placeholder: the {name} dependencies\n")
        layers[name] = layer
    return layers


def _synthesize(
    stage: str,
    placeholder_layers: dict[str, Path],
    outdir: Path,
    *,
    extra_stages: dict[str, dict] | None = None,
) -> Synthesized:
    context = cdk_json_context()
    context["stages"] = {**context["stages"], **(extra_stages or {})}
    context |= {"stage": stage, **_REPORT_INSTEAD_OF_RAISING}
    app = App(context=context, outdir=str(outdir))
    stack = build_service(app, assets=LambdaAssets.from_source(placeholder_layers))
    assembly = app.synth()
    return Synthesized(
        settings=load_stage_settings(context),
        stack=stack,
        template=Template.from_stack(stack),
        assembly_dir=Path(assembly.directory),
    )


@pytest.fixture(scope="session")
def dev(
    placeholder_layers: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Synthesized:
    """cdk.json's dev stage: presigned URLs, HS256 secret, CORS for a local web app."""
    return _synthesize("dev", placeholder_layers, tmp_path_factory.mktemp("cdk.out-dev"))


@pytest.fixture(scope="session")
def prod(
    placeholder_layers: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Synthesized:
    """cdk.json's prod stage: CloudFront stable URLs, retained data."""
    return _synthesize("prod", placeholder_layers, tmp_path_factory.mktemp("cdk.out-prod"))


@pytest.fixture(scope="session")
def jwks(
    placeholder_layers: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Synthesized:
    """A test-only stage: JWKS tokens, an existing provider secret and alarm topic, no
    SnapStart."""
    return _synthesize(
        "jwks",
        placeholder_layers,
        tmp_path_factory.mktemp("cdk.out-jwks"),
        extra_stages={"jwks": JWKS_STAGE},
    )


@pytest.fixture(scope="session", params=["dev", "prod", "jwks"])
def synthesized(request: pytest.FixtureRequest) -> Synthesized:
    """Each synthesized stage in turn, for properties every stage must have."""
    return request.getfixturevalue(request.param)
