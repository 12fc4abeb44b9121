"""Lambda code and layers, built without Docker, as they run: with bytecode.

Everything the stack packages is built here into ``build/`` — by ``make build``, by ``cdk synth``
(``app.py``) and, for this machine's interpreter, by the benchmark (``bench/``):

- one **dependencies layer per function** (``pip --platform/--only-binary`` from the function's
  own ``requirements.txt`` + ``constraints.txt``): the authorizer's holds pyjwt and cryptography,
  the generation function's Powertools, pydantic and httpx — neither carries the other's;
- the **common layer** (``image_common``) and each **function's code**, copied from the source;
- every one of them **byte-compiled** for the runtime's exact Python minor version, with
  ``--invalidation-mode unchecked-hash`` (no timestamps: the same sources give the same bytes;
  Lambda's code folders are read-only and never change, so the source is not re-checked).

Lambda cannot write ``__pycache__`` (``/var/task`` and ``/opt`` are read-only): without shipped
bytecode it compiles every module on every cold start. Bytecode is version-specific, so it is
compiled by an interpreter of the runtime's version: ``$LAMBDA_BUILD_PYTHON`` if set (it must be
that version), else ``python3.X`` on ``PATH``. When there is none, the build **warns and ships
sources only** — it still works, it is only slower to start (docs/decisions.md, "Cold start").

Cached and reproducible: each folder is named after a hash of everything that decides its
content (inputs, Python version, platform, whether it is compiled, this recipe), so an unchanged
input is never rebuilt; every installed distribution must be pinned; console scripts (whose
shebang names the build machine) are dropped; bytecode is compiled with a fixed hash seed and
the paths Lambda will see (``/var/task``, ``/opt/python``), never the build folder's.

Pure Python on purpose: ``python -m infra.bundling`` (``make build``) runs it without the CDK.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_PYTHON_VERSION = "3.14"  # must match the runtime in infra/constructs/functions.py
LAMBDA_PLATFORM = "manylinux2014_aarch64"  # arm64 functions
BUILD_DIR = PROJECT_ROOT / "build"
CONSTRAINTS = PROJECT_ROOT / "constraints.txt"
COMPILER_VARIABLE = "LAMBDA_BUILD_PYTHON"
# Where Lambda mounts function code and layers: the file names compiled into the bytecode.
TASK_ROOT = "/var/task"
LAYER_ROOT = "/opt"
# Bump when the build recipe below changes, so cached folders built the old way are not reused.
BUILD_RECIPE_VERSION = "2"

FUNCTION_SOURCES = {
    "authorizer": PROJECT_ROOT / "functions" / "authorizer",
    "generation": PROJECT_ROOT / "functions" / "generation",
    "health": PROJECT_ROOT / "functions" / "health",
}
# Functions with third-party packages (a requirements.txt): each gets its own layer. (health
# uses the standard library only; the Flux tasks and the models check run generation's code.)
DEPENDENCY_SETS = ("authorizer", "generation")
COMMON_LAYER_SOURCE = PROJECT_ROOT / "layers" / "common"
# Never shipped: caches and bytecode from local runs, and the pip input of each function.
ASSET_EXCLUDES = (
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "requirements.txt",
)
_EXCLUDED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache"})

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")
_DIST_INFO = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)\.dist-info$")

Log = Callable[[str], None]


class DependencyBuildError(RuntimeError):
    pass


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)  # stdout may carry the CDK CLI's template output


# --- what the build is for ----------------------------------------------------------------


@dataclass(frozen=True)
class BuildTarget:
    """The interpreter the code will run on, and the one that compiles for it (if any)."""

    python_version: str
    platform: str
    compiler: str | None  # an interpreter of exactly ``python_version``; None: sources only

    @classmethod
    def lambda_runtime(
        cls,
        *,
        environ: Mapping[str, str] = os.environ,
        which: Callable[[str], str | None] = shutil.which,
        log: Log = _stderr,
    ) -> BuildTarget:
        """Lambda's runtime. Compiled by ``$LAMBDA_BUILD_PYTHON`` or ``python3.X`` on PATH."""
        version = LAMBDA_PYTHON_VERSION
        chosen = environ.get(COMPILER_VARIABLE, "").strip()
        if chosen:
            found = interpreter_version(chosen)
            if found != version:
                raise DependencyBuildError(
                    f"{COMPILER_VARIABLE}={chosen} is Python {found or '(not runnable)'}; "
                    f"the Lambda runtime is Python {version}"
                )
            return cls(version, LAMBDA_PLATFORM, chosen)
        candidate = which(f"python{version}")
        if candidate and interpreter_version(candidate) == version:
            return cls(version, LAMBDA_PLATFORM, candidate)
        log(
            f"WARNING: no Python {version} found (python{version} on PATH or "
            f"{COMPILER_VARIABLE}): shipping sources without bytecode. Lambda will then compile "
            "every module on every cold start (~0.3-0.7 s). See docs/deploy.md."
        )
        return cls(version, LAMBDA_PLATFORM, None)

    @classmethod
    def this_machine(cls) -> BuildTarget:
        """This interpreter and platform (the benchmark runs the built artifact here)."""
        machine = {"arm64": "aarch64", "amd64": "x86_64"}.get(platform.machine().lower())
        return cls(
            f"{sys.version_info.major}.{sys.version_info.minor}",
            f"manylinux2014_{machine or platform.machine()}",
            sys.executable,
        )

    @property
    def compiled(self) -> bool:
        return self.compiler is not None

    def fingerprint_parts(self) -> tuple[str, ...]:
        return (BUILD_RECIPE_VERSION, self.python_version, self.platform, str(self.compiled))

    def compile_tree(self, folder: Path, runtime_path: str) -> None:
        """Write ``__pycache__/*.pyc`` for every module under ``folder``, as Lambda will see it
        at ``runtime_path``. Deterministic: unchecked-hash pycs and a fixed hash seed (frozenset
        constants are marshalled in hash order)."""
        if self.compiler is None:
            return
        command = [
            self.compiler, "-s", "-m", "compileall", "-q",  # -s before -m: no user site
            "--invalidation-mode", "unchecked-hash",
            "-s", str(folder), "-p", runtime_path,
            str(folder),
        ]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0"}
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if result.returncode != 0:
            raise DependencyBuildError(
                f"byte-compiling {folder.name} failed:\n{result.stdout}{result.stderr}"
            )


