"""The generation function as deployed, against the openai SDK, LiteLLM and the floor.

Every contender asks the same local OpenAI-shaped server for the same ~1.5 MB PNG:

- **cold**: a fresh process until its first answer (interpreter, imports, setup, one request);
  the function in its deployed shape (``shapes.py``), reading the provider key from the secrets
  extension as in Lambda, answering a direct invoke with a data URL;
- **warm**: per-request wall time in one process after warm-up — the function on direct invoke
  and over HTTP (API Gateway event, JSON envelope), the floor doing the same request with a
  kept-alive ``httpx.Client``, ``json`` and ``base64``;
- **memory**: the peak of Python allocations during one warm request (``tracemalloc``), per
  byte of image — data-URL mode and stored (S3, moto's server) mode.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.servers import BenchProvider, SecretsExtension, noise_png
from bench.shapes import (
    child_env,
    contender,
    deployed_assets,
    first_answer_ms,
    lambda_layout,
    run_json,
)

KEY = "sk-bench-0123456789abcdef"
PROMPT = "A serene mountain landscape at sunset"
BUCKET = "bench-images"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-openai-AbCdEf"

GENERATION = """
import json, os
import generation
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "generation", 1024, "bench-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:generation"
result = generation.handler(json.loads(os.environ["BENCH_EVENT"]), Context())
assert result["success"], result
print("ok", len(result["image_url"]), flush=True)
"""
OPENAI = """
import base64, os
from openai import OpenAI
client = OpenAI(api_key=os.environ["BENCH_KEY"], base_url=os.environ["BENCH_BASE_URL"])
answer = client.images.generate(model="gpt-image-1", prompt=os.environ["BENCH_PROMPT"],
                                size="1024x1024", quality="high")
print("ok", len(base64.b64decode(answer.data[0].b64_json)), flush=True)
"""
LITELLM = """
import base64, os
import litellm
answer = litellm.image_generation(model="openai/gpt-image-1", prompt=os.environ["BENCH_PROMPT"],
                                  api_key=os.environ["BENCH_KEY"],
                                  api_base=os.environ["BENCH_BASE_URL"],
                                  size="1024x1024", quality="high")
print("ok", len(base64.b64decode(answer.data[0].b64_json)), flush=True)
"""
FLOOR = """
import base64, json, os
import httpx
response = httpx.post(os.environ["BENCH_BASE_URL"] + "/images/generations",
                      json={"model": "gpt-image-1", "prompt": os.environ["BENCH_PROMPT"],
                            "size": "1024x1024", "quality": "high", "n": 1},
                      headers={"authorization": "Bearer " + os.environ["BENCH_KEY"]}, timeout=30)
print("ok", len(base64.b64decode(response.json()["data"][0]["b64_json"])), flush=True)
"""

# One process: warm-up, then timed requests, then one traced request per mode.
WARM_SETUP = """
import gc, json, os, statistics, time, tracemalloc
RUNS = int(os.environ["BENCH_RUNS"])
def measure(call):
    for _ in range(3):
        call()
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    kept = call()  # the answer is part of the request's memory
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del kept
    return {"times": times, "peak_bytes": peak}
"""
GENERATION_WARM = (
    WARM_SETUP
    + """
import generation
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "generation", 1024, "bench-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:generation"
events = json.loads(os.environ["BENCH_EVENTS"])
results = {}
for name, event in events.items():
    def call(event=event):
        answer = generation.handler(event, Context())
        assert answer.get("success") or answer.get("statusCode") == 200, str(answer)[:300]
        return answer
    results[name] = measure(call)
print(json.dumps(results))
"""
)
FLOOR_WARM = (
    WARM_SETUP
    + """
import base64, httpx
client = httpx.Client(timeout=30)
url = os.environ["BENCH_BASE_URL"] + "/images/generations"
body = {"model": "gpt-image-1", "prompt": os.environ["BENCH_PROMPT"], "size": "1024x1024",
        "quality": "high", "n": 1}
headers = {"authorization": "Bearer " + os.environ["BENCH_KEY"]}
def call():
    response = client.post(url, json=body, headers=headers)
    return base64.b64decode(response.json()["data"][0]["b64_json"])
