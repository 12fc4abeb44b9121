"""``make dev``: the local stack on http://127.0.0.1:$PORT until Ctrl-C.

python -m local [--port 8000]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings

from local.stack import DEFAULT_PORT, LocalStack
from local.token import mint_token

EXAMPLE_BODY = (
    '{"prompt":"A serene mountain landscape at sunset",'
    '"settings":{"image":{"model":"openai","width":1024,"height":1024}},'
    '"customer_id":1,"save_to_db":true}'
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local", description="Run the local stack.")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", DEFAULT_PORT)),
        help="port on 127.0.0.1 (default $PORT or 8000; 0 picks a free one)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    # Library chatter off: httpx would log every provider URL (a query string can hold a key).
    for name in ("httpx", "httpcore", "botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    stop = threading.Event()
    # Both set explicitly: a shell that starts us in the background may ignore SIGINT.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stack = LocalStack(port=args.port).start()
    except OSError as error:
        sys.exit(
            f"could not start the local stack on 127.0.0.1:{args.port}: "
            f"{error.strerror or error} (another process on that port? set PORT or pass --port)"
        )
    try:
        print(summary(stack), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        stack.stop()
        print("local stack stopped", flush=True)


def summary(stack: LocalStack) -> str:
    lines = [
        f"Local stack ready on {stack.base_url}  (GET {stack.base_url}/health answers 200)",
        f"  S3: {stack.s3_endpoint}  bucket {stack.bucket}"
        + ("  (moto, in-process)" if stack.s3_in_process else ""),
        f"  DynamoDB: {stack.dynamodb_endpoint}  tables {stack.jobs_table}, {stack.usage_table}"
        + ("  (moto, in-process)" if stack.dynamodb_in_process else ""),
        "  jobs: run in-process (the job state machine's steps, in its order)",
    ]
    for route in stack.providers:
        where = {
            "emulator": f"emulator at {route.base_url}",
            "base-url": f"{route.prefix}_BASE_URL {route.base_url}",
            "real-api": "the real API (key set)",
            "not-configured": "not configured (no key, no emulator)",
        }[route.target]
        lines.append(f"  {route.provider}: {where}")
    if os.environ.get("JWT_SECRET"):
        token = mint_token(1)
        lines += [
            "",
            "A token for customer 1, valid 12 h "
            "(more: python -m local.token --customer 7 --scope images:admin):",
            f"  export TOKEN={token}",
            "",
            "Try:",
            f'  curl -s {stack.base_url}/image/generate -H "Authorization: Bearer $TOKEN" '
            f"-H 'content-type: application/json' -d '{EXAMPLE_BODY}'",
        ]
    lines.append("\nCtrl-C stops it.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
