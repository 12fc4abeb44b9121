"""Starting and stopping the local stack leaves the process as it found it: a test that imports
the generation handler after the stack has stopped gets the settings of its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import os
from local.stack import LocalStack

os.environ["JWT_SECRET"] = "lifecycle-test-secret-0123456789abcdef"
stack = LocalStack(port=0).start()
during = stack.usage_table
stack.stop()
import generation  # first imported by the stack: now read again from this environment
print(during, generation.settings.usage_table, generation.settings.trusted_url_origins or "-")
"""


def run_stack(script: str, **extra: str) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter, in an environment with no stack variables."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_ENDPOINT_URL", "USAGE_TABLE", "TRUSTED_URL_ORIGINS"))
        and name != "IMAGE_BUCKET"
    }
    env |= {"AWS_DEFAULT_REGION": "us-east-1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(
        str(ROOT / p) for p in (".", "functions/generation", "layers/common/python")
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_the_handler_imported_after_stop_has_the_environments_settings():
    result = run_stack(SCRIPT, IMAGE_BUCKET="lifecycle-bucket")
    assert result.returncode == 0, result.stderr[-2000:]
    during, after, trusted = result.stdout.split()[-3:]
    assert during == "image-usage-dev"  # the stack's
    assert (after, trusted) == ("None", "-")  # this environment's: no usage table, no trust


def test_stopping_where_the_environment_has_no_settings_is_clean():
    # make dev's case: the stack supplied IMAGE_BUCKET; once it is put back there is none.
    script = SCRIPT.split("import generation")[0] + "print('stopped')\n"
    result = run_stack(script)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "stopped"
