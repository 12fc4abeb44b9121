"""The dependencies layer build: Lambda's platform, cached by its inputs, pinned — no pip run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from infra.bundling import (
    LAMBDA_PLATFORM,
    LAMBDA_PYTHON_VERSION,
    DependenciesLayerBuild,
    DependencyBuildError,
)


@pytest.fixture
def inputs(tmp_path: Path) -> DependenciesLayerBuild:
    requirements = tmp_path / "requirements.txt"
    constraints = tmp_path / "constraints.txt"
    requirements.write_text("httpx==0.28.1\npyjwt[crypto]==2.15.1\n")
    constraints.write_text("h11==0.16.0\nidna==3.20\n")
    return DependenciesLayerBuild(
        requirements=requirements, constraints=constraints, cache_dir=tmp_path / "layers"
    )


def test_pip_targets_arm64_lambda_with_binary_wheels_only(inputs, tmp_path):
    command = inputs.pip_command(tmp_path / "out")
    assert command[command.index("--platform") + 1] == LAMBDA_PLATFORM == "manylinux2014_aarch64"
    assert command[command.index("--python-version") + 1] == LAMBDA_PYTHON_VERSION
    assert command[command.index("--implementation") + 1] == "cp"
    assert "--only-binary=:all:" in command and "--no-compile" in command
    assert command[command.index("--constraint") + 1] == str(inputs.constraints)


def test_fingerprint_follows_requirements_constraints_and_python_version(inputs):
    before = inputs.fingerprint()
    assert inputs.fingerprint() == before
    inputs.constraints.write_text("h11==0.16.0\nidna==3.21\n")
    assert inputs.fingerprint() != before
    other_python = DependenciesLayerBuild(
        requirements=inputs.requirements,
        constraints=inputs.constraints,
        python_version="3.13",
        cache_dir=inputs.cache_dir,
    )
    assert other_python.fingerprint() != inputs.fingerprint()


def _fake_pip(site_packages: list[str]):
    def run(command, **kwargs):
        target = Path(command[command.index("--target") + 1])
        target.mkdir(parents=True)
        for dist in site_packages:
            (target / dist).mkdir()
        (target / "bin").mkdir()
        (target / "bin" / "httpx").write_text("#!/home/someone/.venv/bin/python\n")
        (target / "__pycache__").mkdir()
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def test_build_runs_pip_once_then_reuses_the_cached_folder(inputs, monkeypatch):
    calls = []
    fake = _fake_pip(["httpx-0.28.1.dist-info", "h11-0.16.0.dist-info", "PyJWT-2.15.1.dist-info"])
    monkeypatch.setattr(subprocess, "run", lambda c, **k: calls.append(c) or fake(c, **k))
    first = inputs.build(log=lambda _: None)
    second = inputs.build(log=lambda _: None)
    assert first == second == inputs.target and len(calls) == 1
    site = first / "python"
    assert not (site / "bin").exists()  # shebangs name the build machine's Python
    assert not (site / "__pycache__").exists()
    assert [p.name for p in inputs.cache_dir.iterdir()] == [first.name]  # no staging left


def test_an_unpinned_transitive_dependency_fails_the_build(inputs, monkeypatch):
    fake = _fake_pip(["httpx-0.28.1.dist-info", "sniffio-1.3.1.dist-info"])
    monkeypatch.setattr(subprocess, "run", fake)
    with pytest.raises(DependencyBuildError, match="sniffio==1.3.1"):
        inputs.build(log=lambda _: None)
    assert not inputs.target.exists()


def test_a_pip_failure_is_reported_and_caches_nothing(inputs, monkeypatch):
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda c, **k: subprocess.CompletedProcess(c, 1, "", "No matching distribution"),
    )
    with pytest.raises(DependencyBuildError, match="No matching distribution"):
        inputs.build(log=lambda _: None)
    assert not inputs.target.exists()


def test_the_project_pins_every_runtime_dependency():
    pins = DependenciesLayerBuild().pinned()
    for name in (
        "aws-lambda-powertools",
        "pydantic",
        "pydantic-core",
        "httpx",
        "pyjwt",
        "cryptography",
    ):
        assert name in pins, name
