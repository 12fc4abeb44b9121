"""The Lambda build: per-function dependency layers for Lambda's platform, cached by their inputs,
pinned; our code and layers byte-compiled deterministically for the runtime's Python."""

from __future__ import annotations

import importlib.util
import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.bundling import (
    COMPILER_VARIABLE,
    DEPENDENCY_SETS,
    FUNCTION_SOURCES,
    LAMBDA_PLATFORM,
    LAMBDA_PYTHON_VERSION,
    BuildTarget,
    DependenciesLayerBuild,
    DependencyBuildError,
    SourceBuild,
)

THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
REAL_RUN = subprocess.run


@pytest.fixture
def inputs(tmp_path: Path) -> DependenciesLayerBuild:
    requirements = tmp_path / "requirements.txt"
    constraints = tmp_path / "constraints.txt"
    requirements.write_text("httpx==0.28.1\npyjwt[crypto]==2.15.1\n")
    constraints.write_text("h11==0.16.0\nidna==3.20\n")
    return DependenciesLayerBuild(
        name="generation",
        requirements=requirements,
        constraints=constraints,
        target=BuildTarget(LAMBDA_PYTHON_VERSION, LAMBDA_PLATFORM, None),
        cache_dir=tmp_path / "layers",
    )


def test_pip_targets_arm64_lambda_with_binary_wheels_only(inputs, tmp_path):
    command = inputs.pip_command(tmp_path / "out")
    assert command[command.index("--platform") + 1] == LAMBDA_PLATFORM == "manylinux2014_aarch64"
    assert command[command.index("--python-version") + 1] == LAMBDA_PYTHON_VERSION
    assert command[command.index("--implementation") + 1] == "cp"
    assert "--only-binary=:all:" in command and "--no-compile" in command
    assert command[command.index("--constraint") + 1] == str(inputs.constraints)


def test_each_function_builds_its_own_requirements():
    target = BuildTarget(LAMBDA_PYTHON_VERSION, LAMBDA_PLATFORM, None)
    for name in DEPENDENCY_SETS:
        source = FUNCTION_SOURCES[name]
        build = DependenciesLayerBuild.for_function(name, target, Path("/tmp/layers"))
        command = build.pip_command(Path("/tmp/out"))
        assert command[command.index("--requirement") + 1] == str(source / "requirements.txt")
        assert build.folder.name.startswith(f"{name}-dependencies-")


def test_only_the_authorizer_carries_pyjwt_and_cryptography():
    target = BuildTarget(LAMBDA_PYTHON_VERSION, LAMBDA_PLATFORM, None)

    def wanted(name: str) -> set[str]:
        build = DependenciesLayerBuild.for_function(name, target, Path("/tmp"))
        text = build.requirements.read_text()
        return {line.split("==")[0].split("[")[0] for line in text.splitlines() if "==" in line}

    assert wanted("authorizer") == {"pyjwt"}
    assert wanted("generation") == {
        "aws-lambda-powertools",
        "pydantic",
        "httpx",
        "multipart",
        "standardwebhooks",
    }


def test_fingerprint_follows_requirements_constraints_python_and_compilation(inputs):
    before = inputs.fingerprint()
    assert inputs.fingerprint() == before
    inputs.constraints.write_text("h11==0.16.0\nidna==3.21\n")
    changed = inputs.fingerprint()
    assert changed != before
    for target in (
        BuildTarget("3.13", LAMBDA_PLATFORM, None),
        BuildTarget(LAMBDA_PYTHON_VERSION, LAMBDA_PLATFORM, "/usr/bin/python3.14"),
    ):
        other = DependenciesLayerBuild(
            requirements=inputs.requirements,
            constraints=inputs.constraints,
            target=target,
            cache_dir=inputs.cache_dir,
        )
        assert other.fingerprint() != changed


def _fake_pip(site_packages: list[str]):
    def run(command, **kwargs):
        if "pip" not in command:
            return REAL_RUN(command, **kwargs)
        target = Path(command[command.index("--target") + 1])
        target.mkdir(parents=True)
        for dist in site_packages:
            (target / dist).mkdir()
        (target / "bin").mkdir()
        (target / "bin" / "httpx").write_text("#!/home/someone/.venv/bin/python\n")
        (target / "__pycache__").mkdir()
        (target / "httpx").mkdir()
        (target / "httpx" / "__init__.py").write_text("VERSION = '0.28.1'\n")
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def test_build_runs_pip_once_then_reuses_the_cached_folder(inputs, monkeypatch):
    calls = []
    fake = _fake_pip(["httpx-0.28.1.dist-info", "h11-0.16.0.dist-info", "PyJWT-2.15.1.dist-info"])
    monkeypatch.setattr(subprocess, "run", lambda c, **k: calls.append(c) or fake(c, **k))
    first = inputs.build(log=lambda _: None)
    second = inputs.build(log=lambda _: None)
    assert first == second == inputs.folder and len(calls) == 1
    site = first / "python"
    assert not (site / "bin").exists()  # shebangs name the build machine's Python
    assert not (site / "__pycache__").exists()
    assert not (site / "httpx" / "__pycache__").exists()  # no compiler: sources only
    assert [p.name for p in inputs.cache_dir.iterdir()] == [first.name]  # no staging left


def test_with_a_compiler_the_dependencies_ship_bytecode_for_lambdas_paths(inputs, monkeypatch):
    monkeypatch.setattr(subprocess, "run", _fake_pip(["httpx-0.28.1.dist-info"]))
    build = DependenciesLayerBuild(
        requirements=inputs.requirements,
        constraints=inputs.constraints,
        target=BuildTarget(THIS_PYTHON, LAMBDA_PLATFORM, sys.executable),
        cache_dir=inputs.cache_dir,
    )
    site = build.build(log=lambda _: None) / "python"
    (pyc,) = (site / "httpx" / "__pycache__").iterdir()
    code = marshal.loads(pyc.read_bytes()[16:])
    assert code.co_filename == "/opt/python/httpx/__init__.py"


