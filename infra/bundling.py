"""Lambda code and layers, built without Docker.

Function code and the shared-code layer are plain Python folders, used as they are. The
third-party dependencies layer is built by pip for Lambda's platform (arm64, CPython
``LAMBDA_PYTHON_VERSION``) from binary wheels only, into ``build/layers/``:

- cached: the folder is named after a hash of everything that decides its content
  (requirements, constraints, Python version, platform), so an unchanged input is never rebuilt;
- reproducible: every installed distribution must be pinned in requirements.txt or
  constraints.txt, nothing is byte-compiled (``.pyc`` embeds timestamps) and console scripts
  (whose shebang names the build machine's Python) are dropped — so the same inputs give the
  same bytes, the same CDK asset hash, and no layer update on deploy.

Pure Python on purpose: ``python -m infra.bundling`` (``make build``) runs it without loading
the CDK, and prints the layer folder (which ``cdk synth -c dependencies_layer=<folder>`` takes).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_PYTHON_VERSION = "3.14"  # must match the runtime in infra/constructs/functions.py
LAMBDA_PLATFORM = "manylinux2014_aarch64"  # arm64 functions
BUILD_DIR = PROJECT_ROOT / "build"
DEPENDENCIES_CACHE_DIR = BUILD_DIR / "layers"
# Bump when the build recipe below changes, so cached folders built the old way are not reused.
BUILD_RECIPE_VERSION = "1"

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")
_DIST_INFO = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)\.dist-info$")


class DependencyBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class LambdaAssets:
    """Folders the stack packages as Lambda code and layers (each layer folder holds python/)."""

    authorizer_code: Path
    generation_code: Path
    health_code: Path
    common_layer: Path
    dependencies_layer: Path
    # The build's fingerprint already names its content: CDK need not hash 30 MB on every synth.
    dependencies_layer_hash: str | None = None

    @classmethod
    def from_source(
        cls, dependencies_layer: Path, *, dependencies_layer_hash: str | None = None
    ) -> LambdaAssets:
        return cls(
            authorizer_code=PROJECT_ROOT / "functions" / "authorizer",
            generation_code=PROJECT_ROOT / "functions" / "generation",
            health_code=PROJECT_ROOT / "functions" / "health",
            common_layer=PROJECT_ROOT / "layers" / "common",
            dependencies_layer=dependencies_layer,
            dependencies_layer_hash=dependencies_layer_hash,
        )


# Never shipped: caches and byte code from local runs and tests.
ASSET_EXCLUDES = ("**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache")


@dataclass(frozen=True)
class DependenciesLayerBuild:
    requirements: Path = PROJECT_ROOT / "requirements.txt"
    constraints: Path = PROJECT_ROOT / "constraints.txt"
    python_version: str = LAMBDA_PYTHON_VERSION
    platform: str = LAMBDA_PLATFORM
    cache_dir: Path = DEPENDENCIES_CACHE_DIR

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for part in (
            BUILD_RECIPE_VERSION,
            self.python_version,
            self.platform,
            self.requirements.read_text(encoding="utf-8"),
            self.constraints.read_text(encoding="utf-8"),
        ):
            digest.update(part.encode("utf-8") + b"\0")
        return digest.hexdigest()[:16]

    @property
    def target(self) -> Path:
        return self.cache_dir / f"dependencies-{self.fingerprint()}"

    def pip_command(self, destination: Path) -> list[str]:
        return [
            sys.executable, "-m", "pip", "install",
            "--platform", self.platform,
            "--implementation", "cp",
            "--python-version", self.python_version,
            "--only-binary=:all:",
            "--no-compile",
            "--disable-pip-version-check",
            "--requirement", str(self.requirements),
            "--constraint", str(self.constraints),
            "--target", str(destination),
        ]  # fmt: skip

    def build(self, *, log=print) -> Path:
        """The layer folder (holding ``python/``), built now only if not already cached."""
        target = self.target
        if target.is_dir():
            log(f"dependencies layer: cached {_shown(target)}")
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        log(f"dependencies layer: pip install for {self.platform}, Python {self.python_version}")
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=self.cache_dir))
        try:
            result = subprocess.run(
                self.pip_command(staging / "python"), capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise DependencyBuildError(
                    f"pip could not build the dependencies layer:\n{result.stdout}{result.stderr}"
                )
            _make_reproducible(staging / "python")
            self.check_all_pinned(staging / "python")
            os.replace(staging, target)  # atomic: a cached folder is always a complete one
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._prune_stale(keep=target)
        log(f"dependencies layer: built {_shown(target)}")
        return target

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

    def _prune_stale(self, keep: Path) -> None:
        for old in self.cache_dir.glob("dependencies-*"):
            if old != keep and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)


def _make_reproducible(site: Path) -> None:
    shutil.rmtree(site / "bin", ignore_errors=True)
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def _shown(path: Path) -> Path:
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> int:
    """``python -m infra.bundling`` (``make build``): build or reuse the layer, print its folder."""
    try:
        layer = DependenciesLayerBuild().build(log=lambda line: print(line, file=sys.stderr))
    except DependencyBuildError as error:
        print(error, file=sys.stderr)
        return 1
    print(layer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