print(json.dumps({"floor": measure(call)}))
"""
)


def direct_event(save_to_db: bool) -> dict:
    return {"prompt": PROMPT, "customer_id": 1, "save_to_db": save_to_db,
            "settings": {"image": {"model": "gpt-image-1", "width": 1024, "height": 1024,
                                   "quality": "high"}}}  # fmt: skip


def http_event(save_to_db: bool) -> dict:
    """``POST /image/generate`` as API Gateway (HTTP API, payload 2.0) hands it over."""
    return {
        "version": "2.0",
        "routeKey": "POST /image/generate",
        "rawPath": "/image/generate",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "authorization": "Bearer x.y.z"},
        "requestContext": {
            "http": {"method": "POST", "path": "/image/generate", "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.9", "userAgent": "bench"},
            "requestId": "bench-1",
            "routeKey": "POST /image/generate",
            "stage": "$default",
            "authorizer": {"lambda": {"customer_id": "1", "sub": "bench", "scopes": ""}},
        },
        "body": json.dumps(direct_event(save_to_db)),
        "isBase64Encoded": False,
    }  # fmt: skip


def _s3_server() -> tuple[str, object]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="bench", aws_secret_access_key="bench"
                 ).create_bucket(Bucket=BUCKET)  # fmt: skip
    return endpoint, server


def run(cold_runs: int, warm_runs: int) -> dict:
    image = noise_png()
    provider = BenchProvider(image)
    provider_server = provider.serve()
    extension = SecretsExtension(json.dumps({"api_key": KEY}))
    s3_endpoint, s3_server = _s3_server()
    base_url = f"{provider.base_url}/v1"
    common = {"BENCH_KEY": KEY, "BENCH_BASE_URL": base_url, "BENCH_PROMPT": PROMPT,
              "BENCH_RUNS": str(warm_runs)}  # fmt: skip
    function_env = {
        "IMAGE_BUCKET": BUCKET,
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY_SECRET_ARN": SECRET_ARN,
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(extension.port),
        "AWS_SESSION_TOKEN": "bench-session",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": "generation",
        "POWERTOOLS_SERVICE_NAME": "image-generation",
        "POWERTOOLS_METRICS_NAMESPACE": "ImageService",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **common,
    }
    try:
        assets = deployed_assets()
        function_path = [*lambda_layout(assets, "generation"), contender("lambda-runtime")]
        contenders = {name: [contender(name)] for name in ("openai", "litellm", "floor")}
        programs = {"generation": (GENERATION, function_path), "openai": (OPENAI, contenders["openai"]),
                    "litellm": (LITELLM, contenders["litellm"]), "floor": (FLOOR, contenders["floor"])}  # fmt: skip
        cold: dict[str, list[float]] = {name: [] for name in programs}
        event = json.dumps(direct_event(save_to_db=False))
        for _ in range(cold_runs + 1):  # the first round warms the OS file cache: dropped
            for name, (code, path) in programs.items():
                env = child_env(path, **(function_env if name == "generation" else common),
                                BENCH_EVENT=event, LITELLM_LOCAL_MODEL_COST_MAP="True")  # fmt: skip
                cold[name].append(first_answer_ms(code, env))
        cold = {name: times[1:] for name, times in cold.items()}

        events = {
            "direct, data URL": direct_event(False),
            "HTTP, data URL": http_event(False),
            "direct, stored (S3)": direct_event(True),
            "HTTP, stored (S3)": http_event(True),
        }
        warm = json.loads(
            run_json(
                GENERATION_WARM,
                child_env(function_path, **function_env, BENCH_EVENTS=json.dumps(events)),
            )  # fmt: skip
        )
        warm |= json.loads(run_json(FLOOR_WARM, child_env(contenders["floor"], **common)))
    finally:
        extension.close()
        provider_server.shutdown()
        provider_server.server_close()
        s3_server.stop()
    return {"image_bytes": len(image), "cold": cold, "warm": warm, "assets": assets}


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f"{min(values):.0f}–{max(values):.0f}"


def artifact_sizes(assets) -> dict[str, int]:
    """Zipped (deflate) size of each function's code plus its layers, as Lambda receives them."""
    import io
    import zipfile

    def zipped(folder: Path) -> int:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder).as_posix())
        return buffer.tell()

    common = zipped(assets.common_layer)
    return {
        "generation": zipped(assets.generation_code)
        + zipped(assets.dependency_layers["generation"])
        + common,
        "authorizer": zipped(assets.authorizer_code)
        + zipped(assets.dependency_layers["authorizer"])
        + common,
    }