def test_an_unpinned_transitive_dependency_fails_the_build(inputs, monkeypatch):
    fake = _fake_pip(["httpx-0.28.1.dist-info", "sniffio-1.3.1.dist-info"])
    monkeypatch.setattr(subprocess, "run", fake)
    with pytest.raises(DependencyBuildError, match="sniffio==1.3.1"):
        inputs.build(log=lambda _: None)
    assert not inputs.folder.exists()


def test_a_pip_failure_is_reported_and_caches_nothing(inputs, monkeypatch):
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda c, **k: subprocess.CompletedProcess(c, 1, "", "No matching distribution"),
    )
    with pytest.raises(DependencyBuildError, match="No matching distribution"):
        inputs.build(log=lambda _: None)
    assert not inputs.folder.exists()


def test_the_project_pins_every_runtime_dependency():
    target = BuildTarget(LAMBDA_PYTHON_VERSION, LAMBDA_PLATFORM, None)
    pins = {}
    for name in DEPENDENCY_SETS:
        pins |= DependenciesLayerBuild.for_function(name, target, Path("/tmp")).pinned()
    for name in (
        "aws-lambda-powertools",
        "pydantic",
        "pydantic-core",
        "httpx",
        "pyjwt",
        "cryptography",
    ):
        assert name in pins, name


# --- bytecode -------------------------------------------------------------------------------

SAMPLE = """
ALLOWED = frozenset({"png", "jpeg", "webp", "gif", "avif", "heic", "tiff", "bmp"})


def allowed(fmt):
    return fmt in {"png", "jpeg", "webp", "gif", "avif"}
"""


def _source_tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text(SAMPLE)
    (root / "handler.py").write_text("from pkg import ALLOWED\n")
    (root / "requirements.txt").write_text("httpx==0.28.1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"stale")
    return root


def _compiled(tmp_path: Path, name: str) -> Path:
    target = BuildTarget(THIS_PYTHON, "manylinux2014_x86_64", sys.executable)
    build = SourceBuild("code", _source_tree(tmp_path / f"src-{name}"), "/var/task", target)
    build = SourceBuild(build.name, build.source, build.runtime_path, target, tmp_path / name)
    return build.build(log=lambda _: None)


def test_code_is_copied_without_caches_or_requirements_and_compiled(tmp_path):
    folder = _compiled(tmp_path, "one")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    tag = sys.implementation.cache_tag
    assert files == [
        f"__pycache__/handler.{tag}.pyc",
        "handler.py",
        "pkg/__init__.py",
        f"pkg/__pycache__/__init__.{tag}.pyc",
    ]


def test_bytecode_is_unchecked_hash_and_names_the_lambda_path(tmp_path):
    folder = _compiled(tmp_path, "one")
    pyc = next((folder / "pkg" / "__pycache__").iterdir()).read_bytes()
    assert pyc[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, source never re-checked
    assert marshal.loads(pyc[16:]).co_filename == "/var/task/pkg/__init__.py"


def test_the_same_sources_compile_to_the_same_bytes(tmp_path):
    # Two builds in two fresh interpreters (different hash seeds would reorder frozensets).
    one, two = _compiled(tmp_path, "one"), _compiled(tmp_path, "two")
    pycs = sorted(p.relative_to(one) for p in one.rglob("*.pyc"))
    assert pycs and all((one / p).read_bytes() == (two / p).read_bytes() for p in pycs)
    assert one.name == two.name  # same content, same fingerprint, same CDK asset


def test_shipped_bytecode_is_what_runs_the_source_is_not_read(tmp_path):
    folder = _compiled(tmp_path, "one")
    (folder / "pkg" / "__init__.py").write_text("raise SystemExit('the source was compiled')\n")
    result = subprocess.run(
        [sys.executable, "-c", "import handler; print(sorted(handler.ALLOWED)[0])"],
        cwd=folder,
        env={"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": "."},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "avif")


# --- which interpreter compiles ----------------------------------------------------------------


def test_without_the_runtimes_python_the_build_warns_and_ships_sources():
    logged = []
    target = BuildTarget.lambda_runtime(environ={}, which=lambda _: None, log=logged.append)
    assert target.compiler is None and target.python_version == LAMBDA_PYTHON_VERSION
    assert "WARNING" in logged[0] and f"python{LAMBDA_PYTHON_VERSION}" in logged[0]


def test_the_runtimes_python_on_path_compiles(monkeypatch):
    monkeypatch.setattr("infra.bundling.LAMBDA_PYTHON_VERSION", THIS_PYTHON)
    target = BuildTarget.lambda_runtime(environ={}, which=lambda name: sys.executable)
    assert target.compiler == sys.executable and target.platform == LAMBDA_PLATFORM


def test_a_python_of_another_version_on_path_is_not_used(monkeypatch):
    monkeypatch.setattr("infra.bundling.LAMBDA_PYTHON_VERSION", "3.99")
    target = BuildTarget.lambda_runtime(
        environ={}, which=lambda name: sys.executable, log=lambda _: None
    )
    assert target.compiler is None


def test_a_compiler_variable_of_the_wrong_version_fails_the_build(monkeypatch):
    monkeypatch.setattr("infra.bundling.LAMBDA_PYTHON_VERSION", "3.99")
    with pytest.raises(DependencyBuildError, match=COMPILER_VARIABLE):
        BuildTarget.lambda_runtime(
            environ={COMPILER_VARIABLE: sys.executable}, which=lambda _: None
        )
