"""What each benchmark process runs from, and how a fresh process is started and timed.

- **The deployed shape**: the function's code and layers built by the build code of
  ``make build`` (``infra.bundling``, bytecode step included) — for this machine's interpreter
  and platform, since the arm64/3.14 artifact cannot run here — copied into a fresh folder laid
  out as Lambda's (``task/`` and one ``opt/python/`` holding every layer), made read-only, and
  run with no bytecode cache written, as ``/var/task`` and ``/opt`` are in Lambda.
- **Contenders** (the official openai SDK, LiteLLM, and the floor: httpx + json + base64), and
  the boto3 that Lambda's runtime provides: each installed by pip into its own folder from the
  pins of ``requirements-bench.txt`` (compiled, as any pip install is).

Every process runs ``python -S``: no site-packages of this virtualenv, only what is listed; and
each first imports what Lambda's runtime has loaded before any handler (``RUNTIME_PRELUDE``).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from infra.bundling import BuildTarget, LambdaAssets, build_lambda_assets  # noqa: E402

BENCH_BUILD = ROOT / "build" / "bench"
BENCH_REQUIREMENTS = ROOT / "requirements-bench.txt"
# contender → what pip installs (versions come from requirements-bench.txt)
CONTENDERS = {
    "openai": ["openai"],
    "litellm": ["litellm"],
    "floor": ["httpx"],
    "lambda-runtime": ["boto3"],  # Lambda's Python runtime ships boto3 (in /var/runtime)
}


def _quiet(line: str) -> None:
    print(f"  {line}", file=sys.stderr)


def deployed_assets() -> LambdaAssets:
    return build_lambda_assets(
        BuildTarget.this_machine(), build_dir=BENCH_BUILD / "lambda", log=_quiet
    )


def lambda_layout(assets: LambdaAssets, function: str) -> list[Path]:
    """A read-only copy of one function as Lambda lays it out; its ``sys.path`` entries."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-{function}-"))
    atexit.register(_remove, root)
    code = assets.generation_code if function == "generation" else assets.authorizer_code
    shutil.copytree(code, root / "task")
    for layer in (assets.dependency_layers[function], assets.common_layer):
        shutil.copytree(layer / "python", root / "opt" / "python", dirs_exist_ok=True)
    for path in root.rglob("*"):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return [root / "task", root / "opt" / "python"]


def contender(name: str) -> Path:
    """The contender's own folder, installed once per pin set (cached in build/bench/)."""
    pins = BENCH_REQUIREMENTS.read_bytes()
    digest = hashlib.sha256(pins + repr(CONTENDERS[name]).encode()).hexdigest()[:12]
    folder = (
        BENCH_BUILD / "contenders" / f"{name}-{sys.version_info[0]}{sys.version_info[1]}-{digest}"
    )
    if folder.is_dir():
        return folder
    _quiet(f"installing {name} for the benchmark (pip, requirements-bench.txt)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=folder.parent))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--target", str(staging), "--constraint", str(BENCH_REQUIREMENTS),
               *CONTENDERS[name]]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"pip could not install {name}:\n{result.stderr[-3000:]}")
    os.replace(staging, folder)
    return folder


def child_env(path: list[Path], **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(map(str, path)),
        "PYTHONDONTWRITEBYTECODE": "1",  # Lambda's code folders are read-only
        "HOME": tempfile.gettempdir(),
        **extra,
    }


# What Lambda's Python runtime (awslambdaric's bootstrap) has imported before it loads any
# handler: every benchmark process starts from there, contenders and floor alike.
RUNTIME_PRELUDE = "import importlib, json, logging, os, sys, time, traceback\n"


def first_answer_ms(code: str, env: dict[str, str]) -> float:
    return first_answer(code, env)[0]


def first_answer(code: str, env: dict[str, str]) -> tuple[float, str]:
    """Fresh process → the first line it prints (the answer): interpreter start, imports,
    initialisation and the first request. The process's teardown is not counted. Returns the
    time and that line."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-S", "-c", RUNTIME_PRELUDE + code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    while line and not line.startswith("ok"):  # e.g. the function's metric (EMF) line
        line = process.stdout.readline()
    elapsed = (time.perf_counter() - started) * 1000
    _, stderr = process.communicate()
    if process.returncode != 0 or not line.startswith("ok"):
        raise RuntimeError(f"benchmark process failed ({line.strip()!r}):\n{stderr[-3000:]}")
    return elapsed, line.strip()


class Snapshot:
    """SnapStart, emulated: one process that ran a function's init and its before-snapshot hook
    (``code`` prints ``ready``), then forks a child per :meth:`restore` — a restored environment
    — which times itself from just after the fork to its first answer and prints
    ``ok <ms> <answer>``. The fork gives the child the parent's memory at once; Lambda's restore
    has to bring the snapshot's memory in (its Restore Duration), which is not measured here."""

    def __init__(self, code: str, env: dict[str, str]) -> None:
        self._stderr = tempfile.TemporaryFile()  # a pipe could fill while nobody reads it
        self.process = subprocess.Popen(
            [sys.executable, "-S", "-c", RUNTIME_PRELUDE + code],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._answer("ready")

    def restore(self, given: str) -> tuple[float, str]:
        """One restored environment's first answer to ``given`` (one JSON line): the child's
        own time in ms, and what it answered."""
        self.process.stdin.write(given.replace("\n", " ") + "\n")
        self.process.stdin.flush()
        _, elapsed, answer = self._answer("ok").split(maxsplit=2)
        return float(elapsed), answer

    def _answer(self, expected: str) -> str:
        line = self.process.stdout.readline()
        while line and not line.startswith((expected, "failed")):  # e.g. the metric (EMF) line
            line = self.process.stdout.readline()
        if not line.startswith(expected):
            self.close()
            self._stderr.seek(0)
            stderr = self._stderr.read().decode(errors="replace")
            raise RuntimeError(f"SnapStart benchmark process failed ({line.strip()!r}):\n"
                               f"{stderr[-3000:]}")  # fmt: skip
        return line.strip()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # the parent's loop ends
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_json(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-S", "-c", RUNTIME_PRELUDE + code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark process failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def _remove(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(root, ignore_errors=True)