def interpreter_version(executable: str) -> str | None:
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


# --- the folders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LambdaAssets:
    """Folders the stack packages as Lambda code and layers (each layer folder holds python/)."""

    authorizer_code: Path
    generation_code: Path
    health_code: Path
    common_layer: Path
    dependency_layers: Mapping[str, Path]  # function → its third-party layer
    # A build's fingerprint already names its content: CDK need not hash 30 MB on every synth.
    dependency_layer_hashes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_source(cls, dependency_layers: Mapping[str, Path]) -> LambdaAssets:
        """The source folders as they are, uncompiled (tests: no pip, no compile)."""
        return cls(
            authorizer_code=FUNCTION_SOURCES["authorizer"],
            generation_code=FUNCTION_SOURCES["generation"],
            health_code=FUNCTION_SOURCES["health"],
            common_layer=COMMON_LAYER_SOURCE,
            dependency_layers=dict(dependency_layers),
        )

    def folders(self) -> dict[str, Path]:
        return {
            "authorizer code": self.authorizer_code,
            "generation code": self.generation_code,
            "health code": self.health_code,
            "common layer": self.common_layer,
            **{f"{name} dependencies layer": path for name, path in self.dependency_layers.items()},
        }


def _cached_build(target_dir: Path, fill: Callable[[Path], None], *, log: Log) -> Path:
    """Build into a staging folder and move it in place atomically; reuse a finished one."""
    if target_dir.is_dir():
        log(f"{target_dir.name}: cached {_shown(target_dir)}")
        return target_dir
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target_dir.parent))
    try:
        fill(staging)
        os.replace(staging, target_dir)  # a cached folder is always a complete one
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    stale = re.compile(re.escape(target_dir.name.rsplit("-", 1)[0]) + r"-[0-9a-f]{16}")
    for old in target_dir.parent.iterdir():
        if old != target_dir and old.is_dir() and stale.fullmatch(old.name):
            shutil.rmtree(old, ignore_errors=True)
    log(f"{target_dir.name}: built {_shown(target_dir)}")
    return target_dir


