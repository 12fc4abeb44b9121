"""The authorizer as deployed, against its floor: PyJWT alone, from the same layer.

- **cold**: a fresh process until the first verified token. The authorizer in its deployed
  shape (``shapes.py``) verifies an HS256 token, its secret given as ``JWT_SECRET``; the floor
  is ``import jwt`` + ``jwt.decode`` with the secret in hand. (Reading the secret through the
  extension, ``JWT_SECRET_ARN`` as deployed, is measured on its own line: it is a local HTTP
  call the floor does not make.)
- **warm**: CPU time per token in one process: the handler (event in, simple response out)
  against a bare ``jwt.decode(token, key, algorithms=["HS256"])``, in alternating short rounds;
  the ratio is the median of the rounds' ratios (each pair ran under the same load).
"""

from __future__ import annotations

import json
import time

from bench.servers import SecretsExtension
from bench.shapes import child_env, deployed_assets, first_answer_ms, lambda_layout, run_json

SECRET = "bench-secret-0123456789abcdef-0123456789"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-jwt-AbCdEf"

AUTHORIZER = """
import os
import authorizer
event = {"version": "2.0", "type": "REQUEST",
         "headers": {"authorization": "Bearer " + os.environ["BENCH_TOKEN"]}}
assert authorizer.handler(event, None)["isAuthorized"]
print("ok", flush=True)
"""
BARE_PYJWT = """
import os
import jwt
jwt.decode(os.environ["BENCH_TOKEN"], os.environ["BENCH_SECRET"], algorithms=["HS256"])
print("ok", flush=True)
"""
WARM = """
import json, logging, os, statistics, time
import authorizer, jwt
logging.basicConfig(stream=open(os.devnull, "w"), level=logging.INFO)  # Lambda's INFO level
token, key = os.environ["BENCH_TOKEN"], os.environ["BENCH_SECRET"].encode()
event = {"version": "2.0", "type": "REQUEST", "headers": {"authorization": "Bearer " + token}}
assert authorizer.handler(event, None)["isAuthorized"]
def handler():
    authorizer.handler(event, None)
def bare():
    jwt.decode(token, key, algorithms=["HS256"])
ITERATIONS, ROUNDS = 500, 41
samples = {"handler": [], "bare": [], "ratio": []}
for _ in range(ROUNDS):  # alternating short rounds: a shared machine's load falls on both alike
    for name, call in (("handler", handler), ("bare", bare)):
        started = time.process_time()
        for _ in range(ITERATIONS):
            call()
        samples[name].append((time.process_time() - started) / ITERATIONS * 1e6)
    samples["ratio"].append(samples["handler"][-1] / samples["bare"][-1])
print(json.dumps(samples))
"""


def _token() -> str:
    import jwt

    claims = {"sub": "bench", "customer_id": 1, "scope": "image:generate",
              "exp": int(time.time()) + 3600}  # fmt: skip
    return jwt.encode(claims, SECRET, algorithm="HS256")


def run(cold_runs: int) -> dict:
    token = _token()
    assets = deployed_assets()
    path = lambda_layout(assets, "authorizer")
    base = {"BENCH_TOKEN": token, "BENCH_SECRET": SECRET, "LOG_LEVEL": "INFO"}
    extension = SecretsExtension(SECRET)
    try:
        envs = {
            "authorizer": child_env(path, **base, JWT_SECRET=SECRET),
            "authorizer, secret from the extension": child_env(
                path,
                **base,
                JWT_SECRET_ARN=SECRET_ARN,
                AWS_SESSION_TOKEN="bench",
                PARAMETERS_SECRETS_EXTENSION_HTTP_PORT=str(extension.port),
            ),  # fmt: skip
            "bare PyJWT": child_env(path, **base),
        }
        cold: dict[str, list[float]] = {name: [] for name in envs}
        for _ in range(cold_runs + 1):  # the first round warms the OS file cache: dropped
            for name, env in envs.items():
                code = BARE_PYJWT if name == "bare PyJWT" else AUTHORIZER
                cold[name].append(first_answer_ms(code, env))
        warm = json.loads(run_json(WARM, child_env(path, **base, JWT_SECRET=SECRET)))
    finally:
        extension.close()
    return {"cold": {name: times[1:] for name, times in cold.items()}, "warm": warm}
