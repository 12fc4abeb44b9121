"""Authorizer benchmark: cold import cost and warm per-token verification time.

Run by hand (`.venv/bin/python bench/bench_authorizer.py [--runs N]`) or via `make bench`.
Not a test: it asserts nothing, it prints a table for docs/authorizer.md.

Cold: each sample is a fresh interpreter with the function folder and the common layer on
PYTHONPATH, as in Lambda. Warm: the handler is called in-process with the verifier built and,
for RS256/ES256, the JWKS already cached (served once by a local http.server on 127.0.0.1).
Times marked "CPU time" are the measuring process's own (steady on a shared machine); the
others are wall clock.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAMBDA_PATH = [REPO / "functions" / "authorizer", REPO / "layers" / "common" / "python"]
HEAVY = ("pydantic", "pydantic_core", "boto3", "botocore", "httpx", "aws_lambda_powertools")
SECRET = "bench-secret-0123456789abcdef-0123456789"


def fresh_python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(map(str, LAMBDA_PATH)),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )


def wall_ms(code: str) -> float:
    start = time.perf_counter()
    fresh_python(code)
    return (time.perf_counter() - start) * 1000


STDLIB_USED = "json, logging, os, re, threading, dataclasses, enum, functools, urllib.request"
# One fresh interpreter: the standard library the authorizer uses, then pyjwt (+ cryptography),
# then the authorizer's own modules; each step timed on top of the previous ones. CPU time of the
# process, so that other work on a shared machine does not inflate it (imports are CPU-bound).
SPLIT_IMPORT = f"""
import time
t0 = time.process_time()
import {STDLIB_USED}
t1 = time.process_time()
import jwt
t2 = time.process_time()
import authorizer
t3 = time.process_time()
print((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, (t3 - t0) * 1000)
"""


def heaviest_imports(stderr: str, count: int) -> list[tuple[str, float]]:
    """Top-level packages by self time, from `python -X importtime`."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, _, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if own.isdigit():
            top = name.split(".")[0]
            totals[top] = totals.get(top, 0.0) + int(own) / 1000
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


def cold(runs: int) -> list[tuple[str, str]]:
    fresh_python("import authorizer")  # warm the OS file cache
    splits = [[float(x) for x in fresh_python(SPLIT_IMPORT).stdout.split()] for _ in range(runs)]
    process = [wall_ms("import authorizer") for _ in range(runs)]
    baseline = [wall_ms("pass") for _ in range(runs)]
    heavy = json.loads(
        fresh_python(
            "import json, sys, authorizer; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
        ).stdout
    )
    top = heaviest_imports(fresh_python("import authorizer", "-X", "importtime").stderr, 4)

    def median_ms(column: int) -> str:
        return f"{statistics.median(s[column] for s in splits):7.1f} ms"

    return [
        ("import authorizer, in-process total (CPU time)", median_ms(3)),
        ("  standard library it uses", median_ms(0)),
        ("  pyjwt + cryptography", median_ms(1)),
        ("  the authorizer's own modules", median_ms(2)),
        ("python -c 'import authorizer', wall clock", f"{statistics.median(process):7.1f} ms"),
        (
            "python -c 'pass', wall clock (interpreter baseline)",
            f"{statistics.median(baseline):7.1f} ms",
        ),
        (
            "heaviest packages, self time (-X importtime, 1 run)",
            ", ".join(f"{name} {ms:.0f} ms" for name, ms in top),
        ),
        ("pydantic / boto3 / botocore / httpx / powertools loaded", ", ".join(heavy) or "none"),
    ]


class JwksServer:
    def __init__(self, document: dict) -> None:
        body = json.dumps(document).encode()
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def per_call_us(call, token_event: dict, iterations: int, repeats: int) -> str:
    """Median per-call CPU time over `repeats` samples, and the best sample (least disturbed)."""
    for _ in range(50):
        call(token_event, None)
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(iterations):
            call(token_event, None)
        samples.append((time.process_time() - start) / iterations * 1e6)
    return f"{statistics.median(samples):7.1f} µs  (best {min(samples):.1f})"


def warm(iterations: int, repeats: int) -> list[tuple[str, str]]:
    for path in map(str, reversed(LAMBDA_PATH)):
        sys.path.insert(0, path)
    import authorizer
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def event(token: str) -> dict:
        return {"version": "2.0", "headers": {"authorization": f"Bearer {token}"}}

    def claims(**extra: object) -> dict:
        return {
            "sub": "bench",
            "customer_id": 1,
            "scope": "image:generate",
            "exp": int(time.time()) + 3600,
            **extra,
        }

    # Lambda writes log lines to stdout; here they go to /dev/null through a real handler.
    devnull = open(os.devnull, "w")  # noqa: SIM115 -- lives as long as the process
    logging.basicConfig(stream=devnull, level=logging.INFO)
    rows = []
    for name in [n for n in os.environ if n.startswith("JWT_")]:
        del os.environ[name]

    os.environ["JWT_SECRET"] = SECRET
    authorizer.current_verifier.cache_clear()
    hs = event(jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert authorizer.handler(hs, None)["isAuthorized"]
    rows.append(("HS256 allow (handler)", per_call_us(authorizer.handler, hs, iterations, repeats)))
    bad = event(jwt.encode(claims(), SECRET + "x", algorithm="HS256"))
    rows.append(
        (
            "HS256 deny, bad signature (handler, logs a line)",
            per_call_us(authorizer.handler, bad, iterations, repeats),
        )
    )
    del os.environ["JWT_SECRET"]

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = []
    for key, kid, alg in ((rsa_key, "rsa-1", "RS256"), (ec_key, "ec-1", "ES256")):
        jwk = jwt.get_algorithm_by_name(alg).to_jwk(key.public_key(), as_dict=True)
        keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
    server = JwksServer({"keys": keys})
    try:
        os.environ.update(
            JWT_JWKS_URL=server.url, JWT_ISSUER="https://idp.bench/", JWT_AUDIENCE="image-api"
        )
        authorizer.current_verifier.cache_clear()
        asym = dict(iss="https://idp.bench/", aud="image-api")
        rs = event(jwt.encode(claims(**asym), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"}))
        es = event(jwt.encode(claims(**asym), ec_key, algorithm="ES256", headers={"kid": "ec-1"}))
        start = time.perf_counter()
        assert authorizer.handler(rs, None)["isAuthorized"]
        first = (time.perf_counter() - start) * 1000
        rows.append(
            (
                "RS256 first request, wall clock (builds verifier, fetches JWKS locally)",
                f"{first:7.1f} ms",
            )
        )
        rows.append(
            (
                "RS256 allow (handler, JWKS cached)",
                per_call_us(authorizer.handler, rs, iterations, repeats),
            )
        )
        rows.append(
            (
                "ES256 allow (handler, JWKS cached)",
                per_call_us(authorizer.handler, es, iterations, repeats),
            )
        )
        rows.append(("JWKS fetches during the warm runs", str(server.hits)))
    finally:
        server.close()
    return rows


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 16))
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per cold metric")
    parser.add_argument("--iterations", type=int, default=2000, help="calls per warm sample")
    parser.add_argument("--repeats", type=int, default=7, help="warm samples (median reported)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPU(s)")
    print_table(f"Cold import (median of {args.runs} fresh interpreters)", cold(args.runs))
    print_table(
        f"Warm, CPU time per token (median of {args.repeats} x {args.iterations} calls)",
        warm(args.iterations, args.repeats),
    )


if __name__ == "__main__":
    main()