@dataclass(frozen=True)
class DependenciesLayerBuild:
    """One function's third-party packages for Lambda's platform, from binary wheels only."""

    name: str = "generation"
    requirements: Path = FUNCTION_SOURCES["generation"] / "requirements.txt"
    constraints: Path = CONSTRAINTS
    target: BuildTarget = BuildTarget(LAMBDA_PYTHON_VERSION, LAMBDA_PLATFORM, None)
    cache_dir: Path = BUILD_DIR / "layers"

    @classmethod
    def for_function(
        cls, name: str, target: BuildTarget, cache_dir: Path
    ) -> DependenciesLayerBuild:
        requirements = FUNCTION_SOURCES[name] / "requirements.txt"
        return cls(name=name, requirements=requirements, target=target, cache_dir=cache_dir)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for part in (
            *self.target.fingerprint_parts(),
            self.requirements.read_text(encoding="utf-8"),
            self.constraints.read_text(encoding="utf-8"),
        ):
            digest.update(part.encode("utf-8") + b"\0")
        return digest.hexdigest()[:16]

    @property
    def folder(self) -> Path:
        return self.cache_dir / f"{self.name}-dependencies-{self.fingerprint()}"

    def pip_command(self, destination: Path) -> list[str]:
        return [
            sys.executable, "-m", "pip", "install",
            "--platform", self.target.platform,
            "--implementation", "cp",
            "--python-version", self.target.python_version,
            "--only-binary=:all:",
            "--no-compile",
            "--disable-pip-version-check",
            "--requirement", str(self.requirements),
            "--constraint", str(self.constraints),
            "--target", str(destination),
        ]  # fmt: skip

    def build(self, *, log: Log = _stderr) -> Path:
        """The layer folder (holding ``python/``), built now only if not already cached."""
        return _cached_build(self.folder, self._fill, log=log)

    def _fill(self, staging: Path) -> None:
        site = staging / "python"
        target = self.target
        _stderr(
            f"{self.name} dependencies: pip for {target.platform}, Python {target.python_version}"
        )
        result = subprocess.run(self.pip_command(site), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DependencyBuildError(
                f"pip could not build the {self.name} dependencies layer:\n"
                f"{result.stdout}{result.stderr}"
            )
        _drop_build_machine_files(site)
        self.check_all_pinned(site)
        target.compile_tree(site, f"{LAYER_ROOT}/python")

    def pinned(self) -> dict[str, str]:
        pins: dict[str, str] = {}
        for path in (self.requirements, self.constraints):
            for line in path.read_text(encoding="utf-8").splitlines():
                if match := _PIN.match(line):
                    pins[_normalise(match[1])] = match[3]
        return pins

    def check_all_pinned(self, site: Path) -> None:
        pins = self.pinned()
        unpinned = []
        for dist in site.glob("*.dist-info"):
            match = _DIST_INFO.match(dist.name)
            if match and _normalise(match["name"]) not in pins:
                unpinned.append(f"{match['name']}=={match['version']}")
        if unpinned:
            raise DependencyBuildError(
                "unpinned dependencies would make the layer unreproducible; add to "
                f"constraints.txt: {', '.join(sorted(unpinned))}"
            )


@dataclass(frozen=True)
class SourceBuild:
    """Our own code (a function folder, or the common layer) copied and byte-compiled."""

    name: str
    source: Path
    runtime_path: str  # where Lambda mounts it: /var/task, or /opt for a layer
    target: BuildTarget
    cache_dir: Path = BUILD_DIR / "code"

    def files(self) -> Iterator[Path]:
        for path in sorted(self.source.rglob("*")):
            relative = path.relative_to(self.source)
            if _EXCLUDED_DIRS & set(relative.parts) or not path.is_file():
                continue
            if path.suffix == ".pyc" or relative.as_posix() == "requirements.txt":
                continue
            yield relative

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for part in self.target.fingerprint_parts():
            digest.update(part.encode("utf-8") + b"\0")
        for relative in self.files():
            digest.update(relative.as_posix().encode("utf-8") + b"\0")
            digest.update((self.source / relative).read_bytes() + b"\0")
        return digest.hexdigest()[:16]

    @property
    def folder(self) -> Path:
        return self.cache_dir / f"{self.name}-{self.fingerprint()}"

    def build(self, *, log: Log = _stderr) -> Path:
        return _cached_build(self.folder, self._fill, log=log)

    def _fill(self, staging: Path) -> None:
        for relative in self.files():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.source / relative, staging / relative)
        self.target.compile_tree(staging, self.runtime_path)


def build_lambda_assets(
    target: BuildTarget, *, build_dir: Path = BUILD_DIR, log: Log = _stderr
) -> LambdaAssets:
    """Every asset of the stack, for ``target``, in ``build_dir`` (cached by content)."""
    layers = {
        name: DependenciesLayerBuild.for_function(name, target, build_dir / "layers")
        for name in DEPENDENCY_SETS
    }
    code = {
        name: SourceBuild(name, source, TASK_ROOT, target, build_dir / "code")
        for name, source in FUNCTION_SOURCES.items()
    }
    common = SourceBuild("common", COMMON_LAYER_SOURCE, LAYER_ROOT, target, build_dir / "layers")
    return LambdaAssets(
        authorizer_code=code["authorizer"].build(log=log),
        generation_code=code["generation"].build(log=log),
        health_code=code["health"].build(log=log),
        common_layer=common.build(log=log),
        dependency_layers={name: build.build(log=log) for name, build in layers.items()},
        dependency_layer_hashes={name: build.fingerprint() for name, build in layers.items()},
    )


def _drop_build_machine_files(site: Path) -> None:
    shutil.rmtree(site / "bin", ignore_errors=True)
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def _shown(path: Path) -> Path:
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> int:
    """``python -m infra.bundling`` (``make build``): build or reuse every asset, list them."""
    try:
        assets = build_lambda_assets(BuildTarget.lambda_runtime())
    except DependencyBuildError as error:
        print(error, file=sys.stderr)
        return 1
    for what, folder in assets.folders().items():
        print(f"{what}: {_shown(folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
