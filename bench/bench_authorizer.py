"""The authorizer as deployed, against its floor: PyJWT alone, from the same layer.

- **cold**: a fresh process until the first verified token. The authorizer in its deployed
  shape (``shapes.py``) verifies an HS256 token, its secret given as ``JWT_SECRET``; the floor
  is ``import jwt`` + a PyJWT decode (below) with the secret in hand. (Reading the secret through
  the extension, ``JWT_SECRET_ARN`` as deployed, is measured on its own line: it is a local HTTP
  call the floor does not make.) Contenders take turns each round; besides the samples, each
  round's ratio to the floor's process of the same round is returned (``cold_paired_ratio``), which
  a loaded machine disturbs far less than the ratio of two medians.
- **warm**: CPU time per token in one process: the handler (event in, simple response out)
  against a bare PyJWT decode, in alternating short rounds; the ratio is the median of the
  rounds' ratios (each pair ran under the same load). The handler's own pyjwt call is timed
  alone too: the difference is the authorizer's own work.

The floor does the validation the authorizer must do for this token and no more: signature
with the same key and algorithm, ``exp`` **required** and checked with the same 30 s leeway
(``nbf``/``iat``/``aud``/``iss`` are checked by PyJWT's defaults when present; the bench's
secret-mode configuration sets no issuer or audience). A plain ``jwt.decode`` does not require
``exp``, so a token without one would pass it, which the authorizer must refuse. Its options
are built once (a ``jwt.PyJWT`` instance), as a careful caller would. Claims to a principal,
the header lookup and the answer are the authorizer's own work, counted against it.

Run alone: ``python -m bench.bench_authorizer [--cold-runs N]`` (``make bench`` runs it too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
# The floor: exp required, 30 s leeway (the authorizer's default JWT_LEEWAY_SECONDS).
BARE_PYJWT = """
import os
import jwt
jwt.PyJWT(options={"require": ["exp"]}).decode(
    os.environ["BENCH_TOKEN"], os.environ["BENCH_SECRET"], algorithms=["HS256"], leeway=30)
print("ok", flush=True)
"""
WARM = """
import json, logging, os, statistics, time
import authorizer, jwt
logging.basicConfig(stream=open(os.devnull, "w"), level=logging.INFO)  # Lambda's INFO level
token, key = os.environ["BENCH_TOKEN"], os.environ["BENCH_SECRET"].encode()
event = {"version": "2.0", "type": "REQUEST", "headers": {"authorization": "Bearer " + token}}
assert authorizer.handler(event, None)["isAuthorized"]
floor = jwt.PyJWT(options={"require": ["exp"]})  # built once, as a careful caller would
verifier = authorizer.current_verifier()
def handler():
    authorizer.handler(event, None)
def bare():
    floor.decode(token, key, algorithms=["HS256"], leeway=30)
def decode():  # the pyjwt call inside the handler, alone: the rest is the authorizer's own work
    verifier._jwt.decode(token, verifier._secret, algorithms=["HS256"], leeway=30)
ITERATIONS, ROUNDS = 500, 41
samples = {"handler": [], "bare": [], "decode": [], "ratio": []}
for _ in range(ROUNDS):  # alternating short rounds: a shared machine's load falls on all alike
    for name, call in (("handler", handler), ("bare", bare), ("decode", decode)):
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
    cold = {name: times[1:] for name, times in cold.items()}
    # Per round, each contender over the floor's process of that round: the ratio under the same
    # load (on a shared machine, medians of separate samples drift apart with the load).
    paired = {
        name: [ours / floor for ours, floor in zip(times, cold["bare PyJWT"], strict=True)]
        for name, times in cold.items()
        if name != "bare PyJWT"
    }
    return {"cold": cold, "cold_paired_ratio": paired, "warm": warm}


def main() -> None:
    """The authorizer's lines alone (``make bench`` prints them in its table with the rest)."""
    parser = argparse.ArgumentParser(description="the authorizer against bare PyJWT")
    parser.add_argument("--cold-runs", type=int, default=7, help="fresh processes per contender")
    args = parser.parse_args()
    before = os.getloadavg()
    result = run(args.cold_runs)
    after = os.getloadavg()

    def spread(values: list[float], unit: str, digits: int) -> str:
        median = statistics.median(values)
        return f"{median:.{digits}f} {unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"

    cold, warm = result["cold"], result["warm"]
    bare = statistics.median(cold["bare PyJWT"])
    print(f"load average before: {before[0]:.2f}, after: {after[0]:.2f}")
    for name, times in cold.items():
        ratio = statistics.median(times) / bare
        paired = result["cold_paired_ratio"].get(name)
        print(f"cold: {name:40s} {spread(times, 'ms', 0):24s} {ratio:.3f}×"
              + (f"  paired rounds: {spread(paired, '×', 3)}" if paired else ""))  # fmt: skip
    print(f"warm: {'bare PyJWT, CPU per token':40s} {spread(warm['bare'], 'µs', 1)}")
    print(f"warm: {'authorizer handler, CPU per token':40s} {spread(warm['handler'], 'µs', 1):24s} "
          f"{spread(warm['ratio'], '×', 3)} (median of paired rounds)")  # fmt: skip
    own = [h - d for h, d in zip(warm["handler"], warm["decode"], strict=True)]
    print(f"warm: {'its pyjwt decode alone':40s} {spread(warm['decode'], 'µs', 1)}")
    print(f"warm: {'its own work (handler - decode)':40s} {spread(own, 'µs', 1)}")


if __name__ == "__main__":
    main()
