"""``make models-check`` end to end: its entry point starts the emulators over HTTP, reads their
model lists as of a fixed day, and reports a planted shutdown and a planted unknown model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from image_common.provider_identity import PROVIDERS
from local import models_check

ROOT = Path(__file__).parents[2]
PLANTS = "openai:gpt-image-2@2026-12-10,xai:grok-imagine-image-3"


def _clean_environment() -> dict[str, str]:
    """As on a fresh machine: no provider key or base URL, no secret."""
    env = dict(os.environ)
    for identity in PROVIDERS.values():
        env.pop(identity.api_key_variable, None)
        env.pop(identity.base_url_variable, None)
        env.pop(identity.secret_arn_variable, None)
    env.pop("CATALOG_DATE", None)
    return env


@pytest.fixture
def fresh_machine(monkeypatch):
    for identity in PROVIDERS.values():
        monkeypatch.delenv(identity.api_key_variable, raising=False)
        monkeypatch.delenv(identity.base_url_variable, raising=False)
        monkeypatch.delenv(identity.secret_arn_variable, raising=False)
    monkeypatch.delenv("EMULATOR_PLANTED_MODELS", raising=False)
    monkeypatch.delenv("CATALOG_DATE", raising=False)  # the local stack's pinned calendar


def rows(table: str) -> dict[tuple[str, str], list[str]]:
    """(provider, model) → the finding row's columns."""
    found = {}
    for line in table.splitlines():
        columns = line.split()
        if columns and columns[0] in ("DRIFT", "info"):
            found[(columns[1], columns[2])] = columns
    return found


def test_models_check_reports_a_planted_shutdown_and_a_planted_unknown_model():
    env = _clean_environment() | {"EMULATOR_PLANTED_MODELS": PLANTS}
    result = subprocess.run(
        [sys.executable, "-m", "local.models_check", "--today", "2026-11-30"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    found = rows(result.stdout)
    shutdown = found[("openai", "gpt-image-2")]
    assert shutdown[0] == "DRIFT" and "2026-12-10" in shutdown
    assert "10 days" in " ".join(shutdown)
    unknown = found[("xai", "grok-imagine-image-3")]
    assert unknown[0] == "DRIFT" and "catalog" in unknown
    assert "Model catalog check for 2026-11-30" in result.stdout
    assert "Result:" in result.stdout and "(exit 1)" in result.stdout
    for provider in ("stability", "flux"):
        assert any(
            line.split()[:1] == [provider] and "no model list" in line
            for line in result.stdout.splitlines()
        )


def test_without_plants_the_planted_models_are_not_reported(fresh_machine, capsys):
    models_check.main(["--today", "2026-11-30"])
    found = rows(capsys.readouterr().out)
    assert ("openai", "gpt-image-2") not in found
    assert ("xai", "grok-imagine-image-3") not in found


def test_the_json_report_names_the_same_findings(fresh_machine, monkeypatch, capsys):
    monkeypatch.setenv("EMULATOR_PLANTED_MODELS", PLANTS)
    code = models_check.main(["--today", "2026-11-30", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["today"] == "2026-11-30"
    drift = {(f["provider"], f["model"], f["kind"]) for f in report["findings"] if f["drift"]}
    assert ("openai", "gpt-image-2", "shutdown_soon") in drift
    assert ("xai", "grok-imagine-image-3", "unknown_upstream") in drift


def test_a_shutdown_beyond_the_warning_window_is_not_drift(fresh_machine, monkeypatch, capsys):
    monkeypatch.setenv("EMULATOR_PLANTED_MODELS", "openai:gpt-image-2@2026-12-10")
    models_check.main(["--today", "2026-11-30", "--warning-days", "7"])
    row = rows(capsys.readouterr().out)[("openai", "gpt-image-2")]
    assert row[0] == "info" and "announced" in row


def test_without_emulators_or_keys_nothing_is_checked_and_nothing_fails(fresh_machine, capsys):
    code = models_check.main(["--today", "2026-11-30", "--no-emulators"])
    out = capsys.readouterr().out
    assert code == 0
    for provider in ("openai", "google", "xai"):
        assert any(line.split()[:3] == [provider, "not", "checked"] for line in out.splitlines()), (
            provider
        )
    assert "Result: no drift (exit 0)" in out


def test_an_unreachable_configured_provider_exits_2_when_nothing_else_drifts(
    fresh_machine, monkeypatch, capsys
):
    monkeypatch.setenv("XAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    monkeypatch.setenv("XAI_API_KEY", "xai-test-key")
    code = models_check.main(["--today", "2026-11-30", "--no-emulators"])
    out = capsys.readouterr().out
    assert code == 2
    assert any(line.split()[:2] == ["xai", "FAILED"] for line in out.splitlines())
    assert "could not be read" in out


def test_without_today_the_check_uses_the_service_s_pinned_catalog_date(
    fresh_machine, monkeypatch, capsys
):
    monkeypatch.setenv("CATALOG_DATE", "2026-10-22")  # the day before gpt-image-1 shut down
    assert models_check.main(["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["today"] == "2026-10-22"
    soon = {f["model"] for f in report["findings"] if f["kind"] == "shutdown_soon"}
    assert "gpt-image-1" in soon  # listed by the emulator on that day, with its date


def test_a_bad_catalog_date_exits_64(fresh_machine, monkeypatch, capsys):
    monkeypatch.setenv("CATALOG_DATE", "someday")
    assert models_check.main([]) == models_check.USAGE_ERROR
    assert "CATALOG_DATE" in capsys.readouterr().err


def test_the_environment_is_put_back_after_a_run(fresh_machine):
    before = dict(os.environ)
    models_check.main(["--today", "2026-11-30"])
    assert dict(os.environ) == before


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EMULATOR_PLANTED_MODELS", "stability:sd4"),
        ("MODELS_CHECK_WARNING_DAYS", "forever"),
    ],
)
def test_a_bad_setting_exits_64_with_a_message_naming_it(
    fresh_machine, monkeypatch, capsys, variable, value
):
    monkeypatch.setenv(variable, value)
    assert models_check.main(["--today", "2026-11-30"]) == models_check.USAGE_ERROR
    assert variable in capsys.readouterr().err
