"""Generation Lambda benchmarks: cold import and the service's own per-request overhead.

Run: `make bench` (or `.venv/bin/python bench/bench_generation.py`). Prints numbers; asserts
nothing. The provider is the in-process OpenAI emulator and S3 is moto, so what is measured is
this service's work (parsing, validation, normalisation, the adapter, storage calls, the
envelope) — not a network.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions/generation"), str(ROOT / "layers/common/python")]
COLD_RUNS = 7
WARM_RUNS = 200


def cold_import_ms() -> tuple[float, float]:
    """Median wall time and -X importtime total of `import generation` in a fresh process."""
    env = {"PYTHONPATH": f"{ROOT / 'functions/generation'}:{ROOT / 'layers/common/python'}",
           "IMAGE_BUCKET": "bench-bucket", "AWS_DEFAULT_REGION": "us-east-1",
           "PATH": os.environ.get("PATH", "")}  # fmt: skip
    walls, imports = [], []
    for _ in range(COLD_RUNS):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import generation"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        walls.append((time.perf_counter() - started) * 1000)
        last = [line for line in result.stderr.splitlines() if line.endswith("| generation")][-1]
        imports.append(int(last.split("|")[1]) / 1000)
    return statistics.median(walls), statistics.median(imports)


def warm_request_ms() -> dict[str, float]:
    # the event builders of the tests (importing them sets a test environment: overridden next)
    from tests.conftest import LambdaContext, http_event, request_body

    os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "IMAGE_BUCKET": "bench-bucket",
                       "POWERTOOLS_METRICS_NAMESPACE": "Bench", "POWERTOOLS_LOG_LEVEL": "WARNING",
                       "OPENAI_API_KEY": "bench-key",
                       "OPENAI_BASE_URL": "https://openai.emulator.test/v1"})  # fmt: skip
    from moto import mock_aws

    from image_service import http as service_http
    from local.emulators import EmulatorRouter
    from local.emulators.openai import OpenAIEmulator

    emulator = OpenAIEmulator()
    service_http.set_http_client(service_http.new_http_client(EmulatorRouter({"openai": emulator})))
    # The emulator renders a fresh image per call; render once and reuse so only our code is timed.
    rendered = emulator.route

    cache = {}

    def cached_route(request):
        key = request.body
        if key not in cache:
            cache[key] = rendered(request)
        return cache[key]

    emulator.route = cached_route
    results = {}
    with mock_aws():
        import boto3

        boto3.client("s3").create_bucket(Bucket="bench-bucket")
        import generation

        context = LambdaContext()
        # the metric (EMF) lines stay out of the report
        with contextlib.redirect_stdout(io.StringIO()):
            for name, save in (("stored (S3 put + presign)", True), ("inline data URL", False)):
                event = http_event(body=request_body(save_to_db=save))
                generation.handler(event, context)  # warm-up: clients created, adapter imported
                timings = []
                for _ in range(WARM_RUNS):
                    started = time.perf_counter()
                    response = generation.handler(event, context)
                    timings.append((time.perf_counter() - started) * 1000)
                    assert response["statusCode"] == 200, response
                results[name] = statistics.median(timings)
                results[name + " p95"] = sorted(timings)[int(WARM_RUNS * 0.95)]
    return results


def main() -> None:
    wall, imported = cold_import_ms()
    print(f"generation cold start: `import generation` {imported:.0f} ms (-X importtime), "
          f"process wall {wall:.0f} ms (median of {COLD_RUNS})")  # fmt: skip
    for name, value in warm_request_ms().items():
        print(f"generation warm request, {name}: {value:.2f} ms")
    print(json.dumps({"import_ms": round(imported), "process_ms": round(wall)}))


if __name__ == "__main__":
    main()
