"""Cold start: the handler module imports what a request needs and nothing more."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
PROBE = """
import json, os, sys
os.environ.setdefault("IMAGE_BUCKET", "probe-bucket")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
import generation
print(json.dumps(sorted(m for m in sys.modules)))
"""


def imported_modules() -> set[str]:
    env = {"PYTHONPATH": f"{ROOT / 'functions/generation'}:{ROOT / 'layers/common/python'}",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_generation_handler_defers_boto3_and_provider_adapters():
    modules = imported_modules()
    assert "generation" in modules and "image_service.service" in modules
    # boto3 loads on first storage use; each adapter only when its provider is first asked for
    # (Powertools imports the bare botocore package for its user agent: no client machinery)
    assert not {"boto3", "botocore.client", "botocore.session", "s3transfer"} & modules
    adapters = {
        m
        for m in modules
        if m.startswith("image_service.providers.") and m != "image_service.providers.base"
    }
    assert adapters == set()
    assert not {"PIL", "moto", "jwt", "local"} & modules
    # the daily catalog check shares the code asset, not the request path
    assert not {"models_check", "image_service.model_drift", "image_service.upstream_models"} & (
        modules
    )
